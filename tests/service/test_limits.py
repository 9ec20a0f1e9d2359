"""Rate limits and per-tenant quotas at the door (restyle.service.limits, applied by the guard): every route that
stores bytes is rate-limited and counted against its caller's quotas, refused before its body is read."""

from __future__ import annotations

import io
import os
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from restyle.config import Settings
from restyle.service.http.app import create_app

ALICE, BOB, ROOT = "alice-token-0123456789", "bob-token-0123456789ab", "root-token-0123456789ab"
TOKENS = f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}"


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def png(colour="red", size=(32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def serve(tmp_path, **settings):
    return TestClient(create_app(Settings(home=tmp_path / "home", tokens=TOKENS, sidecar_wait_seconds=0, **settings)))


def save(client, name, data=None, token=ALICE, **kwargs):
    files = {"file": ("p.png", data if data is not None else png())}
    return client.post("/api/pictures", files=files, data={"name": name}, headers=auth(token), **kwargs)


def test_saving_pictures_is_rate_limited_per_token(tmp_path):
    """Failed on 4b5e38b: POST /api/pictures had no rate (40 saves in 4 s). Now the store rate's burst, then 429."""
    with serve(tmp_path, store_rate_per_minute=1, store_burst=3) as client:
        assert [save(client, f"p{n}").status_code for n in range(3)] == [201, 201, 201]
        refused = save(client, "p3")
        assert refused.status_code == 429 and "too many uploads to store from alice" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        assert save(client, "b0", token=BOB).status_code == 201  # each token its own bucket
        files = [("files", ("a.png", png()))]
        first = client.post("/api/datasets", data={"prefix": "up"}, files=files, headers=auth(BOB))
        second = client.post("/api/datasets", data={"prefix": "up"}, files=files, headers=auth(BOB))
        assert (first.status_code, second.status_code) == (201, 201)
        assert client.post("/api/datasets", files=files, headers=auth(BOB)).status_code == 429  # the same bucket


def test_a_tenant_may_save_so_many_pictures(tmp_path):
    """Failed on 4b5e38b (no quota). The count is the tenant's own; deleting one makes room."""
    with serve(tmp_path, quota_pictures=2, store_burst=50) as client:
        assert save(client, "a").status_code == 201 and save(client, "b", png("blue")).status_code == 201
        refused = save(client, "c", png("green"))
        assert refused.status_code == 429 and "RESTYLE_QUOTA_PICTURES=2" in refused.json()["detail"]
        assert save(client, "c", token=BOB).status_code == 201
        assert client.delete("/api/pictures/a", headers=auth(ALICE)).status_code == 200
        assert save(client, "c", png("green")).status_code == 201


def test_stored_bytes_are_counted_before_the_body_is_read(tmp_path):
    """Failed on 4b5e38b (no quota). A declared length past the quota is 413 from the headers; a chunked body is
    held to what is left as it streams; a job's video upload counts the same bytes."""
    pictures = [png(colour, (200, 200)) for colour in ("red", "blue", "green")]
    noise = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noise, "PNG")
    pictures.append(noise.getvalue())  # 12 KB: more than the quota has left
    kept = sum(len(p) for p in pictures[:3])
    with serve(tmp_path, quota_bytes=kept + 600, store_burst=50, quota_bytes_seconds=0.01) as client:
        assert save(client, "a", pictures[0]).status_code == 201
        assert save(client, "b", pictures[1]).status_code == 201
        declared = client.post(
            "/api/pictures",
            content=b"x",
            headers=auth(ALICE) | {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "100000"},
        )
        assert declared.status_code == 413 and "RESTYLE_QUOTA_BYTES" in declared.json()["detail"]
        head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="m.png"\r\n\r\n'
        chunked = client.post(
            "/api/datasets",
            content=iter([head] + [b"\0" * 10_000] * 30),
            headers=auth(ALICE) | {"Content-Type": "multipart/form-data; boundary=x"},
        )
        assert chunked.status_code == 413 and "RESTYLE_QUOTA_BYTES" in chunked.json()["detail"]
        assert save(client, "c", pictures[2]).status_code == 201  # what is left
        full = save(client, "d", pictures[3])
        assert full.status_code == 413 and f"alice stores {kept} bytes" in full.json()["detail"]
        video = client.post("/api/jobs", files={"video": ("v.mp4", b"\0" * 5000)}, headers=auth(ALICE))
        assert video.status_code == 413 and "RESTYLE_QUOTA_BYTES" in video.json()["detail"]
        assert save(client, "d", pictures[3], token=ROOT).status_code == 201  # admins have no quota


def test_a_tenant_may_have_so_many_jobs_waiting_or_running(tmp_path):
    """Failed on 4b5e38b (no quota). Jobs uploading, queued or running count; an ended one makes room."""
    with serve(tmp_path, quota_jobs=2) as client:
        made = [client.post("/api/uploads", json={"filename": f"{n}.mp4"}, headers=auth(ALICE)) for n in range(2)]
        assert [m.status_code for m in made] == [201, 201]
        refused = client.post("/api/uploads", json={"filename": "2.mp4"}, headers=auth(ALICE))
        assert refused.status_code == 429 and "alice has 2 jobs uploading, queued or running" in refused.text
        assert "RESTYLE_QUOTA_JOBS=2" in refused.json()["detail"]
        video = client.post("/api/jobs", files={"video": ("v.mp4", b"\0" * 100)}, headers=auth(ALICE))
        assert video.status_code == 429
        batch = client.post("/api/batches", json={"prefix": "up"}, headers=auth(ALICE))
        assert batch.status_code == 429
        assert client.post("/api/uploads", json={"filename": "b.mp4"}, headers=auth(BOB)).status_code == 201
        job = made[0].json()["job"]["id"]
        assert client.post(f"/api/jobs/{job}/cancel", headers=auth(ALICE)).status_code == 200
        assert client.post("/api/uploads", json={"filename": "2.mp4"}, headers=auth(ALICE)).status_code == 201


def test_a_deleted_pictures_file_is_removed_unless_a_waiting_job_uses_it(tmp_path):
    """Failed on 4b5e38b: the file of a deleted picture stayed in the system store for ever."""
    with serve(tmp_path, store_burst=50) as client:
        system = client.app.state.context.system
        key = save(client, "gone").json()
        saved = client.app.state.context.catalogue_store.picture("alice", "gone")
        assert system.exists(saved.key)
        assert client.delete("/api/pictures/gone", headers=auth(ALICE)).status_code == 200
        assert not system.exists(saved.key)
        assert key["name"] == "gone"
        # Saved again, used by a job that waits for its video: deleting the name keeps the file for the job.
        assert save(client, "kept").status_code == 201
        waiting = client.post("/api/uploads", json={"filename": "a.mp4", "style_image": "kept"}, headers=auth(ALICE))
        assert waiting.status_code == 201, waiting.text
        assert client.delete("/api/pictures/kept", headers=auth(ALICE)).status_code == 200
        assert system.exists(saved.key)


def test_requests_held_at_once_cannot_all_pass_a_quota():
    """A burst: each request counts while it runs, so two at once cannot both take the last place."""
    from restyle.service.limits import OverQuota, Quotas, Usage

    measured = []
    quotas = Quotas(Usage(jobs=1, bytes=100), lambda owner, with_bytes: measured.append(with_bytes) or Usage(0, 0, 0))
    held = quotas.hold("alice", ("jobs", "bytes"), 60)
    with pytest.raises(OverQuota) as jobs:
        quotas.hold("alice", ("jobs",), 0)
    assert jobs.value.status == 429
    with pytest.raises(OverQuota) as stored:
        quotas.hold("alice", ("bytes",), 50)
    assert stored.value.status == 413 and quotas.remaining_bytes("alice") == 40
    quotas.release("alice", held)
    assert quotas.hold("alice", ("jobs", "bytes"), 90).jobs == 1
    assert quotas.hold("bob", ("jobs",), 0).jobs == 1
    threads = [threading.Thread(target=quotas.hold, args=("carol", ("jobs",), 0)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert quotas._held["carol"].jobs == 1  # one of the two was refused (its thread raised OverQuota)
