"""The fair claim, on SQLite and on a real PostgreSQL server: an owner's queue never holds up another owner's jobs.

Issue 26, finding 5: the claim took the oldest job of any owner, so after 8 of alice's, bob's waited for all 8
(the first test failed on 4b5e38b: bob's job started ninth)."""

import time
import uuid

PARAMS = {"model": {"kind": "styles", "style": "7"}}


def queue(jobs, owner: str, count: int) -> list[str]:
    made = []
    for _ in range(count):
        job, _ = jobs.create(owner, f"inbox/{owner}/{uuid.uuid4().hex[:8]}.mp4", "e", PARAMS)
        made.append(job.id)
        time.sleep(0.002)  # distinct created_at: the oldest-first order is the test's to see
    return made


def run_all(jobs, worker: str = "w", priorities=None) -> list[str]:
    """Claim and finish jobs one at a time (one worker) until none is left; the owners in the order they started."""
    started = []
    while (job := jobs.claim(worker, 30, **({"priorities": priorities} if priorities else {}))) is not None:
        started.append(job.owner)
        assert jobs.succeed(job.id, worker, f"outbox/{job.id}/out.mp4", {})
    return started


def test_a_second_tenant_starts_before_the_first_tenants_queue_drains(jobs):
    queue(jobs, "alice", 8)
    queue(jobs, "bob", 1)  # queued after all of alice's
    started = run_all(jobs)
    assert len(started) == 9 and started.index("bob") == 1, started  # right after alice's first, not ninth


def test_turns_alternate_between_tenants_with_queues(jobs):
    queue(jobs, "alice", 3)
    queue(jobs, "bob", 3)
    assert run_all(jobs) == ["alice", "bob"] * 3


def test_the_tenant_with_fewer_running_jobs_goes_first(jobs):
    queue(jobs, "alice", 3)
    queue(jobs, "bob", 1)
    first = jobs.claim("w1", 30)
    second = jobs.claim("w2", 30)
    assert (first.owner, second.owner) == ("alice", "bob")
    jobs.succeed(second.id, "w2", "outbox/b.mp4", {})  # bob is done; alice still runs one
    queue(jobs, "bob", 1)
    assert jobs.claim("w2", 30).owner == "bob"  # bob runs none, alice runs one: bob's newer job goes first


def test_priority_orders_tenants_that_run_as_much(jobs):
    queue(jobs, "alice", 2)
    queue(jobs, "bob", 2)
    assert run_all(jobs, priorities={"bob": 5}) == ["bob", "bob", "alice", "alice"]  # before turns
    queue(jobs, "carol", 1)
    queue(jobs, "dave", 1)
    assert run_all(jobs, priorities={"dave": 1, "carol": -1}) == ["dave", "carol"]


def test_a_lapsed_lease_is_still_taken_again(jobs):
    (job_id,) = queue(jobs, "alice", 1)
    assert jobs.claim("w1", 2.0).id == job_id
    queue(jobs, "bob", 1)
    assert jobs.claim("w2", 30).owner == "bob"  # alice runs one (its lease holds)
    time.sleep(2.2)
    again = jobs.claim("w3", 30)
    assert again.id == job_id and again.attempts == 2  # its lease lapsed: it counts as running no more
