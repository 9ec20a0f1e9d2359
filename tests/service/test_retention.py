"""The retention sweep (issue 26, finding 5b: inputs of ended jobs, outputs, stills and logs were never deleted;
this file failed on 4b5e38b, which has no sweep): inputs go when a job ends, except what a retry or an admin
still needs; outputs, stills and logs after retention_days; style pictures that nothing names are collected."""

from __future__ import annotations

import io
import time

import pytest

from restyle.config import Settings
from restyle.service import keys
from restyle.service.catalogue import Catalogue
from restyle.service.context import DROPPED_OWNER, Context
from restyle.service.retention import Retention
from restyle.stores.jobs import JobState
from tests.service.test_catalogue import painting

DAY = 86400
PARAMS = {"spec": {"model": "styles", "style": "3"}}


@pytest.fixture()
def context(tmp_path):
    # keep_inputs_hours=0: inputs go a minute after a job ends (the 24 h default: tests/service/test_job_actions.py)
    return Context(
        Settings(home=tmp_path / "home", retention_days=7, webhook_catchup_seconds=3600, keep_inputs_hours=0)
    )


def job(context, owner, name, end=None, **create):
    """A job on a stored input, taken to ``end`` (succeeded, failed, cancelled, dead, retried, or None: queued)."""
    key = f"inbox/{name}"
    context.data.put_bytes(b"a video " + name.encode(), key)
    made, _ = context.jobs.create(owner, key, context.data.info(key).etag, PARAMS, **create)
    jobs = context.jobs
    if end in ("succeeded", "failed", "dead", "retried"):
        assert jobs.claim("w", 30).id == made.id
    if end == "succeeded":
        context.data.put_bytes(b"styled", keys.output(made.id, "out.mp4"))
        context.data.put_bytes(b"{}", keys.summary(made.id))
        context.system.put_bytes(b"jpeg", keys.still(made.id, "before"))
        context.system.put_bytes(b"{}\n", keys.log(made.id))
        context.system.put_bytes(b"segment", f"{keys.work(made.id)}/0.mp4")
        assert jobs.succeed(made.id, "w", keys.output(made.id, "out.mp4"), {})
    elif end == "failed":
        assert jobs.fail(made.id, "w", "not a video", retry=False) == JobState.FAILED
    elif end in ("dead", "retried"):
        assert jobs.fail(made.id, "w", "the store went away", retry=True) == (
            JobState.DEAD if end == "dead" else JobState.QUEUED
        )
    elif end == "cancelled":
        jobs.cancel(made.id)
    return made


def there(store, *names) -> dict[str, bool]:
    return {name: store.exists(name) for name in names}


def test_inputs_go_when_a_job_ends_and_outputs_after_retention(context):
    done = job(context, "alice", "alice/a.mp4", "succeeded")
    failed = job(context, "alice", "alice/b.mp4", "failed")
    cancelled = job(context, "bob", "bob/c.mp4", "cancelled")
    dead = job(context, "bob", "bob/d.mp4", "dead", max_attempts=1)
    retried = job(context, "bob", "bob/e.mp4", "retried")
    queued = job(context, "bob", "bob/f.mp4")
    context.data.put_bytes(b'{"style": "3"}', "inbox/drops/g.mp4.json")
    dropped = job(context, DROPPED_OWNER, "drops/g.mp4", "failed")
    inputs = [j.input_key for j in (done, failed, cancelled, dead, retried, queued, dropped)]
    sweep = Retention(context).sweep

    assert sweep()["inputs"] == 0  # ends just recorded: their workers may still be letting go
    assert sweep(time.time() + 61) == {"inputs": 4, "outputs": 0, "pictures": 0}
    assert there(context.data, *inputs, "inbox/drops/g.mp4.json") == {
        done.input_key: False,
        failed.input_key: False,
        cancelled.input_key: False,
        dead.input_key: True,  # kept for an admin: its input was not what failed
        retried.input_key: True,  # back in the queue: its retry needs it
        queued.input_key: True,
        dropped.input_key: False,
        "inbox/drops/g.mp4.json": False,  # the sidecar it was made with
    }
    outputs = [keys.output(done.id, "out.mp4"), keys.summary(done.id)]
    system = [keys.still(done.id, "before"), keys.log(done.id), f"{keys.work(done.id)}/0.mp4"]
    assert all(there(context.data, *outputs).values()) and all(there(context.system, *system).values())
    assert sweep(time.time() + 6 * DAY)["outputs"] == 0  # within retention_days
    assert sweep(time.time() + 7 * DAY + 61) == {"inputs": 0, "outputs": 5, "pictures": 0}  # 4 ended + the dead one
    assert not any(there(context.data, *outputs, dead.input_key).values())
    assert not any(there(context.system, *system).values())
    assert all(there(context.data, retried.input_key, queued.input_key).values())
    assert context.jobs.get(done.id).state == JobState.SUCCEEDED  # the record stays; its files are gone
    assert sweep(time.time() + 30 * DAY) == {"inputs": 0, "outputs": 0, "pictures": 0}  # each job swept once


def test_a_newer_version_under_the_same_name_is_not_deleted(context):
    old = job(context, "alice", "alice/same.mp4", "succeeded")
    time.sleep(0.01)
    context.data.put_bytes(b"a newer video, queued", old.input_key)
    assert context.data.info(old.input_key).etag != old.input_etag
    assert Retention(context).sweep(time.time() + 61)["inputs"] == 0
    assert context.data.exists(old.input_key)


def test_zero_days_keeps_outputs(tmp_path):
    context = Context(Settings(home=tmp_path / "home", retention_days=0))
    done = job(context, "alice", "alice/a.mp4", "succeeded")
    assert Retention(context).sweep(time.time() + 365 * DAY) == {"inputs": 1, "outputs": 0, "pictures": 0}
    assert context.data.exists(keys.output(done.id, "out.mp4")) and context.system.exists(keys.log(done.id))


def test_pictures_nothing_names_are_collected(context, tmp_path):
    catalogue = Catalogue(context)
    saved = catalogue.save_picture("alice", "kept", painting(tmp_path / "a.png").open("rb"))
    queued_key, _, _ = catalogue.store_picture("alice", io.BytesIO(painting(tmp_path / "b.png", (80, 64)).read_bytes()))
    context.jobs.create("alice", "inbox/alice/q.mp4", "e", {"spec": {"style_image": queued_key}})
    ended_key, _, _ = catalogue.store_picture("bob", io.BytesIO(painting(tmp_path / "c.png", (72, 64)).read_bytes()))
    ended, _ = context.jobs.create("bob", "inbox/bob/x.mp4", "e", {"spec": {"style_image": ended_key}})
    context.jobs.cancel(ended.id)
    deleted = catalogue.save_picture("bob", "gone", painting(tmp_path / "d.png", (64, 64)).open("rb"))
    catalogue.delete_picture("bob", "gone")
    assert there(context.system, deleted.key) == {deleted.key: False}  # deleting a name nothing uses removes its file
    sweep = Retention(context).sweep
    assert sweep(time.time() + 61)["pictures"] == 0  # all younger than an hour
    assert sweep(time.time() + 3601)["pictures"] == 1  # the ended job's picture
    assert there(context.system, saved.key, queued_key, ended_key, deleted.key) == {
        saved.key: True,
        queued_key: True,
        ended_key: False,
        deleted.key: False,
    }
