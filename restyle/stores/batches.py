"""Batches and their items in the job store: each item's state, reason and figures, and the batch's counts.

A batch's work units are ordinary jobs (``jobs.batch_id``), so leases, retries and kill -9
recovery are the job store's; this store keeps what a job does not: the items (one row each,
paged by ``(batch_id, seq)``), and counts that move in the same transaction as the item that
ended, by compare-and-set on the item's state, so an item is counted once however many workers
report it. When the failures pass the batch's allowance (``max_failures``), the same
transaction stops it: its queued units are cancelled (their items ``not_run``) and its running
ones asked to cancel.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import Engine, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from restyle.jobspec import Allowance
from restyle.stores.items import Batch, Item, ItemEnd
from restyle.stores.params import JobParams
from restyle.stores.states import ACTIVE, FINAL, ITEM_OPEN, BatchState, ItemState, JobState
from restyle.stores.tables import BatchItemRow, BatchRow, JobRow

__all__ = ["Batch", "BatchStore", "Item", "ItemEnd"]

CHUNK_ROWS = 1000  # rows per bulk insert, and per page read while a manifest is written
COUNTED = {  # the batch's column that counts items in each end state
    ItemState.SUCCEEDED: "succeeded",
    ItemState.FAILED: "failed",
    ItemState.REUSED: "reused",
    ItemState.NOT_RUN: "not_run",
}
STOP_STOPPED, STOP_CANCELLED = "stopped", "cancelled"


class BatchStore:
    """Batches and their items, on the job store's database (whose tables the job store made)."""

    def __init__(self, engine: Engine):
        self._session = sessionmaker(engine, expire_on_commit=False)

    # -- making --------------------------------------------------------------

    def create(
        self,
        owner: str,
        source: str,
        output: str,
        params: JobParams,
        fingerprint: str,
        max_failures: str | None = None,
        webhook: str | None = None,
    ) -> Batch:
        now, counts = time.time(), dict.fromkeys(("total", *COUNTED.values(), "frames"), 0)
        row = BatchRow(
            **dict(id=uuid.uuid4().hex[:12], owner=owner, state=BatchState.LISTING, source=source, output=output),
            **dict(params=params.stored(), fingerprint=fingerprint, max_failures=max_failures, webhook=webhook),
            **dict(created_at=now, updated_at=now, **counts),
        )
        with self._session.begin() as session:
            session.add(row)
        return Batch.of(row)

    def add_items(self, batch_id: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert listed items (BatchItemRow's columns; ``state`` and ``seq`` given) in one transaction, and
        count them: those already ended (reused, refused at intake) into their states' counts."""
        if not rows:
            return
        counts = {column: sum(1 for r in rows if r["state"] == state) for state, column in COUNTED.items()}
        with self._session.begin() as session:
            blank = {"batch_id": batch_id} | _ITEM_BLANK  # one shape for every row: one executemany
            session.execute(insert(BatchItemRow.__table__), [blank | row for row in rows])
            session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id)
                .values(
                    total=BatchRow.total + len(rows),
                    frames=BatchRow.frames + sum(r.get("frames", 0) for r in rows),
                    updated_at=time.time(),
                    **{column: getattr(BatchRow, column) + n for column, n in counts.items() if n},
                )
            )

    def add_units(self, batch: Batch, units: Sequence[tuple[str, str, str]], max_attempts: int) -> None:
        """Queue the batch's units: (job id, input key shown for it, its unique marker), as ordinary jobs."""
        now = time.time()
        for start in range(0, len(units), CHUNK_ROWS):
            rows = [
                {
                    "id": job_id,
                    "owner": batch.owner,
                    "state": JobState.QUEUED,
                    "input_key": key,
                    "input_etag": marker,  # unique per unit: an object in two batches makes two jobs
                    "params": batch.params.stored() if batch.params else {},
                    "max_attempts": max_attempts,
                    "created_at": now,
                    "updated_at": now,
                    "batch_id": batch.id,
                }
                for job_id, key, marker in units[start : start + CHUNK_ROWS]
            ]
            with self._session.begin() as session:
                session.execute(insert(JobRow.__table__), rows)

    def open(self, batch_id: str) -> Batch | None:
        """Listing done: the batch runs (its allowance is looked at now that its total is known)."""
        with self._session.begin() as session:
            session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.state == BatchState.LISTING)
                .values(state=BatchState.RUNNING, updated_at=time.time())
            )
            self._allowance(session, batch_id)
            row = session.get(BatchRow, batch_id)
            return Batch.of(row) if row else None

    def drop(self, batch_id: str) -> None:
        """A listing that was refused (empty, too many items): the batch and its items go."""
        with self._session.begin() as session:
            session.execute(delete(BatchItemRow).where(BatchItemRow.batch_id == batch_id))
            session.execute(delete(JobRow).where(JobRow.batch_id == batch_id))
            session.execute(delete(BatchRow).where(BatchRow.id == batch_id))

    # -- reading -------------------------------------------------------------

    def get(self, batch_id: str) -> Batch | None:
        with self._session() as session:
            row = session.get(BatchRow, batch_id)
            return Batch.of(row) if row else None

    def list(self, owner: str | None = None, limit: int = 50, before: str | None = None) -> list[Batch]:
        """Batches newest first; ``before`` (a batch id) pages on from that batch."""
        with self._session() as session:
            query = select(BatchRow).order_by(BatchRow.created_at.desc(), BatchRow.id.desc()).limit(limit)
            if owner is not None:
                query = query.where(BatchRow.owner == owner)
            if before is not None:
                mark = session.get(BatchRow, before)
                if mark is not None:
                    query = query.where(
                        (BatchRow.created_at < mark.created_at)
                        | ((BatchRow.created_at == mark.created_at) & (BatchRow.id < mark.id))
                    )
            return [Batch.of(row) for row in session.scalars(query)]

    def active(self, listing_before: float = 0.0) -> list[Batch]:
        """Running batches, and those still listing whose listing last moved before ``listing_before``."""
        stale = (BatchRow.state == BatchState.LISTING) & (BatchRow.updated_at < listing_before)
        with self._session() as session:
            query = select(BatchRow).where((BatchRow.state == BatchState.RUNNING) | stale)
            return [Batch.of(r) for r in session.scalars(query)]

    def abandon(self, batch_id: str, reason: str) -> None:
        """A listing cut off (its process died): the batch fails, its items not run (it has no units yet)."""
        with self._session.begin() as session:
            self._end_open(session, batch_id, BatchItemRow.seq >= 0, ItemState.NOT_RUN, reason)
            done = {"state": BatchState.FAILED, "reason": reason, "finished_at": time.time(), "updated_at": time.time()}
            session.execute(update(BatchRow).where(BatchRow.id == batch_id).values(**done))

    def running_over(self, output: str) -> Batch | None:
        """A batch still listing or running that writes under ``output``."""
        with self._session() as session:
            row = session.scalars(
                select(BatchRow).where(
                    BatchRow.output == output, BatchRow.state.in_((BatchState.LISTING, BatchState.RUNNING))
                )
            ).first()
            return Batch.of(row) if row else None

    def items(self, batch_id: str, state: ItemState | None = None, after: int = -1, limit: int = 100) -> list[Item]:
        """A page of items in listing order: those after ``after`` (a seq), of ``state`` if given."""
        with self._session() as session:
            query = select(*Item.columns()).where(BatchItemRow.batch_id == batch_id, BatchItemRow.seq > after)
            if state is not None:
                query = query.where(BatchItemRow.state == state)
            return [Item.of(row) for row in session.execute(query.order_by(BatchItemRow.seq).limit(limit))]

    def every_item(self, batch_id: str) -> Iterator[Item]:
        """Every item in listing order, a page at a time (a manifest of 100,000 rows never sits in one query)."""
        after = -1
        while page := self.items(batch_id, after=after, limit=CHUNK_ROWS):
            yield from page
            after = page[-1].seq

    def unit_items(self, job_id: str) -> list[Item]:
        with self._session() as session:
            query = select(*Item.columns()).where(BatchItemRow.job_id == job_id).order_by(BatchItemRow.seq)
            return [Item.of(row) for row in session.execute(query)]

    def has_input(self, batch_id: str, input_key: str) -> bool:
        with self._session() as session:
            query = select(BatchItemRow.seq).where(
                BatchItemRow.batch_id == batch_id, BatchItemRow.input_key == input_key
            )
            return session.scalars(query.limit(1)).first() is not None

    def stored_before(self, output: str, versions: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Item]:
        """Items of earlier batches writing under ``output`` (the same owner, source and fingerprint) whose
        output is stored for these (input key, etag) versions: what a batch run again reuses."""
        if not versions:
            return {}
        with self._session() as session:
            query = (
                select(*Item.columns())
                .join(BatchRow, BatchRow.id == BatchItemRow.batch_id)
                .where(BatchRow.output == output)
                .where(BatchItemRow.input_key.in_({key for key, _ in versions}))
                .where(BatchItemRow.state.in_((ItemState.SUCCEEDED, ItemState.REUSED)))
            )
            wanted = set(versions)
            found = (Item.of(row) for row in session.execute(query))
            return {(item.input_key, item.etag): item for item in found if (item.input_key, item.etag) in wanted}

    def item_counts(self) -> dict[ItemState, int]:
        """Items by state over the batches that have not ended (what a scrape shows): the ended from the batches'
        counts, the running through the (batch_id, state) index, the queued what is left."""
        columns = [func.coalesce(func.sum(getattr(BatchRow, c)), 0) for c in ("total", *COUNTED.values())]
        with self._session() as session:
            active = BatchRow.state.in_(_STOPPABLE)
            total, *ended = session.execute(select(*columns).where(active)).one()
            running = session.scalar(
                select(func.count())
                .select_from(BatchItemRow)
                .where(BatchItemRow.batch_id.in_(select(BatchRow.id).where(active)))
                .where(BatchItemRow.state == ItemState.RUNNING)
            )
        counts = dict(zip(COUNTED, map(int, ended), strict=True))
        left = int(total) - sum(counts.values())
        return {ItemState.QUEUED: max(0, left - int(running or 0)), ItemState.RUNNING: int(running or 0)} | counts

    def batch_counts(self) -> dict[str, int]:
        with self._session() as session:
            return dict(session.execute(select(BatchRow.state, func.count()).group_by(BatchRow.state)).all())

    # -- working -------------------------------------------------------------

    def start_unit(self, job_id: str) -> None:
        """A worker took the unit: its queued items run."""
        with self._session.begin() as session:
            session.execute(
                update(BatchItemRow)
                .where(BatchItemRow.job_id == job_id, BatchItemRow.state == ItemState.QUEUED)
                .values(state=ItemState.RUNNING)
            )

    def end_items(self, batch_id: str, ends: Sequence[ItemEnd]) -> None:
        """End items (each only from queued or running: an item ends once) and count them; past the allowance
        the batch stops, in the same transaction."""
        with self._session.begin() as session:
            self._end(session, batch_id, ends)
            self._allowance(session, batch_id)

    def end_unit(self, job_id: str, state: ItemState, reason: str | None) -> int:
        """The unit's job ended: its items that are still open end as ``state``. Returns how many."""
        with self._session.begin() as session:
            batch_id = session.scalar(select(JobRow.batch_id).where(JobRow.id == job_id))
            if batch_id is None:
                return 0
            ended = self._end_open(session, batch_id, BatchItemRow.job_id == job_id, state, reason)
            self._allowance(session, batch_id)
            return ended

    def end_rest(self, batch_id: str, state: ItemState, reason: str) -> int:
        """End every item of the batch still open (items whose unit is gone: a lost write, a job deleted)."""
        with self._session.begin() as session:
            return self._end_open(session, batch_id, BatchItemRow.seq >= 0, state, reason)

    def stop(self, batch_id: str, why: str, reason: str) -> bool:
        """Stop a batch (``why``: stopped or cancelled): its queued units cancelled, their items not run, its
        running units asked to cancel. False if it was stopping or over already."""
        with self._session.begin() as session:
            return self._stop(session, batch_id, why, reason)

    def unsettled_units(self, batch_id: str) -> list[tuple[str, JobState, str | None]]:
        """Units that ended (any way: a worker, a cancel, attempts used up at a claim) with items still open."""
        with self._session() as session:
            open_items = exists().where(BatchItemRow.job_id == JobRow.id, BatchItemRow.state.in_(ITEM_OPEN))
            query = select(JobRow.id, JobRow.state, JobRow.reason).where(
                JobRow.batch_id == batch_id, JobRow.state.in_(FINAL), open_items
            )
            return [(r.id, JobState(r.state), r.reason) for r in session.execute(query)]

    def active_units(self, batch_id: str) -> int:
        with self._session() as session:
            query = select(func.count()).select_from(JobRow)
            query = query.where(JobRow.batch_id == batch_id, JobRow.state.in_(ACTIVE))
            return int(session.scalar(query) or 0)

    def finish(self, batch_id: str, state: BatchState) -> bool:
        """Running -> its end state, once: True for the caller that made the change (it announces the end)."""
        now = time.time()
        with self._session.begin() as session:
            return bool(
                session.execute(
                    update(BatchRow)
                    .where(BatchRow.id == batch_id, BatchRow.state == BatchState.RUNNING)
                    .values(state=state, finished_at=now, updated_at=now)
                ).rowcount
            )

    # -- inside a transaction ----------------------------------------------------------------------

    def _end(self, session: Session, batch_id: str, ends: Sequence[ItemEnd]) -> int:
        counts = dict.fromkeys(COUNTED.values(), 0)
        frames = 0
        for end in ends:
            values = {f.name: getattr(end, f.name) for f in fields(ItemEnd) if f.name != "seq"}
            changed = session.execute(
                update(BatchItemRow)
                .where(
                    BatchItemRow.batch_id == batch_id,
                    BatchItemRow.seq == end.seq,
                    BatchItemRow.state.in_(ITEM_OPEN),
                )
                .values(**{k: v for k, v in values.items() if v not in ("", None) or k == "state"})
            ).rowcount
            if changed:
                counts[COUNTED[end.state]] += 1
                frames += end.frames
        if any(counts.values()):
            session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id)
                .values(
                    frames=BatchRow.frames + frames,
                    updated_at=time.time(),
                    **{column: getattr(BatchRow, column) + n for column, n in counts.items() if n},
                )
            )
        return sum(counts.values())

    def _allowance(self, session: Session, batch_id: str) -> None:
        row = session.get(BatchRow, batch_id)
        if row is None or row.state != BatchState.RUNNING or row.stop or not row.max_failures:
            return
        allowance = Allowance.parse(row.max_failures)
        if allowance is not None and allowance.exceeded(row.failed, row.total):
            self._stop(
                session,
                batch_id,
                STOP_STOPPED,
                f"{row.failed} of {row.total} items failed, more than max_failures {allowance} allows",
            )

    def _stop(self, session: Session, batch_id: str, why: str, reason: str) -> bool:
        now = time.time()
        if not session.execute(
            update(BatchRow)
            .where(BatchRow.id == batch_id, BatchRow.stop.is_(None), BatchRow.state.in_(_STOPPABLE))
            .values(stop=why, reason=reason, updated_at=now)
        ).rowcount:
            return False
        word = "the batch was cancelled" if why == STOP_CANCELLED else "the batch stopped: " + reason
        session.execute(
            update(JobRow)
            .where(JobRow.batch_id == batch_id, JobRow.state.in_((JobState.QUEUED, JobState.UPLOADING)))
            .values(state=JobState.CANCELLED, reason=word, finished_at=now, updated_at=now)
        )
        session.execute(
            update(JobRow)
            .where(JobRow.batch_id == batch_id, JobRow.state == JobState.RUNNING)
            .values(cancel_requested=True, updated_at=now)
        )
        cancelled = select(JobRow.id).where(JobRow.batch_id == batch_id, JobRow.state == JobState.CANCELLED)
        self._end_open(session, batch_id, BatchItemRow.job_id.in_(cancelled), ItemState.NOT_RUN, word)
        return True

    def _end_open(self, session: Session, batch_id: str, which, state: ItemState, reason: str | None) -> int:
        """End every open item of the batch that ``which`` selects as ``state``, in one statement, and count them."""
        ended = session.execute(
            update(BatchItemRow)
            .where(BatchItemRow.batch_id == batch_id, BatchItemRow.state.in_(ITEM_OPEN), which)
            .values(state=state, reason=reason)
            .execution_options(synchronize_session=False)
        ).rowcount
        if ended:
            column = COUNTED[state]
            session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id)
                .values(**{column: getattr(BatchRow, column) + ended}, updated_at=time.time())
            )
        return ended


_ITEM_BLANK = (  # an item row's columns that intake leaves to their defaults
    dict.fromkeys(("reason", "output_key", "job_id")) | dict.fromkeys(("kind", "runtime", "precision", "node"), "")
) | {"frames": 0, "seconds": 0.0}
_STOPPABLE = (BatchState.LISTING, BatchState.RUNNING)
