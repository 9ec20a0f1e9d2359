"""The job store: jobs and workers in SQL (SQLite in WAL mode by default, PostgreSQL at scale).

A job's life is in :mod:`restyle.stores.states`; the tables in :mod:`restyle.stores.tables`. A job
whose worker stops heartbeating is taken again when its lease runs out. The same object (key +
etag) never makes two jobs: a unique constraint says so, not a lookup.

Long because it is one state machine: every transition (submit, claim, heartbeat, chunk done, succeed,
fail, cancel, requeue) is a compare-and-set on the same row and belongs beside the others; the tables
and the states already live apart.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, create_engine, delete, event, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from restyle.errors import JobStoreError
from restyle.stores import counters as totals
from restyle.stores import fairness
from restyle.stores.params import JobParams
from restyle.stores.states import ACTIVE, FINAL, JobState, Lease
from restyle.stores.tables import ChunkRow, JobRow, WorkerRow, create_all

__all__ = ["ACTIVE", "FINAL", "Job", "JobParams", "JobState", "JobStore", "JobStoreError", "Lease", "Worker"]


def gave_up(attempts: int, reason: str) -> str:
    """A dead job's reason: how many attempts it had, and what ended the last."""
    return f"gave up after {attempts} attempt{'' if attempts == 1 else 's'}: {reason}"


@dataclass
class Job:
    """A job as the API and workers see it."""

    id: str
    owner: str
    state: JobState
    input_key: str
    input_etag: str | None
    params: JobParams | None  # None: the stored params cannot be read (see params_problem)
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    finished_at: float | None
    reason: str | None
    output_key: str | None
    frames_done: int
    frames_total: int
    chunks_done: int
    chunks_total: int
    chunks_scored: int
    lease_owner: str | None
    cancel_requested: bool
    figures: dict[str, Any] = field(default_factory=dict)
    params_problem: str | None = None  # why params is None
    batch_id: str | None = None  # a unit of this batch: its items are the batch's (restyle.stores.batches)
    started_at: float | None = None  # when a worker first took it; None while it has not started

    @classmethod
    def of(cls, row: JobRow) -> Job:
        params, problem = JobParams.load(row.params)
        return cls(
            id=row.id,
            owner=row.owner,
            state=JobState(row.state),
            input_key=row.input_key,
            input_etag=row.input_etag,
            params=params,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            reason=row.reason,
            output_key=row.output_key,
            frames_done=row.frames_done,
            frames_total=row.frames_total,
            chunks_done=row.chunks_done,
            chunks_total=row.chunks_total,
            chunks_scored=row.chunks_scored,
            lease_owner=row.lease_owner,
            cancel_requested=row.cancel_requested,
            figures=row.figures or {},
            params_problem=problem,
            batch_id=row.batch_id,
            started_at=row.started_at,
        )

    @property
    def chunks_redone(self) -> int:
        """Chunks scored more than once: finished work that was lost (the target is 0)."""
        return max(0, self.chunks_scored - self.chunks_total) if self.state == JobState.SUCCEEDED else 0


@dataclass
class Worker:
    id: str
    host: str
    started_at: float
    heartbeat_at: float
    job_id: str | None
    frames_scored: int
    chunks_scored: int


