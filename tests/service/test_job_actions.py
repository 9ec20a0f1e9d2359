"""Actions on a job through the API and the dashboard's forms (issue 27, finding 1: before ui27a there was no
retry, no run again and no delete, and cancel answered 200 on an ended job): each action in each state, 409
with the reason for a wrong one, 404 for a stranger's job; a run again stores no second upload."""

from __future__ import annotations

import json
import time

import pytest

from restyle.service import keys
from restyle.service.joblog import JobLog
from restyle.service.retention import Retention
from tests.service.test_api import ALICE, BOB, ROOT, auth, client, sign_in, upload  # noqa: F401 - fixture

__all__ = ["client"]


def ended(client, job_id: str, how: str) -> None:
    """Take a queued job to ``how`` (succeeded, failed, cancelled, running) as a worker would."""
    jobs = client.app.state.context.jobs
    assert jobs.claim("w", 30).id == job_id
    if how == "succeeded":
        client.app.state.context.data.put_bytes(b"styled", keys.output(job_id, "out.mp4"))
        assert jobs.succeed(job_id, "w", keys.output(job_id, "out.mp4"), {})
    elif how == "failed":
        jobs.fail(job_id, "w", "not a video", retry=False)
    elif how == "cancelled":
        jobs.cancel(job_id)
        assert jobs.cancelled(job_id, "w", chunks_kept=2)


def test_actions_listed_per_state(client, clips):
    job = upload(client, clips["silent"]).json()
    assert job["actions"] == ["cancel", "rerun"]
    ended(client, job["id"], "failed")
    shown = client.get(f"/api/jobs/{job['id']}", headers=auth(ALICE)).json()
    assert shown["actions"] == ["retry", "rerun", "delete"]
    assert shown["input_kept_until"] == pytest.approx(shown["finished_at"] + 24 * 3600)


def test_cancel_an_ended_job_is_409_and_a_queued_one_ends_at_once(client, clips):
    job = upload(client, clips["silent"]).json()
    answer = client.post(f"/api/jobs/{job['id']}/cancel", headers=auth(ALICE))
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"
    again = client.post(f"/api/jobs/{job['id']}/cancel", headers=auth(ALICE))
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    assert client.post(f"/api/jobs/{job['id']}/cancel", headers=auth(BOB)).status_code == 404


def test_a_running_cancel_keeps_chunks_and_says_so(client, clips):
    job = upload(client, clips["silent"]).json()
    ended(client, job["id"], "cancelled")
    shown = client.get(f"/api/jobs/{job['id']}", headers=auth(ALICE)).json()
    assert shown["state"] == "cancelled" and "its 2 finished chunks are kept" in shown["reason"]
    assert shown["progress"]["chunks_done"] == 2


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_retry_queues_an_ended_job_again_with_its_attempts_afresh(client, clips, how):
    job = upload(client, clips["silent"]).json()
    ended(client, job["id"], how)
    answer = client.post(f"/api/jobs/{job['id']}/retry", headers=auth(ALICE))
    assert answer.status_code == 200, answer.text
    retried = answer.json()
    assert retried["state"] == "queued" and retried["attempts"] == 0 and retried["reason"] is None
    assert retried["finished_at"] is None
    assert client.app.state.context.jobs.claim("w2", 30).id == job["id"]  # a worker takes it again


def test_retry_in_a_wrong_state_is_409_with_the_reason(client, clips):
    job = upload(client, clips["silent"]).json()
    queued = client.post(f"/api/jobs/{job['id']}/retry", headers=auth(ALICE))
    assert queued.status_code == 409 and "only a failed, dead or cancelled job" in queued.json()["detail"]
    ended(client, job["id"], "running")
    running = client.post(f"/api/jobs/{job['id']}/retry", headers=auth(ALICE))
    assert running.status_code == 409 and "cancel it first" in running.json()["detail"]
    assert client.post(f"/api/jobs/{job['id']}/retry", headers=auth(BOB)).status_code == 404


def test_retry_and_rerun_after_the_input_was_swept_are_409_naming_the_setting(client, clips):
    job = upload(client, clips["silent"]).json()
    ended(client, job["id"], "failed")
    Retention(client.app.state.context).sweep(time.time() + 25 * 3600)  # past RESTYLE_KEEP_INPUTS_HOURS (24)
    for action, body in (("retry", None), ("rerun", {"style": "3"})):
        answer = client.post(f"/api/jobs/{job['id']}/{action}", headers=auth(ALICE), json=body)
        assert answer.status_code == 409 and "RESTYLE_KEEP_INPUTS_HOURS" in answer.json()["detail"], answer.text


