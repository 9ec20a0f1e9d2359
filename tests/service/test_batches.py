"""Batches through the API, in-process on the embedded stores, with a real worker: a prefix of mixed media with
hostile members, the failure allowance, a batch run again, paging, and another tenant kept out."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from restyle.config import Settings
from restyle.media.sample import make_clip, packaged_photo
from restyle.service.context import Context
from restyle.service.http.app import create_app
from restyle.service.worker import Worker
from tests.service.test_api import sign_in

ALICE, BOB, ROOT = "alice-token-0123456789", "bob-token-0123456789ab", "root-token-0123456789ab"
FINAL = ("succeeded", "partial", "failed", "stopped", "cancelled")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def client(tmp_path):
    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
        workers=1,
        threads=1,
        chunk_seconds=1,
        idle_seconds=0.1,
        batch_sweep_seconds=0.5,
        batch_images_per_job=2,
        webhook_allowed_hosts="127.0.0.1",  # the test's webhook receiver
        webhook_backoff_seconds=0.05,
    )
    with TestClient(create_app(settings)) as client:
        client.settings = settings
        yield client


@contextmanager
def worker(settings: Settings):
    """A real worker taking jobs in a thread, with its own context (as a worker process has)."""
    stop = threading.Event()
    runner = threading.Thread(target=Worker(Context(settings), "test-worker").run, args=(stop,))
    runner.start()
    try:
        yield
    finally:
        stop.set()
        runner.join(timeout=60)


def space(client, owner: str = "alice") -> Path:
    return client.settings.home / "data" / "datasets" / owner


def picture(path: Path, size: tuple[int, int] = (64, 48), format: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(packaged_photo()).convert("RGB").resize(size).save(path, format=format)
    return path


def mixed_folder(root: Path) -> Path:
    """Good pictures (one named .mp4: its content decides), a short video, and hostile members."""
    picture(root / "a.jpg")
    picture(root / "sub" / "b.png", (40, 30))
    picture(root / "sub" / "c.jpg")
    picture(root / "named-as-video.mp4", (32, 32), format="PNG")
    (root / "clips").mkdir()
    make_clip(root / "clips" / "clip.mp4", width=96, height=54, rate=25, seconds=1.0)
    (root / "text.jpg").write_text("not a picture\n" * 50)
    (root / "empty.png").write_bytes(b"")
    (root / "noise.mp4").write_bytes(os.urandom(5000))
    return root


def submit(client, prefix: str, token: str = ALICE, **body):
    return client.post("/api/batches", json={"prefix": prefix, "spec": {"style": "7"}, **body}, headers=auth(token))


def wait(client, batch_id: str, timeout: float = 240, token: str = ALICE) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.get(f"/api/batches/{batch_id}", headers=auth(token)).json()
        if batch["state"] in FINAL:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} still {batch['state']}: {batch}")


def items(client, batch_id: str, token: str = ALICE, **query) -> list[dict]:
    """Every item, page by page."""
    found, after = [], -1
    while after is not None:
        page = client.get(
            f"/api/batches/{batch_id}/items", params={"after": after, "limit": 3, **query}, headers=auth(token)
        ).json()
        found += page["items"]
        after = page["next_after"]
    return found


def test_a_mixed_prefix_scores_the_good_and_fails_the_bad_alone(client):
    root = mixed_folder(space(client) / "shoot")
    made = submit(client, "shoot")
    assert made.status_code == 201, made.text
    batch = made.json()
    assert batch["state"] == "running" and batch["progress"]["total"] == 8 and batch["prefix"] == "shoot/"
    with worker(client.settings):
        batch = wait(client, batch["id"])
    assert batch["state"] == "partial", batch
    progress = batch["progress"]
    assert (progress["succeeded"], progress["failed"], progress["left"]) == (5, 3, 0), batch
    by_input = {item["input"]: item for item in items(client, batch["id"])}
    assert set(by_input) == {
        "a.jpg",
        "clips/clip.mp4",
        "empty.png",
        "named-as-video.mp4",
        "noise.mp4",
        "sub/b.png",
        "sub/c.jpg",
        "text.jpg",
    }
    assert by_input["named-as-video.mp4"]["kind"] == "image" and by_input["clips/clip.mp4"]["kind"] == "video"
    assert by_input["clips/clip.mp4"]["frames"] == 25
    assert "empty" in by_input["empty.png"]["reason"]
    assert by_input["text.jpg"]["reason"].startswith("neither a picture (JPEG, PNG, WEBP, BMP, TIFF, GIF) nor a video")
    assert "cannot read noise.mp4 as a video" in by_input["noise.mp4"]["reason"]
    outputs = client.settings.home / "data" / batch["output"]
    written = sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*") if p.is_file())
    assert written == sorted(
        ["a.jpg", "sub/b.png", "sub/c.jpg", "named-as-video.mp4.png", "clips/clip.mp4"]
        + ["manifest.jsonl", "manifest.parquet", "summary.json"]
    )
    summary = json.loads((outputs / "summary.json").read_text())
    assert (
        summary["type"] == "batch.partial" and summary["data"]["failed"] == 3 and summary["data"]["prefix"] == "shoot/"
    )
    with Image.open(outputs / "sub" / "b.png") as out:
        assert out.size == (40, 30)
    rows = [json.loads(line) for line in (outputs / "manifest.jsonl").read_text().splitlines()]
    assert [row["input"] for row in rows] == sorted(by_input, key=lambda name: by_input[name]["seq"])
    assert {row["input"]: row["state"] for row in rows} == {name: item["state"] for name, item in by_input.items()}
    assert {row["input"]: row["reason"] for row in rows if row["state"] == "failed"} == {
        name: item["reason"] for name, item in by_input.items() if item["state"] == "failed"
    }
    assert pq.read_table(outputs / "manifest.parquet").num_rows == 8
    assert root.is_dir()
    metrics = client.get("/metrics", headers=auth(ROOT)).text
    assert 'restyle_batches{state="partial"} 1.0' in metrics and 'restyle_batch_items{state="queued"} 0.0' in metrics


def test_the_dashboard_pages_a_batch_and_shows_reasons(client):
    root = space(client) / "many"
    for n in range(130):
        (root / f"{n:03d}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{n:03d}.jpg").write_text(f"text {n}")  # every one fails: no worker needed to see pages
    batch = submit(client, "many").json()
    client.post(f"/api/batches/{batch['id']}/cancel", headers=auth(ALICE))
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in sign_in(client, ALICE).items())}
    bob = {"Cookie": "; ".join(f"{k}={v}" for k, v in sign_in(client, BOB).items())}
    client.cookies.clear()
    listing = client.get("/batches", headers=cookie)
    assert listing.status_code == 200 and f'href="/batches/{batch["id"]}"' in listing.text
    first = client.get(f"/batches/{batch['id']}", headers=cookie)
    assert first.status_code == 200 and first.text.count("<tr data-seq=") == 100
    assert "after=99" in first.text and "cancelled" in first.text
    second = client.get(f"/batches/{batch['id']}?after=99", headers=cookie).text
    assert second.count("<tr data-seq=") == 30 and 'id="next"' not in second
    only = client.get(f"/batches/{batch['id']}?state=failed", headers=cookie).text
    assert only.count("<tr data-seq=") == 0  # not run, not failed: the batch was cancelled before any ran
    assert client.get(f"/batches/{batch['id']}", headers=bob).status_code == 404
    assert client.get(f"/batches/{batch['id']}", follow_redirects=False).status_code == 303
    made = client.post("/batches", data={"prefix": "nowhere", "style": "7"}, headers=cookie, follow_redirects=False)
    assert made.status_code == 303 and made.headers["location"] == "/batches?error=refused"
    assert "No objects under" in client.get(made.headers["location"], headers=cookie).text  # wording.plain: a sentence


def test_max_failures_stops_the_batch_and_the_rest_is_not_run(client):
    root = space(client) / "bad"
    (root / "0-text.jpg").parent.mkdir(parents=True)
    (root / "0-text.jpg").write_text("no picture")
    (root / "1-noise.mp4").write_bytes(os.urandom(3000))
    for n in range(2, 8):
        picture(root / f"{n}-good.jpg")
    batch = submit(client, "bad", max_failures=1).json()
    with worker(client.settings):
        batch = wait(client, batch["id"])
    assert batch["state"] == "stopped" and "max_failures 1" in batch["reason"], batch
    progress = batch["progress"]
    assert progress["failed"] == 2 and progress["not_run"] >= 1 and progress["left"] == 0, progress
    not_run = items(client, batch["id"], state="not_run")
    assert not_run and all("stopped" in item["reason"] for item in not_run)


def test_the_same_batch_again_reuses_what_is_stored(client):
    root = space(client) / "again"
    for n in range(3):
        picture(root / f"{n}.jpg")
    first = submit(client, "again").json()
    with worker(client.settings):
        first = wait(client, first["id"])
    assert first["state"] == "succeeded"
    outputs = client.settings.home / "data" / first["output"]
    stamps = {p.name: p.stat().st_mtime_ns for p in outputs.glob("*.jpg")}
    picture(root / "3.jpg")  # one new input
    second = submit(client, "again").json()
    assert second["output"] == first["output"] and second["progress"]["reused"] == 3
    with worker(client.settings):
        second = wait(client, second["id"])
    assert second["state"] == "succeeded" and second["progress"]["succeeded"] == 1, second
    assert {p.name: p.stat().st_mtime_ns for p in outputs.glob("*.jpg") if p.name in stamps} == stamps
    third = submit(client, "again").json()  # everything stored: nothing queued, it ends once it has answered
    assert third["progress"]["reused"] == 4 and third["progress"]["left"] == 0
    assert client.get(f"/api/batches/{third['id']}", headers=auth(ALICE)).json()["state"] == "succeeded"
    assert client.get("/api/jobs", headers=auth(ALICE)).json() == []  # units are not listed as jobs


def test_refusals_and_another_tenant(client):
    assert submit(client, "nothing-here").status_code == 422
    assert "no objects" in submit(client, "nothing-here").json()["detail"]
    assert submit(client, "../bob").status_code == 422
    assert submit(client, "x", max_failures="lots").status_code == 422
    picture(space(client) / "mine" / "a.jpg")
    bad_spec = client.post("/api/batches", json={"prefix": "mine", "spec": {"style": "99"}}, headers=auth(ALICE))
    assert bad_spec.status_code == 422
    batch = submit(client, "mine").json()
    assert submit(client, "mine").status_code == 409  # the same batch while it runs
    for path in ("", "/items", "/manifest"):
        assert client.get(f"/api/batches/{batch['id']}{path}", headers=auth(BOB)).status_code == 404
    assert client.post(f"/api/batches/{batch['id']}/cancel", headers=auth(BOB)).status_code == 404
    assert client.get("/api/batches", headers=auth(BOB)).json() == []
    assert submit(client, "mine", token=BOB).status_code == 422  # bob's space holds no "mine"
    assert [b["id"] for b in client.get("/api/batches", headers=auth(ROOT)).json()] == [batch["id"]]
    cancelling = client.post(f"/api/batches/{batch['id']}/cancel", headers=auth(ALICE)).json()
    assert cancelling["progress"]["not_run"] == 1 and cancelling["reason"] == "cancelled by alice"
    assert client.get(f"/api/batches/{batch['id']}", headers=auth(ALICE)).json()["state"] == "cancelled"
    assert client.post(f"/api/batches/{batch['id']}/cancel", headers=auth(ALICE)).status_code == 409


def test_a_unit_that_ends_where_no_worker_sees_it_is_settled_by_the_sweep(client, monkeypatch):
    from restyle.service import batches
    from restyle.stores.params import JobParams

    picture(space(client) / "lost" / "a.jpg")
    batch = submit(client, "lost").json()
    context = client.app.state.context
    (unit,) = context.jobs.list(batch_id=batch["id"])
    for attempt in range(3):  # three workers die holding it (a lease that is over at once)
        assert context.jobs.claim(f"dead-{attempt}", -1).id == unit.id
    assert context.jobs.claim("next", 30) is None and context.jobs.get(unit.id).state == "dead"
    assert client.get(f"/api/batches/{batch['id']}", headers=auth(ALICE)).json()["state"] == "running"
    batches.sweep(context)
    ended = client.get(f"/api/batches/{batch['id']}", headers=auth(ALICE)).json()
    assert ended["state"] == "failed" and ended["progress"]["failed"] == 1, ended
    (item,) = items(client, batch["id"])
    assert item["reason"].startswith("gave up after 3 attempts")
    # A listing cut off (its process died): the sweep fails it once it has not moved for long.
    cut = context.batches.create("alice", "datasets/alice/cut/", "outbox/batches/alice/cut-0/", JobParams(), "f")
    context.batches.add_items(cut.id, [{"seq": 0, "input_key": "datasets/alice/cut/a.jpg", "state": "queued"}])
    batches.sweep(context)
    assert context.batches.get(cut.id).state == "listing"  # still moving, as far as anyone knows
    monkeypatch.setattr(batches, "LISTING_STALE_SECONDS", -1.0)  # as if it had been still for long
    batches.sweep(context)
    abandoned = context.batches.get(cut.id)
    assert abandoned.state == "failed" and "cut off" in abandoned.reason and abandoned.not_run == 1
    link = client.get(f"/api/batches/{batch['id']}/manifest", headers=auth(ALICE)).json()["url"]
    manifest = client.get(link.removeprefix(client.settings.base_url))
    assert manifest.headers["content-type"] == "application/x-ndjson"
    assert json.loads(manifest.text)["reason"] == item["reason"]
    link = client.get(f"/api/batches/{batch['id']}/manifest?format=parquet", headers=auth(ALICE)).json()["url"]
    assert client.get(link.removeprefix(client.settings.base_url)).content.startswith(b"PAR1")


@pytest.mark.slow
def test_a_batch_on_seaweedfs_and_postgresql(seaweedfs, postgres, tmp_path):
    """The listing pages through a real S3 server; items, counts and units live in PostgreSQL."""
    import psycopg
    from botocore.session import get_session

    from testing.servers import S3_KEY, S3_SECRET
    from tests.conftest import s3_settings

    name = f"batch{os.getpid()}{int(time.time() * 1000) % 100000}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE}",
        data_url=f"s3://data/{name}",
        system_url=f"s3://system/{name}",
        database_url=postgres.url.rsplit("/", 1)[0] + f"/{name}",
        workers=1,
        threads=1,
        idle_seconds=0.1,
        batch_images_per_job=3,
        **s3_settings(seaweedfs),
    )
    s3 = get_session().create_client(
        "s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET
    )
    local = picture(tmp_path / "p.jpg")
    for n in range(5):
        s3.put_object(Bucket="data", Key=f"{name}/datasets/alice/s3/{n}/p{n}.jpg", Body=local.read_bytes())
    s3.put_object(Bucket="data", Key=f"{name}/datasets/alice/s3/bad.jpg", Body=b"no picture")
    with TestClient(create_app(settings)) as client:
        batch = submit(client, "s3").json()
        assert batch["progress"]["total"] == 6, batch
        with worker(settings):
            batch = wait(client, batch["id"])
        assert batch["state"] == "partial" and batch["progress"]["succeeded"] == 5, batch
        listed = s3.list_objects_v2(Bucket="data", Prefix=f"{name}/{batch['output']}")["Contents"]
        names = sorted(entry["Key"].rsplit(batch["output"], 1)[1] for entry in listed)
        assert names == [f"{n}/p{n}.jpg" for n in range(5)] + ["manifest.jsonl", "manifest.parquet", "summary.json"]
        again = submit(client, "s3").json()
        assert again["progress"]["reused"] == 5 and again["progress"]["left"] == 1


def test_a_batch_names_a_webhook_and_its_end_alone_is_announced(client, monkeypatch):
    from restyle.service import notifier
    from restyle.service.notifier import Notifier
    from restyle.service.webhooks import tenant_secret
    from testing.webhooks import Receiver

    monkeypatch.setattr(notifier, "SETTLE_SECONDS", 0.0)
    context = client.app.state.context
    receiver = Receiver(tenant_secret(context, "alice")).start()
    try:
        root = space(client) / "hooked"
        for n in range(3):
            picture(root / f"{n}.jpg")
        (root / "3.jpg").write_text("no picture")
        assert submit(client, "hooked", webhook="http://10.0.0.1/hook").status_code == 422  # not an allowed host
        batch = submit(client, "hooked", webhook=receiver.url).json()
        with worker(client.settings):
            batch = wait(client, batch["id"])
        notice = Notifier(context)
        assert notice.announce_ends() == 0  # the units' ends are the batch's to announce
        deadline = time.monotonic() + 20
        while not receiver.acted_on:
            assert time.monotonic() < deadline
            notice.load_pending()
            notice.deliver_due()
            time.sleep(0.05)
        (event,) = receiver.acted_on
        assert (
            receiver.received[0].verified and receiver.received[0].headers["webhook-id"] == f"msg_batch_{batch['id']}"
        )
        assert event["type"] == "batch.partial" and event["data"]["batch"] == batch["id"]
        assert (event["data"]["succeeded"], event["data"]["failed"], event["data"]["total"]) == (3, 1, 4)
        assert event["data"]["manifest"] == batch["manifest"]
    finally:
        receiver.stop()


def test_files_uploaded_into_your_space_make_a_batch(client, tmp_path):
    jpeg = picture(tmp_path / "p.jpg").read_bytes()
    files = [("files", ("trip/day1/a.jpg", jpeg)), ("files", ("trip/b.jpg", jpeg)), ("files", ("empty.jpg", b""))]
    made = client.post("/api/datasets", data={"prefix": "up"}, files=files, headers=auth(ALICE))
    assert made.status_code == 201, made.text
    assert made.json() == {"prefix": "up/", "files": ["trip/day1/a.jpg", "trip/b.jpg", "empty.jpg"]}
    assert (space(client) / "up" / "trip" / "day1" / "a.jpg").read_bytes() == jpeg
    escape = client.post("/api/datasets", files=[("files", ("../../bob/x.jpg", jpeg))], headers=auth(ALICE))
    assert escape.status_code == 422 and not (space(client, "bob")).exists()
    assert client.post("/api/datasets", data={"prefix": "up"}, headers=auth(ALICE)).status_code == 422
    batch = submit(client, "up").json()
    assert batch["progress"]["total"] == 3 and batch["progress"]["failed"] == 1  # the empty one, at once
    assert [item["input"] for item in items(client, batch["id"])] == ["empty.jpg", "trip/b.jpg", "trip/day1/a.jpg"]
    assert submit(client, "up", token=BOB).status_code == 422  # alice's files are not in bob's space


def test_a_records_model_gives_a_predictions_dataset_with_a_row_per_picture_and_frame(client, detector):
    from tests.service.test_catalogue import register

    assert register(client, "detector", detector, token=ROOT).status_code == 201
    root = space(client) / "seen"
    picture(root / "a.jpg", (160, 188))
    picture(root / "b.png", (96, 96))
    (root / "clip").mkdir()
    make_clip(root / "clip" / "c.mp4", width=96, height=54, rate=10, seconds=1.0)
    batch = client.post("/api/batches", json={"prefix": "seen", "spec": {"model": "detector"}}, headers=auth(ALICE))
    assert batch.status_code == 201, batch.text
    with worker(client.settings):
        batch = wait(client, batch.json()["id"])
    assert batch["state"] == "succeeded", batch
    outputs = client.settings.home / "data" / batch["output"]
    by_input = {item["input"]: item for item in items(client, batch["id"])}
    assert {name: item["output"] for name, item in by_input.items()} == {
        "a.jpg": "a.jpg.jsonl",
        "b.png": "b.png.jsonl",
        "clip/c.mp4": "clip/c.mp4.jsonl",
    }
    line = json.loads((outputs / "a.jpg.jsonl").read_text())
    assert (line["frame"], line["width"], line["height"]) == (0, 160, 188)
    rows = [json.loads(text) for text in (outputs / "predictions.jsonl").read_text().splitlines()]
    assert [row["input"] for row in rows] == ["a.jpg", "b.png"] + ["clip/c.mp4"] * 10
    assert [row["frame"] for row in rows[2:]] == list(range(10))
    assert all(list(row)[0] == "input" for row in rows)
    assert pq.read_table(outputs / "predictions.parquet").num_rows == 12


def test_a_folder_and_a_list_dropped_in_the_inbox_are_batches_and_a_bad_request_stops_nothing(client):
    """inbox/batches/: a folder with its request beside it, a list of names, a request that is not JSON; the
    trigger makes no single job of the videos there, each request is taken once, a restart makes no second batch."""
    from restyle.service import keys
    from restyle.service.trigger import Trigger

    drop = client.settings.home / "data" / "inbox" / "batches"
    mixed_folder(drop / "shoot")
    picture(drop / "loose" / "x.jpg")
    picture(drop / "loose" / "y.jpg")
    (drop / "broken.batch.json").write_text("{not json")
    (drop / "shoot.batch.json").write_text(json.dumps({"spec": {"style": "3"}, "max_failures": "50%"}))
    (drop / "two.batch.json").write_text(json.dumps({"spec": {"style": "5"}, "list": ["loose/x.jpg", "loose/y.jpg"]}))
    old = time.time() - 10  # copied a while ago: the trigger's settle time has passed
    for path in drop.rglob("*"):
        os.utime(path, (old, old))
    context = client.app.state.context
    trigger = Trigger(context)
    assert trigger.scan() == []  # no single job for the folder's video or pictures
    assert context.jobs.list(owner="@inbox") == []

    def receipt(name: str) -> dict:
        info = context.data.info(f"{keys.INBOX_BATCHES}{name}")
        return json.loads(context.system.get_bytes(keys.inbox_batch_receipt(info.key, info.etag)))

    assert "not JSON" in receipt("broken.batch.json")["refused"]
    shoot, two = receipt("shoot.batch.json")["batch"], receipt("two.batch.json")["batch"]
    with worker(client.settings):
        done = {name: wait(client, batch, token=ROOT) for name, batch in (("shoot", shoot), ("two", two))}
    assert done["shoot"]["state"] == "partial" and done["shoot"]["progress"]["failed"] == 3, done["shoot"]
    assert done["two"]["state"] == "succeeded" and done["two"]["progress"]["succeeded"] == 2, done["two"]
    assert Trigger(context).scan() == [] and len(client.get("/api/batches", headers=auth(ROOT)).json()) == 2
