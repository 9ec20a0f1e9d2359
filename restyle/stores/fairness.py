"""The fair claim's order: which queued job a free worker takes next.

An owner's queue never holds up another owner's jobs. Among the jobs a worker may take (queued, or
running with a lapsed lease), it takes first the job whose owner has

1. the fewest jobs running now (with a live lease),
2. then the highest priority (``tenant_priorities``: owner -> a number, 0 for an owner not named),
3. then the longest wait since one of its jobs was last taken (an owner never served goes first),
4. then the oldest.

Rule 3 is a turn: with one worker, alice's eight queued jobs and bob's one take turns, so bob's
starts second, not ninth. When a job is taken its owner's turn is recorded (:func:`took`) in the same
transaction as the claim.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import ColumnElement, Select, case, func, literal, select
from sqlalchemy.orm import Session

from restyle.stores.states import JobState
from restyle.stores.tables import JobRow, TurnRow


def claimable(now: float) -> ColumnElement[bool]:
    """A job a worker may take: queued, or running under a lease that lapsed."""
    return (JobRow.state == JobState.QUEUED) | ((JobRow.state == JobState.RUNNING) & (JobRow.lease_until < now))


def candidates(now: float, priorities: Mapping[str, int] | None, limit: int | None = 20) -> Select:
    """(id, owner) of the next jobs to try to take, in the fair order."""
    running = (
        select(JobRow.owner.label("owner"), func.count().label("running"))
        .where(JobRow.state == JobState.RUNNING, JobRow.lease_until >= now)
        .group_by(JobRow.owner)
        .subquery()
    )
    rank = case(dict(priorities), value=JobRow.owner, else_=0) if priorities else literal(0)
    return (
        select(JobRow.id, JobRow.owner)
        .outerjoin(running, running.c.owner == JobRow.owner)
        .outerjoin(TurnRow, TurnRow.owner == JobRow.owner)
        .where(claimable(now))
        .order_by(
            func.coalesce(running.c.running, 0),
            rank.desc(),
            func.coalesce(TurnRow.last_claim, 0.0),
            JobRow.created_at,
        )
        .limit(limit)
    )


def ahead(session: Session, job_id: str, now: float, priorities: Mapping[str, int] | None) -> int | None:
    """How many claimable jobs come before queued ``job_id`` in the fair order at ``now`` (None if it is not
    queued). About: the order moves as owners take turns and new jobs arrive."""
    order = session.execute(candidates(now, priorities, limit=None)).all()
    for place, (candidate, _owner) in enumerate(order):
        if candidate == job_id:
            return place
    return None


def took(session: Session, owner: str, now: float) -> None:
    """Record that one of ``owner``'s jobs was taken at ``now``, in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    upsert = insert(TurnRow).values(owner=owner, last_claim=now)
    session.execute(upsert.on_conflict_do_update(index_elements=[TurnRow.owner], set_={"last_claim": now}))