class JobStore:
    """Jobs and workers in the database at ``url`` (``sqlite:///path.db`` or ``postgresql+psycopg://...``)."""

    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # noqa: BLE001 - a bad URL or a missing driver
            raise JobStoreError(f"cannot use job store {url}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            _private_file(self.engine.url.database)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        try:
            create_all(self.engine)  # every table of the job store, the catalogue's and the counters' too
            with self._session.begin() as session:
                totals.start(session, ChunkRow)
        except OperationalError as exc:
            raise JobStoreError(f"cannot reach job store {url}: {exc.orig}") from None

    # -- creating ------------------------------------------------------------

    def create(
        self,
        owner: str,
        input_key: str,
        input_etag: str | None,
        params: JobParams | dict,
        *,
        max_attempts: int = 3,
        state: JobState = JobState.QUEUED,
    ) -> tuple[Job, bool]:
        """(job, created): the job for this object version; an existing one if it was made before.
        ``params`` as a dict is stored as it is (rows of older versions, tests of unreadable rows)."""
        now = time.time()
        stored = params.stored() if isinstance(params, JobParams) else params
        row = JobRow(
            id=uuid.uuid4().hex[:12],
            owner=owner,
            state=JobState(state),
            input_key=input_key,
            input_etag=input_etag,
            params=stored,
            max_attempts=max_attempts,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._session.begin() as session:
                session.add(row)
            return Job.of(row), True
        except IntegrityError:
            existing = self.find(input_key, input_etag)
            if existing is None:
                raise
            return existing, False

    def find(self, input_key: str, input_etag: str | None) -> Job | None:
        with self._session() as session:
            query = select(JobRow).where(JobRow.input_key == input_key)
            query = query.where(JobRow.input_etag.is_(None) if input_etag is None else JobRow.input_etag == input_etag)
            row = session.scalars(query.order_by(JobRow.created_at.desc())).first()
            return Job.of(row) if row else None

    def landed(self, input_key: str, input_etag: str) -> Job | None:
        """An awaited upload has landed: its job gets the etag and joins the queue."""
        with self._session.begin() as session:
            row = session.scalars(
                select(JobRow)
                .where(JobRow.input_key == input_key, JobRow.state == JobState.UPLOADING)
                .with_for_update()
            ).first()
            if row is None:
                return None
            row.input_etag, row.state, row.updated_at = input_etag, JobState.QUEUED, time.time()
            row.lease_owner, row.lease_until = None, 0.0  # let go of the upload's claim (claim_upload)
            return Job.of(row)

    def claim_upload(self, input_key: str, holder: str, until: float) -> Job | None:
        """Take the single-use upload of ``input_key`` for one request; None if it is taken, used or cancelled.

        Compare-and-set on the row: of two requests racing with the same link, exactly one
        gets it, before either body is read. A holder that dies lets go when ``until`` passes."""
        now = time.time()
        with self._session.begin() as session:
            taken = session.execute(
                update(JobRow)
                .where(JobRow.input_key == input_key, JobRow.state == JobState.UPLOADING)
                .where(JobRow.lease_owner.is_(None) | (JobRow.lease_until < now))
                .values(lease_owner=holder, lease_until=until, updated_at=now)
            ).rowcount
        if taken != 1:
            return None
        return self.find(input_key, None)

    def release_upload(self, input_key: str, holder: str) -> None:
        """An upload that did not land lets go of its link, so that it can be tried again."""
        with self._session.begin() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.input_key == input_key, JobRow.state == JobState.UPLOADING, JobRow.lease_owner == holder)
                .values(lease_owner=None, lease_until=0.0, updated_at=time.time())
            )

    def expire_uploads(self, made_before: float) -> int:
        """Jobs whose upload link was made before ``made_before`` and never used end (failed, with a reason)."""
        now = time.time()
        with self._session.begin() as session:
            return session.execute(
                update(JobRow)
                .where(JobRow.state == JobState.UPLOADING, JobRow.created_at < made_before)
                .where(JobRow.lease_owner.is_(None) | (JobRow.lease_until < now))
                .values(
                    state=JobState.FAILED,
                    reason="no video arrived before the upload link expired; ask for a new link",
                    finished_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_until=0.0,
                )
            ).rowcount

    def made_by_token(self, input_key: str) -> bool:
        """Whether a token's upload made a job for ``input_key``: then no later version of it makes another."""
        with self._session() as session:
            owners = session.scalars(select(JobRow.owner).where(JobRow.input_key == input_key)).all()
        return any(not owner.startswith("@") for owner in owners)

    # -- reading -------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._session() as session:
            row = session.get(JobRow, job_id)
            return Job.of(row) if row else None

    def list(
        self,
        owner: str | None = None,
        limit: int = 100,
        states: tuple[JobState, ...] | None = None,
        batch_id: str | None = None,
    ) -> list[Job]:
        """Jobs newest first: those made on their own, or with ``batch_id`` the units of that batch
        (a batch of 100,000 images is a few thousand units; they do not crowd the list of jobs)."""
        with self._session() as session:
            query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
            query = query.where(JobRow.batch_id.is_(None) if batch_id is None else JobRow.batch_id == batch_id)
            if owner is not None:
                query = query.where(JobRow.owner == owner)
            if states:
                query = query.where(JobRow.state.in_(states))
            return [Job.of(row) for row in session.scalars(query)]

    def ended_since(self, since: float, until: float, limit: int = 200) -> list[Job]:
        """Jobs that ended at ``since`` or later and before ``until``, the earliest end first (the notifier's feed)."""
        with self._session() as session:
            query = (
                select(JobRow)
                .where(JobRow.state.in_(FINAL), JobRow.finished_at >= since, JobRow.finished_at < until)
                .order_by(JobRow.finished_at)
                .limit(limit)
            )
            return [Job.of(row) for row in session.scalars(query)]

    def counts(self) -> dict[str, int]:
        with self._session() as session:
            rows = session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
            return {state: count for state, count in rows}

    def depth(self) -> int:
        """Jobs waiting for a worker or being worked on: what an autoscaler sizes the cluster by."""
        with self._session() as session:
            query = (
                select(func.count()).select_from(JobRow).where(JobRow.state.in_((JobState.QUEUED, JobState.RUNNING)))
            )
            return int(session.scalar(query) or 0)

    def active(self, owner: str) -> int:
        """How many of ``owner``'s jobs are uploading, queued or running (what its quota counts)."""
        with self._session() as session:
            query = select(func.count()).select_from(JobRow).where(JobRow.owner == owner, JobRow.state.in_(ACTIVE))
            return int(session.scalar(query) or 0)

    def active_use(self, owner: str, key: str) -> bool:
        """Whether one of ``owner``'s jobs that has not ended names the stored file ``key`` (a style picture)."""
        with self._session() as session:
            named = cast(JobRow.params, Text).contains(key)
            mine = (JobRow.owner == owner, JobRow.state.in_(ACTIVE), named)
            query = select(func.count()).select_from(JobRow).where(*mine)
            return bool(session.scalar(query))

    def ahead(self, job_id: str, priorities: Mapping[str, int] | None = None) -> int | None:
        """About how many jobs a worker takes before queued ``job_id``, in the fair claim's order as it stands
        now; None when the job is not queued."""
        with self._session() as session:
            return fairness.ahead(session, job_id, time.time(), priorities)

    # -- working -------------------------------------------------------------

    def claim(self, worker_id: str, lease_s: float, priorities: Mapping[str, int] | None = None) -> Job | None:
        """Take a queued job, or a running one whose lease ran out, in the fair order of
        :mod:`restyle.stores.fairness` (``priorities``: owner -> priority); None when there is none."""
        now = time.time()
        with self._session() as session:
            candidates = session.execute(fairness.candidates(now, priorities)).all()
        for job_id, owner in candidates:
            with self._session.begin() as session:
                # Compare-and-set: of two workers racing for a job, exactly one updates the row.
                taken = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id)
                    .where(fairness.claimable(now))
                    .values(
                        state=JobState.RUNNING,
                        lease_owner=worker_id,
                        lease_until=now + lease_s,
                        attempts=JobRow.attempts + 1,
                        updated_at=now,
                        started_at=func.coalesce(JobRow.started_at, now),
                    )
                ).rowcount
                if taken:
                    fairness.took(session, owner, now)
            if not taken:
                continue
            job = self.get(job_id)
            if job and job.attempts > job.max_attempts:
                self._end(  # this claim was no attempt: the count stays at the most allowed
                    job_id,
                    worker_id,
                    JobState.DEAD,
                    gave_up(job.max_attempts, job.reason or "its workers were lost"),
                    attempts=job.max_attempts,
                )
                continue
            return job
        return None

    def heartbeat(self, job_id: str, worker_id: str, lease_s: float, **progress: int) -> Lease:
        """Extend the lease and record progress; what the worker is to do next (see :class:`Lease`)."""
        now = time.time()
        with self._session.begin() as session:
            held = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id, JobRow.state == JobState.RUNNING)
                .values(lease_until=now + lease_s, updated_at=now, **progress)
            ).rowcount
            cancel = session.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))
        if not held:
            return Lease.LOST
        return Lease.CANCEL if cancel else Lease.HELD

    def chunk_done(self, job_id: str, worker_id: str, chunk: int, frames: int, seconds: float) -> None:
        with self._session.begin() as session:
            session.add(
                ChunkRow(
                    job_id=job_id, chunk=chunk, worker_id=worker_id, frames=frames, seconds=seconds, at=time.time()
                )
            )
            totals.add_chunk(session, frames, seconds)
            session.execute(update(JobRow).where(JobRow.id == job_id).values(chunks_scored=JobRow.chunks_scored + 1))
            session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == worker_id)
                .values(frames_scored=WorkerRow.frames_scored + frames, chunks_scored=WorkerRow.chunks_scored + 1)
            )

    def succeed(self, job_id: str, worker_id: str, output_key: str, figures: dict, **progress: int) -> bool:
        """Record success; False if this worker no longer holds the job (its lease ran out)."""
        return self._end(
            job_id, worker_id, JobState.SUCCEEDED, None, output_key=output_key, figures=figures, **progress
        )

    def fail(self, job_id: str, worker_id: str, reason: str, *, retry: bool) -> JobState | None:
        """Record a failure; a retryable one goes back to the queue until attempts run out.
        Returns the job's new state, or None when there is no such job."""
        job = self.get(job_id)
        if job is None:
            return None
        if retry and job.attempts < job.max_attempts:
            state = JobState.QUEUED
        elif retry:
            state, reason = JobState.DEAD, gave_up(job.attempts, reason)
        else:
            state = JobState.FAILED
        if state == JobState.QUEUED:
            with self._session.begin() as session:
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.lease_owner == worker_id)
                    .values(state=state, lease_owner=None, lease_until=0.0, reason=reason, updated_at=time.time())
                )
        else:
            self._end(job_id, worker_id, state, reason)
        return state

    def cancel(self, job_id: str) -> Job | None:
        """Cancel: at once if it has not started, at the next chunk boundary if it has."""
        with self._session.begin() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                return None
            if row.state in (JobState.UPLOADING, JobState.QUEUED):
                row.state, row.reason, row.finished_at = JobState.CANCELLED, "cancelled before it started", time.time()
            elif row.state == JobState.RUNNING:
                row.cancel_requested = True
            row.updated_at = time.time()
            return Job.of(row)

    def cancelled(self, job_id: str, worker_id: str, chunks_kept: int = 0) -> bool:
        kept = f"; its {chunks_kept} finished chunks are kept: a retry resumes from them" if chunks_kept else ""
        reason = f"cancelled while running{kept}"
        return self._end(job_id, worker_id, JobState.CANCELLED, reason, chunks_done=chunks_kept)

    def requeue(self, job_id: str, ends: tuple[JobState, ...]) -> Job | None:
        """An ended job (in one of ``ends``) back to the queue with its attempts afresh; None if it is not in one of
        them (compare-and-set: of two retries, one queues it). Its work area is its own: stored chunks are reused."""
        now = time.time()
        with self._session.begin() as session:
            queued = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state.in_(ends))
                .values(
                    state=JobState.QUEUED,
                    attempts=0,
                    reason=None,
                    started_at=None,  # a retry starts afresh: its Started and Duration are the new run's
                    finished_at=None,
                    output_key=None,
                    cancel_requested=False,
                    lease_owner=None,
                    lease_until=0.0,
                    swept=None,
                    updated_at=now,
                )
            ).rowcount
        return self.get(job_id) if queued else None

    def delete(self, job_id: str, ends: tuple[JobState, ...] = FINAL) -> bool:
        """Delete an ended job's row and its chunk records; False if it is not ended (or not there)."""
        with self._session.begin() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None or row.state not in ends:
                return False
            session.execute(delete(ChunkRow).where(ChunkRow.job_id == job_id))
            session.delete(row)
            return True

    def _end(self, job_id: str, worker_id: str, state: JobState, reason: str | None, **values: Any) -> bool:
        now = time.time()
        with self._session.begin() as session:
            return bool(
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.lease_owner == worker_id)
                    .values(
                        state=state,
                        reason=reason,
                        finished_at=now,
                        updated_at=now,
                        lease_owner=None,
                        lease_until=0.0,
                        **values,
                    )
                ).rowcount
            )

    # -- workers -------------------------------------------------------------

    def worker_alive(self, worker_id: str, job_id: str | None) -> None:
        now = time.time()
        with self._session.begin() as session:
            row = session.get(WorkerRow, worker_id)
            if row is None:
                session.add(
                    WorkerRow(id=worker_id, host=socket.gethostname(), started_at=now, heartbeat_at=now, job_id=job_id)
                )
            else:
                row.heartbeat_at, row.job_id = now, job_id

    def workers(self) -> list[Worker]:
        with self._session() as session:
            rows = session.scalars(select(WorkerRow).order_by(WorkerRow.heartbeat_at.desc()))
            return [
                Worker(r.id, r.host, r.started_at, r.heartbeat_at, r.job_id, r.frames_scored, r.chunks_scored)
                for r in rows
            ]

    def frames_scored(self) -> int:
        return int(self.counters().get("frames_scored", 0))

    def counters(self) -> dict[str, float]:
        with self._session() as session:
            return totals.read(session)

    def chunk_latencies(self) -> totals.ChunkLatencies:
        """The chunk latency histogram from the running counters: a dozen rows, whatever the history."""
        return totals.latencies(self.counters())

    def close(self) -> None:
        self.engine.dispose()


def _private_file(database: str | None) -> None:
    """The SQLite file holds every tenant's jobs: made 0600 before SQLite makes it (its -wal and -shm copy the mode).

    Only a missing file is opened here: closing a descriptor of a file drops every POSIX lock this process holds on
    it, SQLite's too. A second job store in a process that has one open (``restyle serve`` makes one, its app
    another) would leave the first one's connections unlocked, and another process closing its last connection
    would then take the database for its own and delete the -wal and -shm under them ("disk I/O error")."""
    if not database or database == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(path, 0o600)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA busy_timeout=10000")  # several worker processes share one file
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
