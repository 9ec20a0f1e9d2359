"""Watching a result: the output served inline with HTTP Range requests (a folder store and a store-backed one),
the painting a job was given, the still strip's names, and times in ISO 8601 (the API and the job log)."""

import json
from datetime import datetime
from urllib.parse import urlparse

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.http import media
from restyle.service.http.app import create_app
from restyle.service.joblog import JobLog
from restyle.stores.objects import ObjectStore, local_link
from tests.service.test_api import ALICE, BOB, ROOT, auth, upload

BYTES = bytes(range(256)) * 40  # 10 240 bytes, each offset's value known


@pytest.fixture()
def client(tmp_path):
    settings = Settings(home=tmp_path, tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}")
    with TestClient(create_app(settings)) as client:
        yield client


def succeeded(client, clips) -> dict:
    """A job of alice's, taken and ended as a worker would, its output BYTES in the outbox."""
    job = upload(client, clips["silent"]).json()
    context = client.app.state.context
    taken = context.jobs.claim("w1", 60)
    assert taken.id == job["id"]
    context.data.put_bytes(BYTES, f"outbox/{job['id']}/out.mp4")
    assert context.jobs.succeed(job["id"], "w1", f"outbox/{job['id']}/out.mp4", {"frames": 1})
    return client.get(f"/api/jobs/{job['id']}", headers=auth(ALICE)).json()


def test_signed_link_answers_a_range_with_206_and_inline_when_asked(client):
    context = client.app.state.context
    context.data.put_bytes(BYTES, "outbox/j1/out.mp4")
    link = urlparse(local_link("", context.link_secret, "outbox/j1/out.mp4", 60))
    whole = client.get(f"{link.path}?{link.query}")
    assert whole.status_code == 200 and whole.content == BYTES
    assert whole.headers["content-disposition"].startswith("attachment")  # the download link stays a download
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"{link.path}?{link.query}&disposition=inline", headers={"Range": "bytes=1000-1099"})
    assert part.status_code == 206 and part.content == BYTES[1000:1100]
    assert part.headers["content-range"] == f"bytes 1000-1099/{len(BYTES)}"
    assert part.headers["content-disposition"].startswith("inline")


