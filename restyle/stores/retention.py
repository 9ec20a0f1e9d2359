"""What the retention sweep (restyle.service.retention) reads and marks in the job store.

An ended job's ``swept`` column says how far its sweep went: NULL (nothing deleted yet), ``input``
(its input is gone, or was kept on purpose) or ``all`` (its outputs, stills, log and work too). Each
step is marked after its deletes, so a sweep that stops half way does the rest next time (deleting
what is already gone is no error).
"""

from __future__ import annotations

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import sessionmaker

from restyle.stores.jobs import Job
from restyle.stores.states import ACTIVE, BATCH_ACTIVE, FINAL
from restyle.stores.tables import BatchRow, JobRow, PictureRow

INPUT, ALL = "input", "all"


class RetentionStore:
    def __init__(self, engine: Engine):
        self._session = sessionmaker(engine, expire_on_commit=False)

    def ended(self, swept: str | None, before: float, limit: int = 200) -> list[Job]:
        """Jobs that ended before ``before`` and were swept as far as ``swept`` (None: not at all), earliest first."""
        with self._session() as session:
            query = (
                select(JobRow)
                .where(JobRow.state.in_(FINAL), JobRow.finished_at < before)
                .where(JobRow.swept.is_(None) if swept is None else JobRow.swept == swept)
                .order_by(JobRow.finished_at)
                .limit(limit)
            )
            return [Job.of(row) for row in session.scalars(query)]

    def mark(self, job_ids: list[str], swept: str) -> None:
        if job_ids:
            with self._session.begin() as session:
                session.execute(update(JobRow).where(JobRow.id.in_(job_ids)).values(swept=swept))

    def pictures_in_use(self) -> set[str]:
        """Keys of style pictures something still needs: saved ones, and those of jobs and batches not ended."""
        with self._session() as session:
            used = set(session.scalars(select(PictureRow.key)))
            specs = [*session.scalars(select(JobRow.params).where(JobRow.state.in_(ACTIVE)))]
            specs += session.scalars(select(BatchRow.params).where(BatchRow.state.in_(BATCH_ACTIVE)))
        for stored in specs:
            used.update(_strings(stored))  # a picture's key anywhere in them (params of any version)
        return used


def _strings(value: object) -> set[str]:
    """Every string in a JSON value."""
    found, todo = set(), [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found
