"""The API in-process (FastAPI's TestClient) on the embedded stores: auth, uploads, links, events."""

import time
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.http.app import create_app

ALICE, BOB, ROOT = "alice-token-0123456789", "bob-token-0123456789ab", "root-token-0123456789ab"


@pytest.fixture()
def client(tmp_path):
    settings = Settings(
        home=tmp_path,
        tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
        link_seconds=60,
        max_upload_bytes=200_000,
    )
    with TestClient(create_app(settings)) as client:
        client.settings = settings
        yield client


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def sign_in(client, token) -> dict[str, str]:
    """Sign ``client`` in to the dashboard with ``token`` (its session cookie kept); that cookie, to send elsewhere."""
    client.cookies.clear()
    answer = client.post("/login", data={"token": token}, follow_redirects=False, headers={"Authorization": ""})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    return {name: value for name, value in answer.cookies.items()}


def upload(client, clip, token=ALICE, **form):
    with open(clip, "rb") as video:
        return client.post(
            "/api/jobs",
            files={"file": ("my clip.mp4", video, "video/mp4")},
            data={"style": "7", **form},
            headers=auth(token),
        )


def test_no_token_is_401_and_a_wrong_one_too(client):
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs", headers=auth("nope")).status_code == 401
    assert client.get("/api/jobs").headers["www-authenticate"] == "Bearer"


def test_upload_makes_a_queued_job_in_the_inbox(client, clips):
    response = upload(client, clips["silent"])
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] == "queued" and job["owner"] == "alice" and job["style"] == "7"
    assert job["input"] == "my_clip.mp4" and job["deflicker"] == 0.0
    smooth = upload(client, clips["pal"], deflicker="0.8").json()
    assert smooth["deflicker"] == 0.8 and client.app.state.context.jobs.get(smooth["id"]).params.spec.deflicker == 0.8
    keys = [o.key for o in client.app.state.context.data.list("inbox/")]
    assert len(keys) == 2 and all(k.startswith("inbox/alice/") for k in keys)
    # The trigger sees the same object and makes no second job.
    assert client.app.state.trigger.scan() == []
    assert len(client.get("/api/jobs", headers=auth(ROOT)).json()) == 2


def test_submitters_see_only_their_own_jobs(client, clips):
    job = upload(client, clips["silent"]).json()
    assert client.get(f"/api/jobs/{job['id']}", headers=auth(ALICE)).status_code == 200
    assert client.get(f"/api/jobs/{job['id']}", headers=auth(BOB)).status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/output", headers=auth(BOB)).status_code == 404
    assert client.get(f"/api/jobs/{job['id']}/log", headers=auth(BOB)).status_code == 404
    assert client.post(f"/api/jobs/{job['id']}/cancel", headers=auth(BOB)).status_code == 404
    assert client.get("/api/jobs", headers=auth(BOB)).json() == []
    assert client.get(f"/api/jobs/{job['id']}/log", headers=auth(ALICE)).status_code == 403  # logs are for admins
    assert client.get(f"/api/jobs/{job['id']}/log", headers=auth(ROOT)).status_code == 200
    assert client.get("/api/workers", headers=auth(ALICE)).status_code == 403


def test_bad_parameters_and_sizes_are_refused(client, clips, tmp_path):
    assert upload(client, clips["silent"], style="99").status_code == 422
    assert upload(client, clips["silent"], deflicker="2").status_code == 422
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * 300_000)
    assert upload(client, big).status_code == 413
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert upload(client, empty).status_code == 422


def test_output_is_409_until_the_job_succeeds(client, clips):
    job = upload(client, clips["silent"]).json()
    assert client.get(f"/api/jobs/{job['id']}/output", headers=auth(ALICE)).status_code == 409


def test_local_download_links_are_signed_and_expire(client):
    from restyle.stores.objects import local_link

    context = client.app.state.context
    context.data.put_bytes(b"video bytes", "outbox/j1/out.mp4")
    good = urlparse(local_link("", context.link_secret, "outbox/j1/out.mp4", 60))
    assert client.get(f"{good.path}?{good.query}").content == b"video bytes"
    query = parse_qs(good.query)
    tampered = f"{good.path}?expires={int(query['expires'][0]) + 100}&signature={query['signature'][0]}"
    assert client.get(tampered).status_code == 403
    expired = urlparse(local_link("", context.link_secret, "outbox/j1/out.mp4", -1))
    assert client.get(f"{expired.path}?{expired.query}").status_code == 403
    inbox = urlparse(local_link("", context.link_secret, "inbox/x.mp4", 60))
    assert client.get(f"{inbox.path}?{inbox.query}").status_code == 403  # only outputs are downloadable
    system = urlparse(local_link("", context.link_secret, "../system/logs/x.jsonl", 60))
    assert client.get(f"{system.path}?{system.query}").status_code in (403, 404)


def test_presigned_upload_then_the_job_queues(client, clips):
    response = client.post("/api/uploads", json={"filename": "phone.mp4", "style": "3"}, headers=auth(ALICE))
    assert response.status_code == 201, response.text
    link = response.json()
    assert link["job"]["state"] == "uploading" and link["expires_at"] > time.time()
    url = urlparse(link["upload_url"])
    put = client.put(f"{url.path}?{url.query}", content=clips["silent"].read_bytes())
    assert put.status_code == 200, put.text
    assert client.get(f"/api/jobs/{link['job']['id']}", headers=auth(ALICE)).json()["state"] == "queued"
    assert client.put(f"{url.path}?{url.query}", content=b"again").status_code == 409  # one upload per link


def age(data, *keys):
    """Make files look copied a while ago: the trigger waits for a local file to stop growing."""
    import os

    for key in keys:
        os.utime(data.path(key), (time.time() - 5, time.time() - 5))


def test_files_dropped_in_the_inbox_and_events_make_one_job_each(client, clips):
    data = client.app.state.context.data
    data.put_file(clips["silent"], "inbox/dropped.mp4")
    data.put_bytes(b"notes", "inbox/readme.txt")
    assert client.app.state.trigger.scan() == []  # still being copied, for all the trigger knows
    age(data, "inbox/dropped.mp4", "inbox/readme.txt")
    made = client.app.state.trigger.scan()
    assert [j.input_key for j in made] == ["inbox/dropped.mp4"]
    event = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "inbox/dropped.mp4"}}}]}
    assert client.post("/api/events", json=event, headers=auth(ROOT)).json() == {"jobs": []}  # seen already
    data.put_file(clips["pal"], "inbox/second.mp4")
    age(data, "inbox/second.mp4")
    event = {"Records": [{"s3": {"object": {"key": "inbox/second.mp4"}}}]}
    assert len(client.post("/api/events", json=event, headers=auth(ROOT)).json()["jobs"]) == 1
    assert client.post("/api/events", json=event, headers=auth(ALICE)).status_code == 403
    assert client.app.state.trigger.scan() == []
    jobs = client.get("/api/jobs", headers=auth(ROOT)).json()
    assert sorted(j["input"] for j in jobs) == ["dropped.mp4", "second.mp4"]


def test_metrics_are_prometheus_text(client, clips):
    upload(client, clips["silent"])
    text = client.get("/metrics", headers=auth(ROOT)).text
    assert 'restyle_jobs{state="queued"} 1.0' in text
    assert "restyle_queue_depth 1.0" in text
    assert "restyle_chunk_seconds_bucket" in text


def test_openapi_docs_are_served(client):
    assert "/api/jobs" in client.get("/openapi.json").json()["paths"]