def test_output_media_plays_inline_with_ranges(client, clips):
    job = succeeded(client, clips)
    url = f"/api/jobs/{job['id']}/output/media"
    whole = client.get(url, headers=auth(ALICE))
    assert whole.status_code == 200 and whole.content == BYTES
    assert whole.headers["content-disposition"].startswith("inline") and whole.headers["content-type"] == "video/mp4"
    tail = client.get(url, headers=auth(ALICE) | {"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == BYTES[-10:]
    assert client.get(url, headers=auth(BOB)).status_code == 404  # another tenant's job is not there
    queued = upload(client, clips["silent"]).json()
    assert client.get(f"/api/jobs/{queued['id']}/output/media", headers=auth(ALICE)).status_code == 404


@pytest.fixture()
def store_app():
    """A store-backed object store (fsspec's in-memory one: not a folder) behind media.serve."""
    store = ObjectStore("memory://restyle-media-test")
    store.put_bytes(BYTES, "outbox/j2/out.mp4")
    app = FastAPI()

    @app.get("/out")
    def out(request: Request):
        return media.serve(store, "outbox/j2/out.mp4", request.headers.get("range"), "inline")

    with TestClient(app) as http:
        yield http
    store.delete("outbox", recursive=True)


@pytest.mark.parametrize(
    ("asked", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=5000-", 5000, 10240),
        ("bytes=-100", 10140, 10240),
        ("bytes=10000-99999", 10000, 10240),
    ],
)
def test_a_store_backed_output_streams_the_range_asked(store_app, asked, start, end, monkeypatch):
    monkeypatch.setattr(media, "PIECE", 1000)  # several ranged reads for one answer
    answer = store_app.get("/out", headers={"Range": asked})
    assert answer.status_code == 206, answer.text
    assert answer.content == BYTES[start:end]
    assert answer.headers["content-range"] == f"bytes {start}-{end - 1}/{len(BYTES)}"
    assert answer.headers["accept-ranges"] == "bytes" and answer.headers["content-disposition"].startswith("inline")


def test_a_store_backed_output_whole_and_past_its_end(store_app):
    whole = store_app.get("/out")
    assert whole.status_code == 200 and whole.content == BYTES and whole.headers["content-length"] == "10240"
    past = store_app.get("/out", headers={"Range": "bytes=20000-"})
    assert past.status_code == 416 and past.headers["content-range"] == "bytes */10240"
    several = store_app.get("/out", headers={"Range": "bytes=0-1,5-6"})  # not taken: the whole object
    assert several.status_code == 200 and several.content == BYTES


def test_the_api_gives_times_in_iso_8601_utc_beside_the_epochs(client, clips):
    job = succeeded(client, clips)
    queued = upload(client, clips["silent"]).json()
    assert queued["submitted"].endswith("Z") and queued["started"] is None and queued["duration_s"] is None
    assert datetime.fromisoformat(queued["submitted"]).timestamp() == pytest.approx(queued["created_at"], abs=1e-3)
    for field, epoch in (("submitted", "created_at"), ("started", "started_at"), ("finished", "finished_at")):
        assert job[field].endswith("Z"), job[field]
        assert datetime.fromisoformat(job[field]).timestamp() == pytest.approx(job[epoch], abs=1e-3)
    assert job["duration_s"] == pytest.approx(job["finished_at"] - job["started_at"], abs=1e-3)
    assert job["started_at"] >= job["created_at"]


def test_a_queued_job_shows_about_how_many_jobs_come_before_it(client, clips):
    first, second = (upload(client, clips["silent"]).json() for _ in range(2))
    third = upload(client, clips["silent"], token=BOB).json()

    def ahead():
        return [
            client.get(f"/api/jobs/{j['id']}", headers=auth(ROOT)).json()["queue_ahead"] for j in (first, second, third)
        ]

    assert ahead() == [0, 1, 2]  # no one served yet: oldest first
    assert client.app.state.context.jobs.claim("w1", 60).id == first["id"]
    # the fair claim: alice has a job running, bob none, so bob's job goes before alice's second
    assert ahead() == [None, 1, 0]
    assert client.app.state.context.jobs.claim("w2", 60).id == third["id"]  # the place said was the place taken


def test_the_painting_a_job_was_given_is_served(client, clips, tmp_path):
    from PIL import Image

    painting = tmp_path / "wave.png"
    Image.new("RGB", (64, 48), "navy").save(painting)
    with open(clips["silent"], "rb") as video, open(painting, "rb") as picture:
        job = client.post(
            "/api/jobs",
            files={"file": ("clip.mp4", video, "video/mp4"), "style_image": ("wave.png", picture, "image/png")},
            data={"model": "style-image"},
            headers=auth(ALICE),
        ).json()
    answer = client.get(f"/api/jobs/{job['id']}/painting", headers=auth(ALICE))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.content == painting.read_bytes()
    styles = upload(client, clips["silent"]).json()
    assert client.get(f"/api/jobs/{styles['id']}/painting", headers=auth(ALICE)).status_code == 404


def test_stills_take_the_strip_names_and_no_others(client, clips):
    job = upload(client, clips["silent"]).json()
    context = client.app.state.context
    context.system.put_bytes(b"jpeg", f"stills/{job['id']}/after-4.jpg")
    assert client.get(f"/api/jobs/{job['id']}/stills/after-4", headers=auth(ALICE)).content == b"jpeg"
    assert client.get(f"/api/jobs/{job['id']}/stills/after-9", headers=auth(ALICE)).status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/stills/before-0", headers=auth(ALICE)).status_code == 404  # not made


def test_the_job_log_writes_iso_8601_utc(client):
    journal = JobLog(client.app.state.context, "j3", "w1")
    journal.write("claimed", attempt=1)
    line = json.loads(client.app.state.context.system.get_bytes("logs/j3.jsonl").decode().splitlines()[0])
    assert line["at"].endswith("Z") and datetime.fromisoformat(line["at"]).tzinfo is not None
