"""The job store on SQLite and on a real PostgreSQL server: idempotency, leases, attempts, cancel."""

import threading
import time

PARAMS = {"model": {"kind": "styles", "style": "7"}}


def test_the_same_object_version_never_makes_two_jobs(jobs):
    first, created = jobs.create("alice", "inbox/a.mp4", "etag1", PARAMS)
    again, created_again = jobs.create("inbox", "inbox/a.mp4", "etag1", PARAMS)
    newer, created_newer = jobs.create("inbox", "inbox/a.mp4", "etag2", PARAMS)
    assert created and not created_again and created_newer
    assert again.id == first.id and newer.id != first.id
    assert len(jobs.list()) == 2


def test_racing_creators_make_one_job(jobs):
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(jobs.create("x", "inbox/r.mp4", "e", PARAMS))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1


def test_one_job_is_claimed_by_one_worker(jobs):
    job, _ = jobs.create("alice", "inbox/c.mp4", "e", PARAMS)
    winners = []
    threads = [threading.Thread(target=lambda n=n: winners.append(jobs.claim(f"w{n}", 30))) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [w for w in winners if w is not None]
    assert len(taken) == 1 and taken[0].id == job.id and taken[0].state == "running" and taken[0].attempts == 1


def test_a_silent_worker_loses_its_job_after_the_lease(jobs):
    job, _ = jobs.create("alice", "inbox/l.mp4", "e", PARAMS)
    assert jobs.claim("w1", lease_s=0.5).id == job.id
    assert jobs.claim("w2", lease_s=30) is None  # the lease still holds
    time.sleep(0.7)
    again = jobs.claim("w2", lease_s=30)
    assert again.id == job.id and again.attempts == 2 and again.lease_owner == "w2"
    assert jobs.heartbeat(job.id, "w1", 30) == "lost"  # the old worker learns it lost the job
    assert not jobs.succeed(job.id, "w1", "outbox/x.mp4", {})  # and cannot end it
    assert jobs.heartbeat(job.id, "w2", 30, frames_done=10, frames_total=20) == "held"
    assert jobs.get(job.id).frames_done == 10


def test_a_job_whose_workers_are_lost_once_too_often_goes_dead_at_its_last_attempt(jobs):
    job, _ = jobs.create("alice", "inbox/k.mp4", "e", PARAMS, max_attempts=1)
    assert jobs.claim("w1", lease_s=0.3).id == job.id
    time.sleep(0.5)  # w1 is gone (killed): its lease runs out
    assert jobs.claim("w2", lease_s=30) is None  # not run again: its one attempt is spent
    dead = jobs.get(job.id)
    assert (dead.state, dead.attempts, dead.reason) == ("dead", 1, "gave up after 1 attempt: its workers were lost")


def test_retryable_failures_go_dead_after_max_attempts(jobs):
    job, _ = jobs.create("alice", "inbox/d.mp4", "e", PARAMS, max_attempts=2)
    jobs.claim("w", 30)
    assert jobs.fail(job.id, "w", "store went away", retry=True) == "queued"
    jobs.claim("w", 30)
    assert jobs.fail(job.id, "w", "store went away", retry=True) == "dead"
    dead = jobs.get(job.id)
    assert dead.state == "dead" and "gave up after 2 attempts: store went away" in dead.reason
    assert jobs.claim("w", 30) is None  # a dead letter never loops


def test_bad_input_fails_at_once_with_its_reason(jobs):
    job, _ = jobs.create("alice", "inbox/f.mp4", "e", PARAMS)
    jobs.claim("w", 30)
    assert jobs.fail(job.id, "w", "input is empty (0 bytes)", retry=False) == "failed"
    assert jobs.get(job.id).reason == "input is empty (0 bytes)"


def test_cancel_before_and_while_running(jobs):
    waiting, _ = jobs.create("alice", "inbox/w.mp4", "e", PARAMS)
    assert jobs.cancel(waiting.id).state == "cancelled"
    running, _ = jobs.create("alice", "inbox/r.mp4", "e", PARAMS)
    jobs.claim("w", 30)
    assert jobs.cancel(running.id).state == "running"
    assert jobs.heartbeat(running.id, "w", 30) == "cancel"  # the worker hears of it at its next beat
    assert jobs.cancelled(running.id, "w") and jobs.get(running.id).state == "cancelled"


def test_an_awaited_upload_lands_once(jobs):
    job, _ = jobs.create("alice", "inbox/u.mp4", None, PARAMS, state="uploading")
    assert jobs.claim("w", 30) is None  # not runnable before its object is there
    assert jobs.landed("inbox/u.mp4", "etag").id == job.id
    assert jobs.landed("inbox/u.mp4", "etag") is None
    assert jobs.get(job.id).state == "queued" and jobs.get(job.id).input_etag == "etag"


def test_workers_and_chunks_are_recorded(jobs):
    job, _ = jobs.create("alice", "inbox/m.mp4", "e", PARAMS)
    jobs.worker_alive("w", job.id)
    jobs.chunk_done(job.id, "w", 0, 100, 2.5)
    latencies = jobs.chunk_latencies()
    assert jobs.frames_scored() == 100 and (latencies.count, latencies.total_s) == (1, 2.5)
    assert jobs.workers()[0].chunks_scored == 1 and jobs.get(job.id).chunks_scored == 1
    assert jobs.counts() == {"queued": 1}


def test_a_second_sqlite_store_in_a_process_keeps_the_first_ones_locks(tmp_path):
    """`restyle serve` opens the job store twice (serve, then its app). Opening the second once closed a descriptor
    of the file, which dropped this process's SQLite locks: a worker closing its last connection then deleted the
    -wal and -shm under the service's connections ("disk I/O error" on every page)."""
    import subprocess
    import sys

    from restyle.stores.jobs import JobStore

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = JobStore(url)
    first.create("alice", "inbox/a.mp4", "e1", PARAMS)
    second = JobStore(url)
    assert len(second.list()) == 1
    other = f"from restyle.stores.jobs import JobStore; s = JobStore({url!r}); s.list(); s.close()"
    subprocess.run([sys.executable, "-c", other], check=True, timeout=60)  # a worker that ends cleanly
    assert (tmp_path / "jobs.db-wal").exists() and (tmp_path / "jobs.db-shm").exists()
    first.create("alice", "inbox/b.mp4", "e2", PARAMS)
    assert len(second.list()) == 2
