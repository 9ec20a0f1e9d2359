"""The batch store on SQLite and on a real PostgreSQL server: items end once, counts move with them, the allowance
stops a batch in the same transaction, pages by keyset; and a job store made before batches gets their column."""

import sqlite3
import uuid

from sqlalchemy import select

from restyle.stores.batches import BatchStore, ItemEnd
from restyle.stores.jobs import JobStore
from restyle.stores.params import JobParams
from restyle.stores.states import BatchState, ItemState, JobState
from restyle.stores.tables import JobRow


def made(jobs, items: int, units: int, max_failures: str | None = None):
    """A batch of ``items`` queued items spread over ``units`` units, listed and opened."""
    store = BatchStore(jobs.engine)
    batch = store.create("alice", "datasets/alice/x/", "outbox/batches/alice/x-1/", JobParams(), "fp", max_failures)
    unit_ids = [uuid.uuid4().hex[:12] for _ in range(units)]
    rows = [
        {"seq": n, "input_key": f"datasets/alice/x/{n}.jpg", "size": 1, "etag": "e", "state": ItemState.QUEUED}
        | {"job_id": unit_ids[n % units]}
        for n in range(items)
    ]
    store.add_items(batch.id, rows)
    store.add_units(batch, [(u, f"k{u}", f"batch:{batch.id}:{u}") for u in unit_ids], max_attempts=3)
    return store, store.open(batch.id), unit_ids


def test_an_item_ends_once_and_its_batch_counts_it_once(jobs):
    store, batch, _ = made(jobs, 4, 2)
    assert batch.state == BatchState.RUNNING and (batch.total, batch.left) == (4, 4)
    done = ItemEnd(0, ItemState.SUCCEEDED, output_key="outbox/batches/alice/x-1/0.jpg", frames=1)
    store.end_items(batch.id, [done])
    store.end_items(batch.id, [done, ItemEnd(0, ItemState.FAILED, "late report of another worker")])
    batch = store.get(batch.id)
    assert (batch.succeeded, batch.failed, batch.frames, batch.left) == (1, 0, 1, 3)
    assert store.items(batch.id)[0].state == ItemState.SUCCEEDED and store.items(batch.id)[0].reason is None


def test_past_the_allowance_the_batch_stops_its_queued_units_and_their_items(jobs):
    store, batch, units = made(jobs, 20, 5, max_failures="10%")  # 2 failures of 20 allowed, the third stops it
    running = jobs.claim("w1", 30)
    first = [item for item in store.unit_items(running.id)]
    store.start_unit(running.id)
    store.end_items(
        batch.id, [ItemEnd(first[0].seq, ItemState.FAILED, "bad"), ItemEnd(first[1].seq, ItemState.FAILED, "bad")]
    )
    assert store.get(batch.id).stop is None
    store.end_items(batch.id, [ItemEnd(first[2].seq, ItemState.FAILED, "bad")])
    batch = store.get(batch.id)
    assert batch.stop == "stopped" and "3 of 20 items failed" in batch.reason and "10%" in batch.reason
    assert batch.not_run == 16  # the four units that were queued
    assert jobs.get(running.id).cancel_requested and jobs.get(running.id).state == JobState.RUNNING
    assert {jobs.get(u).state for u in units if u != running.id} == {JobState.CANCELLED}
    assert store.active_units(batch.id) == 1
    jobs.cancelled(running.id, "w1")
    assert [u for u, _, _ in store.unsettled_units(batch.id)] == [running.id]
    assert store.end_unit(running.id, ItemState.NOT_RUN, "the batch stopped") == 1
    batch = store.get(batch.id)
    assert (batch.failed, batch.not_run, batch.left) == (3, 17, 0) and store.unsettled_units(batch.id) == []
    assert store.finish(batch.id, BatchState.STOPPED) and not store.finish(batch.id, BatchState.STOPPED)


def test_items_page_by_keyset_and_by_state(jobs):
    store, batch, _ = made(jobs, 25, 3)
    store.end_items(batch.id, [ItemEnd(n, ItemState.FAILED, f"bad {n}") for n in range(0, 25, 5)])
    seen, after = [], -1
    while page := store.items(batch.id, after=after, limit=7):
        seen += [item.seq for item in page]
        after = page[-1].seq
    assert seen == list(range(25))
    failed = store.items(batch.id, ItemState.FAILED, after=5, limit=2)
    assert [(i.seq, i.reason) for i in failed] == [(10, "bad 10"), (15, "bad 15")]
    assert [item.seq for item in store.every_item(batch.id)] == list(range(25))
    assert jobs.list() == [] and len(jobs.list(batch_id=batch.id)) == 3  # units apart from jobs made on their own


def test_a_job_store_made_before_batches_gets_their_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    JobStore(url).close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # as a version before batches left it
        db.execute("DROP INDEX ix_jobs_batch_id")
        db.execute("ALTER TABLE jobs DROP COLUMN batch_id")
        db.execute("DROP TABLE batch_items")
        db.execute("DROP TABLE batches")
        db.execute(
            "INSERT INTO jobs (id, owner, state, input_key, params, attempts, max_attempts, lease_until, "
            "cancel_requested, created_at, updated_at, frames_done, frames_total, chunks_done, chunks_total, "
            "chunks_scored, figures) VALUES ('old1', 'alice', 'succeeded', 'inbox/a.mp4', '{}', 1, 3, 0, 0, 1, 1, "
            "0, 0, 0, 0, 0, '{}')"
        )
    jobs = JobStore(url)
    assert jobs.get("old1").batch_id is None and [job.id for job in jobs.list()] == ["old1"]
    store, batch, _ = made(jobs, 2, 1)
    with jobs.engine.connect() as connection:
        assert connection.execute(select(JobRow.batch_id).where(JobRow.batch_id == batch.id)).all()
    JobStore(url).close()  # and again: nothing left to add
