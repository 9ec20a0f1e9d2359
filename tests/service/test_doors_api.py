"""Every door takes every model, in-process: the API's JSON and multipart bodies, the dashboard's form, and
inbox drops with a sidecar. What is stored on the job is checked here; test_doors_e2e runs the jobs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.errors import InputError
from restyle.service.context import DROPPED_OWNER
from restyle.service.http.app import create_app
from restyle.service.worker import Worker
from tests.service.test_api import sign_in
from tests.service.test_catalogue import ALICE, BOB, ROOT, auth, negative_model, painting, register, save


@pytest.fixture()
def client(tmp_path):
    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
        max_upload_bytes=2_000_000,
        sidecar_wait_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def submit(client, clip, token=ALICE, picture=None, **form):
    with open(clip, "rb") as video:
        files = {"file": ("clip.mp4", video, "video/mp4")}
        if picture is not None:
            files["style_image"] = (picture.name, picture.read_bytes())
        return client.post("/api/jobs", files=files, data=form, headers=auth(token))


def stored(client, job):
    return client.app.state.context.jobs.get(job["id"]).params


def test_multipart_takes_every_model(client, clips, tmp_path):
    register(client, "negative", negative_model(tmp_path / "neg.onnx"))
    styles = submit(client, clips["silent"], style="3:0.5,12:0.5", strength="0.7", deflicker="0.8")
    assert styles.status_code == 201, styles.text
    job = styles.json()
    assert (job["model"], job["strength"], job["deflicker"]) == ("styles:3:0.5,12:0.5", 0.7, 0.8)
    assert stored(client, job).spec.deflicker == 0.8

    upload = submit(client, clips["silent"], picture=painting(tmp_path / "starry.png"), strength="0.9")
    assert upload.status_code == 201, upload.text
    params = stored(client, upload.json())
    assert upload.json()["model"] == "style-image:starry.png" and params.handler == "style-image"
    assert params.spec.style_image.startswith("pictures/alice/")

    registered = submit(
        client,
        clips["silent"],
        model="negative",
        params=json.dumps({"value_range": 1.0}),
        output=json.dumps({"container": "mkv", "crf": 20}),
    )
    assert registered.status_code == 201, registered.text
    params = stored(client, registered.json())
    assert registered.json()["model"] == "negative" and params.handler == "onnx"
    assert params.spec.model_file.startswith("models/") and params.spec.output.crf == 20


def test_json_uploads_take_every_model(client, clips, tmp_path):
    register(client, "negative", negative_model(tmp_path / "neg.onnx"))
    save(client, "painting", painting(tmp_path / "p.png").read_bytes())
    for body, label in (
        ({"style": "7", "deflicker": 0.5}, "styles:7"),
        ({"style_image": "painting"}, "style-image:painting"),
        ({"model": "style-image", "style_image": "painting", "strength": 0.5}, "style-image:painting"),
        ({"model": "negative"}, "negative"),
    ):
        response = client.post("/api/uploads", json={"filename": "phone.mp4", **body}, headers=auth(ALICE))
        assert response.status_code == 201, response.text
        assert response.json()["job"]["model"] == label


def test_another_tenant_can_neither_see_nor_use_a_saved_picture(client, clips, tmp_path):
    assert save(client, "painting", painting(tmp_path / "p.png").read_bytes()).status_code == 201
    assert submit(client, clips["silent"], style_image="painting").status_code == 201
    refused = submit(client, clips["silent"], token=BOB, style_image="painting")
    assert refused.status_code == 404 and "no saved picture" in refused.json()["detail"]
    refused = client.post("/api/uploads", json={"filename": "a.mp4", "style_image": "painting"}, headers=auth(BOB))
    assert refused.status_code == 404
    key = stored(client, client.get("/api/jobs", headers=auth(ALICE)).json()[0]).spec.style_image
    refused = client.post("/api/uploads", json={"filename": "a.mp4", "style_image": key}, headers=auth(BOB))
    assert refused.status_code == 404  # a store key is no picture name: nobody reaches another's file by its key
    assert len(client.get("/api/jobs", headers=auth(BOB)).json()) == 0


@pytest.mark.parametrize(
    ("form", "status", "reason"),
    [
        ({"model": "no-such-model"}, 422, "unknown model 'no-such-model'"),
        ({"model": "onnx"}, 422, "an admin registers it"),
        ({"model_file": "/etc/passwd"}, 422, "model_file is not taken"),
        ({"style": "3:nan"}, 422, "style"),
        ({"style": "99"}, 422, "26"),
        ({"strength": "2"}, 422, "strength"),
        ({"deflicker": "-1"}, 422, "deflicker"),
        ({"params": "{not json"}, 422, "JSON object"),
        ({"model": "style-image"}, 422, "needs a picture"),
        ({"colour": "red"}, 422, "unknown field(s) colour"),
        ({"style_image": "../alice/x"}, 404, "no saved picture"),
    ],
)
def test_bad_jobs_are_refused_with_a_reason(client, clips, form, status, reason):
    response = submit(client, clips["silent"], **form)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"], response.text
    assert client.app.state.context.data.list("inbox/") == []  # refused before the video was stored


def test_an_unreadable_picture_with_a_job_is_refused(client, clips, tmp_path):
    bad = tmp_path / "painting.jpg"
    bad.write_bytes(b"GIF89a not really")
    response = submit(client, clips["silent"], picture=bad)
    assert response.status_code == 422 and "cannot be read as an image" in response.json()["detail"]


def drop(context, name, clip, sidecar: str | None = None, sidecar_name=None, picture=None):
    root = context.data.path("inbox/drops")
    os.makedirs(root, exist_ok=True)
    if sidecar is not None:
        with open(f"{root}/{sidecar_name or name + '.json'}", "w") as handle:
            handle.write(sidecar)
    if picture is not None:
        with open(f"{root}/{picture.name}", "wb") as handle:
            handle.write(picture.read_bytes())
    with open(f"{root}/{name}", "wb") as handle:
        handle.write(clip.read_bytes())
    past = time.time() - 5  # settled: the trigger takes files that stopped growing
    for entry in os.listdir(root):
        os.utime(f"{root}/{entry}", (past, past))


def inbox_jobs(client):
    client.app.state.trigger.scan()
    jobs = client.get("/api/jobs", headers=auth(ROOT)).json()
    return {job["input"]: job for job in jobs}


def test_inbox_drops_take_their_sidecars_spec(client, clips, tmp_path):
    context = client.app.state.context
    register(client, "negative", negative_model(tmp_path / "neg.onnx"))
    drop(context, "a.mp4", clips["silent"], json.dumps({"model": "negative"}))
    drop(context, "b.mp4", clips["silent"], json.dumps({"style": "12", "deflicker": 0.8}), sidecar_name="b.json")
    drop(
        context,
        "c.mp4",
        clips["silent"],
        json.dumps({"style_image": "wave.png", "strength": 0.6}),
        picture=painting(tmp_path / "wave.png"),
    )
    drop(context, "d.mp4", clips["silent"])
    jobs = inbox_jobs(client)
    assert {name: job["model"] for name, job in jobs.items()} == {
        "a.mp4": "negative",
        "b.mp4": "styles:12",
        "c.mp4": "style-image:wave.png",
        "d.mp4": "styles:0",
    }
    assert jobs["b.mp4"]["deflicker"] == 0.8 and jobs["c.mp4"]["strength"] == 0.6
    assert {job["owner"] for job in jobs.values()} == {DROPPED_OWNER}
    assert all(job["state"] == "queued" for job in jobs.values())
    assert inbox_jobs(client) == jobs  # scanning again makes nothing new


@pytest.mark.parametrize(
    ("sidecar", "reason"),
    [
        ("{not json", "is not JSON"),
        ('["styles"]', "must hold a JSON object"),
        ('{"model": "nope"}', "unknown model 'nope'"),
        ('{"strenght": 0.5}', "unknown field(s) strenght"),
        ('{"style_image": "missing.png"}', "not in the inbox folder"),
        ('{"style_image": "../../etc/passwd"}', "same inbox folder"),
    ],
)
def test_a_bad_sidecar_fails_its_job_with_the_reason(client, clips, sidecar, reason):
    context = client.app.state.context
    drop(context, "bad.mp4", clips["silent"], sidecar)
    (job,) = inbox_jobs(client).values()
    assert job["model"] == "refused" and job["state"] == "queued"
    claimed = context.jobs.claim("test-worker", 30)
    assert Worker(context, "test-worker").process(claimed) == "failed"
    failed = client.get(f"/api/jobs/{job['id']}", headers=auth(ROOT)).json()
    assert failed["state"] == "failed" and reason in failed["reason"] and "bad.mp4.json" in failed["reason"], failed[
        "reason"
    ]


def test_the_trigger_waits_a_little_for_a_sidecar(client, clips, tmp_path):
    context = client.app.state.context
    context.settings.sidecar_wait_seconds = 60  # a video just dropped: its sidecar may follow
    root = context.data.path("inbox/late")
    os.makedirs(root)
    with open(f"{root}/late.mp4", "wb") as handle:
        handle.write(clips["silent"].read_bytes())
    past = time.time() - 2
    os.utime(f"{root}/late.mp4", (past, past))
    assert inbox_jobs(client) == {}
    with open(f"{root}/late.mp4.json", "w") as handle:
        handle.write('{"style": "5"}')
    assert inbox_jobs(client) == {}  # a sidecar that may still be growing is read on a later scan
    os.utime(f"{root}/late.mp4.json", (past, past))
    assert inbox_jobs(client)["late.mp4"]["model"] == "styles:5"


def test_the_dashboard_offers_the_gallery_the_models_and_your_pictures(client, tmp_path):
    register(client, "negative", negative_model(tmp_path / "neg.onnx"))
    save(client, "painting", painting(tmp_path / "p.png").read_bytes())
    sign_in(client, ALICE)
    page = client.get("/").text
    assert page.count('name="style" value=') == 26 and page.count("/thumbnail") == 26
    assert 'value="negative"' in page and 'value="style-image"' in page
    assert '<option value="painting">' in page and 'name="style_image"' in page
    sign_in(client, BOB)
    assert '<option value="painting">' not in client.get("/").text


def test_the_dashboard_form_submits_what_its_model_takes(client, clips, tmp_path):
    save(client, "painting", painting(tmp_path / "p.png").read_bytes())
    sign_in(client, ALICE)
    empty_file = ("", b"", "application/octet-stream")  # what a browser sends for a file input left empty

    def post(**form):
        with open(clips["silent"], "rb") as video:
            return client.post(
                "/submit",
                files={"file": ("clip.mp4", video), "style_image": empty_file},
                data={"strength": "1", "deflicker": "0", **form},
                follow_redirects=False,
            )

    gallery = post(model="styles", style="12", saved_picture="painting")
    assert gallery.status_code == 303 and "/jobs/" in gallery.headers["location"]
    saved = post(model="style-image", style="7", saved_picture="painting")
    refused = post(model="style-image", style="7")
    assert refused.status_code == 303 and refused.headers["location"] == "/?error=refused"
    assert "That model needs a painting" in client.get(refused.headers["location"]).text  # wording.plain
    labels = [job["model"] for job in client.get("/api/jobs", headers=auth(ALICE)).json()]
    assert labels == ["style-image:painting", "styles:12"] and saved.status_code == 303


def test_a_system_store_elsewhere_is_read_through_a_content_addressed_cache(tmp_path, clips):
    """With the system store on a server (here fsspec's in-memory store stands in for S3), workers read registered
    models and pictures through a cache in home, keyed by content hash: never stale, fetched once."""
    from restyle.service.specs import local_spec

    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE},root:admin:{ROOT}",
        system_url=f"memory://restyle-{time.monotonic_ns()}",
    )
    with TestClient(create_app(settings)) as client:
        context = client.app.state.context
        assert not context.system.is_local
        assert register(client, "negative", negative_model(tmp_path / "neg.onnx")).status_code == 201
        job = submit(client, clips["silent"], model="negative", picture=None).json()
        save(client, "painting", painting(tmp_path / "p.png").read_bytes())
        pictured = submit(client, clips["silent"], style_image="painting").json()
        for made in (job, pictured):
            params = stored(client, made)
            local = local_spec(context, params, "alice")
            path = local.model_file or local.style_image
            assert path.startswith(str(tmp_path / "home" / "cache")), path
            key = params.spec.model_file or params.spec.style_image
            assert Path(path).read_bytes() == context.system.get_bytes(key)
        assert local_spec(context, stored(client, job), "alice").model == "onnx"
        with pytest.raises(InputError, match="not its owner's"):  # a picture runs only in its owner's jobs
            local_spec(context, stored(client, pictured), "bob")


def test_a_job_whose_stored_spec_cannot_be_read_still_lists(client):
    jobs = client.app.state.context.jobs
    for n, params in enumerate(({"spec": {"strength": "lots"}}, {"spec": "styles"}, {"model": {"kind": "old"}})):
        jobs.create("alice", f"elsewhere/{n}.mp4", "etag", params)
    listed = client.get("/api/jobs", headers=auth(ALICE))
    assert listed.status_code == 200
    assert sorted(job["model"] for job in listed.json()) == ["styles:0", "unreadable", "unreadable"]


@pytest.mark.parametrize("poison", ["deep", "folder"])
def test_one_poison_sidecar_fails_its_own_job_and_the_inbox_goes_on(client, clips, poison):
    """A sidecar nested too deep for json.loads (RecursionError) or a folder named like a sidecar stopped every
    scan of the inbox, forever (issue 26, finding 4; failed on 4b5e38b). Now its video's job fails with the reason,
    once, and the other drops become jobs."""
    context = client.app.state.context
    drop(context, "ok.mp4", clips["silent"], '{"style": "4"}')
    root = Path(context.data.path("inbox/drops"))
    if poison == "deep":
        (root / "bad.mp4.json").write_text("[" * 20_000 + "]" * 20_000)
    else:
        (root / "bad.mp4.json").mkdir()
        (root / "bad.mp4.json" / "inside.txt").write_text("not a sidecar")
    drop(context, "bad.mp4", clips["silent"])
    jobs = inbox_jobs(client)
    assert set(jobs) == {"ok.mp4", "bad.mp4"}, jobs
    assert jobs["ok.mp4"]["model"] == "styles:4" and jobs["bad.mp4"]["model"] == "refused"
    claimed = context.jobs.get(jobs["bad.mp4"]["id"])
    assert "bad.mp4.json" in claimed.params.refused
    assert ("deeper than" if poison == "deep" else "is a folder") in claimed.params.refused, claimed.params.refused
    drop(context, "later.mp4", clips["silent"])  # the inbox keeps working, and the refusal is not made twice
    again = inbox_jobs(client)
    assert set(again) == {"ok.mp4", "bad.mp4", "later.mp4"} and again["bad.mp4"]["id"] == jobs["bad.mp4"]["id"]


def test_a_poison_batch_request_is_refused_alone(client, clips):
    """A dropped batch request nested too deep, or a folder named like one, never stops the videos beside it."""
    context = client.app.state.context
    batches = Path(context.data.path("inbox/batches"))
    batches.mkdir(parents=True)
    (batches / "deep.batch.json").write_text('{"spec": ' + "[" * 20_000 + "]" * 20_000 + "}")
    (batches / "odd.batch.json").mkdir()
    (batches / "odd.batch.json" / "x.batch.json").write_text("{}")
    drop(context, "ok.mp4", clips["silent"])
    past = time.time() - 5
    for path in batches.rglob("*"):
        os.utime(path, (past, past))
    assert set(inbox_jobs(client)) == {"ok.mp4"}
    info = context.data.info("inbox/batches/deep.batch.json")
    from restyle.service import keys

    receipt = json.loads(context.system.get_bytes(keys.inbox_batch_receipt(info.key, info.etag)))
    assert "deeper than" in receipt["refused"] or "not JSON" in receipt["refused"], receipt


def test_whatever_one_drop_raises_it_is_refused_alone(client, clips, monkeypatch, caplog):
    """The last line of defence: an error nobody foresaw, raised by one object, fails that object's job once."""
    from restyle.service.trigger import Trigger

    context = client.app.state.context
    drop(context, "ok.mp4", clips["silent"])
    drop(context, "odd.mp4", clips["silent"])
    params_for = Trigger.params_for

    def hostile(self, key, modified):
        if key.endswith("odd.mp4"):
            raise KeyError("something nobody foresaw")
        return params_for(self, key, modified)

    monkeypatch.setattr(Trigger, "params_for", hostile)
    jobs = inbox_jobs(client)
    assert set(jobs) == {"ok.mp4", "odd.mp4"} and jobs["odd.mp4"]["model"] == "refused"
    refused = context.jobs.get(jobs["odd.mp4"]["id"]).params.refused
    assert refused.startswith("odd.mp4 could not be read as an inbox drop (KeyError"), refused
    assert inbox_jobs(client) == jobs and caplog.text.count("odd.mp4 refused") == 1


def test_a_scan_does_not_list_again_what_the_trigger_handled(client, clips, monkeypatch):
    """The trigger listed the whole ever-growing inbox every poll (issue 26, finding 5c; failed on 4b5e38b, where
    the second scan read every name again). Folders that did not change are not listed again; new drops are seen."""
    context = client.app.state.context
    for n in range(3):
        drop(context, f"v{n}.mp4", clips["silent"])
    root = Path(context.data.path("inbox/drops"))
    for n in range(40):
        (root / f"still{n}.jpg").write_bytes(b"a picture beside")
    assert len(inbox_jobs(client)) == 3
    past = time.time() - 60
    for path in (root, root.parent, *root.iterdir()):
        os.utime(path, (past, past))
    client.app.state.trigger.scan()  # the folders' times moved: listed once more
    read = []
    scandir = os.scandir

    def counted(path=".", *args):
        entries = list(scandir(path, *args))
        read.extend(entry.name for entry in entries)
        return iter(entries)

    monkeypatch.setattr(os, "scandir", counted)
    assert client.app.state.trigger.scan() == []
    assert read == [], f"{len(read)} names read again"
    monkeypatch.setattr(os, "scandir", scandir)
    drop(context, "new.mp4", clips["silent"])
    assert set(inbox_jobs(client)) == {"v0.mp4", "v1.mp4", "v2.mp4", "new.mp4"}