def test_the_input_is_kept_for_keep_inputs_hours_then_swept(client, clips):
    job = upload(client, clips["silent"]).json()
    ended(client, job["id"], "succeeded")
    key = client.app.state.context.jobs.get(job["id"]).input_key
    sweep = Retention(client.app.state.context).sweep
    assert sweep(time.time() + 3600)["inputs"] == 0 and client.app.state.context.data.exists(key)
    assert sweep(time.time() + 24 * 3600 + 1)["inputs"] == 1 and not client.app.state.context.data.exists(key)


def test_rerun_makes_a_new_job_of_the_stored_video_without_an_upload(client, clips):
    job = upload(client, clips["silent"]).json()
    ended(client, job["id"], "succeeded")
    data = client.app.state.context.data
    first = client.app.state.context.jobs.get(job["id"])
    answer = client.post(f"/api/jobs/{job['id']}/rerun", headers=auth(ALICE), json={"style": "3", "strength": 0.5})
    assert answer.status_code == 201, answer.text
    again = answer.json()
    assert again["id"] != job["id"] and again["state"] == "queued" and again["owner"] == "alice"
    assert again["style"] == "3" and again["strength"] == 0.5 and again["input"] == "my_clip.mp4"  # as given
    second = client.app.state.context.jobs.get(again["id"])
    assert second.input_key.endswith("-my_clip.mp4")  # an upload's key of its own (keys.inbox's random prefix)
    assert second.input_key != first.input_key and second.input_etag == first.input_etag
    assert data.get_bytes(second.input_key) == data.get_bytes(first.input_key)
    # the same file on disk (a hard link): no byte was uploaded or copied
    assert data.path(second.input_key) and _inode(data, second.input_key) == _inode(data, first.input_key)
    assert client.app.state.trigger.scan() == []  # the trigger makes no job of it
    bad = client.post(f"/api/jobs/{job['id']}/rerun", headers=auth(ALICE), json={"strength": 7})
    assert bad.status_code == 422
    assert client.post(f"/api/jobs/{job['id']}/rerun", headers=auth(BOB), json={}).status_code == 404


def test_rerun_logs_where_it_came_from_before_a_worker_can_take_it(client, clips, monkeypatch):
    """The "run again" line was written after the new job had joined the queue: a worker that took it at once
    had read the job's log before the line and wrote over it with its own."""
    context = client.app.state.context
    job = upload(client, clips["silent"]).json()
    ended(client, job["id"], "succeeded")
    claims, landed = [], context.jobs.landed

    def landed_and_taken_at_once(key, etag):
        made = landed(key, etag)
        claims.append(JobLog(context, made.id, "w2"))  # a worker's log of the job, read as it claims it
        return made

    monkeypatch.setattr(context.jobs, "landed", landed_and_taken_at_once)
    again = client.post(f"/api/jobs/{job['id']}/rerun", headers=auth(ALICE), json={"style": "3"}).json()
    claims[0].write("claimed")
    lines = [json.loads(line) for line in context.system.get_bytes(keys.log(again["id"])).decode().splitlines()]
    assert [line["event"] for line in lines] == ["run again", "claimed"] and lines[0]["of"] == job["id"]


def _inode(data, key):
    import os

    return os.stat(data.path(key)).st_ino


def test_delete_removes_the_job_and_its_files_owner_or_admin_only(client, clips):
    context = client.app.state.context
    job = upload(client, clips["silent"]).json()
    running = client.delete(f"/api/jobs/{job['id']}", headers=auth(ALICE))
    assert running.status_code == 409 and "cancel it first" in running.json()["detail"]
    ended(client, job["id"], "succeeded")
    input_key = context.jobs.get(job["id"]).input_key
    context.system.put_bytes(b"jpeg", keys.still(job["id"], "before"))
    context.system.put_bytes(b"{}\n", keys.log(job["id"]))
    context.system.put_bytes(b"segment", f"{keys.work(job['id'])}/0.mp4")
    assert client.delete(f"/api/jobs/{job['id']}", headers=auth(BOB)).status_code == 404
    assert client.delete(f"/api/jobs/{job['id']}", headers=auth(ALICE)).status_code == 204
    assert client.get(f"/api/jobs/{job['id']}", headers=auth(ALICE)).status_code == 404
    assert not context.data.exists(keys.output(job["id"], "out.mp4")) and not context.data.exists(input_key)
    assert not context.system.exists(keys.still(job["id"], "before")) and not context.system.exists(keys.log(job["id"]))
    assert context.system.list(keys.work(job["id"]) + "/") == []
    other = upload(client, clips["silent"]).json()
    ended(client, other["id"], "failed")
    assert client.delete(f"/api/jobs/{other['id']}", headers=auth(ROOT)).status_code == 204  # an admin may


def test_dashboard_buttons_are_same_origin_forms(client, clips):
    job = upload(client, clips["silent"]).json()
    sign_in(client, ALICE)
    page = client.get(f"/jobs/{job['id']}", headers={"Authorization": ""}).text
    assert f'action="/jobs/{job["id"]}/cancel"' in page and f'action="/jobs/{job["id"]}/rerun"' in page
    assert 'id="retry"' not in page and 'id="delete"' not in page  # not for a queued job
    site = {"Sec-Fetch-Site": "same-origin"}  # the session cookie, no bearer token
    answer = client.post(f"/jobs/{job['id']}/cancel", headers=site, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/jobs/{job['id']}"
    refused = client.post(f"/jobs/{job['id']}/cancel", headers=site, follow_redirects=False)
    assert refused.headers["location"] == f"/jobs/{job['id']}?error=refused"
    assert "already ended (cancelled)" in client.get(refused.headers["location"], headers=site).text
    cross = client.post(f"/jobs/{job['id']}/delete", headers={"Sec-Fetch-Site": "cross-site"})  # the cookie alone
    assert cross.status_code == 403 and client.app.state.context.jobs.get(job["id"]) is not None
    retried = client.post(f"/jobs/{job['id']}/retry", headers=site, follow_redirects=False)
    assert retried.status_code == 303 and client.app.state.context.jobs.get(job["id"]).state == "queued"
    rerun = client.post(
        f"/jobs/{job['id']}/rerun", headers=site, data={"model": "styles", "style": "11"}, follow_redirects=False
    )
    assert rerun.status_code == 303, rerun.text
    new_id = rerun.headers["location"].rsplit("/", 1)[-1]
    assert new_id != job["id"] and client.app.state.context.jobs.get(new_id).params.spec.style == "11"


@pytest.mark.slow
def test_embedded_cancel_stops_within_a_frame_batch_keeps_chunks_and_retry_does_not_redo_them(start_service, tmp_path):
    """Issue 27: a cancel took 14.5 s (the chunk in flight finished) and threw the finished chunks away. Now the
    running chunk stops at its next frame batch, the finished ones stay in the work area, and a retry reuses them:
    no chunk is scored twice."""
    from restyle.media.sample import make_clip

    clip = make_clip(tmp_path / "long.mp4", width=480, height=270, rate=25, seconds=8, keyframe_interval=25)
    service = start_service()
    with open(clip, "rb") as f:
        job = service.http.post("/api/jobs", files={"file": ("long.mp4", f)}, data={"style": "3"}).json()
    service.wait_for_chunks(job["id"], 2)
    asked = time.monotonic()
    assert service.http.post(f"/api/jobs/{job['id']}/cancel").json()["state"] == "running"
    done = service.wait_for(job["id"], timeout=60)
    took = time.monotonic() - asked
    assert done["state"] == "cancelled", done
    kept = done["progress"]["chunks_done"]
    assert kept >= 2 and f"its {kept} finished chunks are kept" in done["reason"]
    work = service.home / "system" / "work" / job["id"]
    stored = sorted(p.name for p in work.rglob("*.mp4"))
    assert len(stored) == kept, stored  # the finished chunks are still in the store
    print(f"cancel took {took:.2f} s; {kept} of {done['progress']['chunks_total']} chunks kept")
    assert took < 8, took  # a heartbeat (2 s) and a frame batch, not the rest of a chunk
    retried = service.http.post(f"/api/jobs/{job['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "queued"
    finished = service.wait_for(job["id"])
    assert finished["state"] == "succeeded", finished
    assert finished["figures"]["chunks_reused"] == kept  # the kept chunks, not scored again
    assert finished["chunks_redone"] == 0 and finished["figures"]["frames"] == 200
