"""A batch and its items as the service sees them: records made from the job store's rows
(:mod:`restyle.stores.batches` keeps them), and how an item ended, as a worker tells it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from restyle.stores.params import JobParams
from restyle.stores.states import BatchState, ItemState
from restyle.stores.tables import BatchItemRow, BatchRow


@dataclass
class Batch:
    """A batch as the API and workers see it."""

    id: str
    owner: str
    state: BatchState
    source: str
    output: str
    params: JobParams | None
    fingerprint: str
    max_failures: str | None
    webhook: str | None
    stop: str | None
    reason: str | None
    total: int
    succeeded: int
    failed: int
    reused: int
    not_run: int
    frames: int
    created_at: float
    updated_at: float
    finished_at: float | None

    @classmethod
    def of(cls, row: BatchRow) -> Batch:
        values = {f.name: getattr(row, f.name) for f in fields(cls)}
        values["params"], _ = JobParams.load(row.params)
        values["state"] = BatchState(row.state)
        return cls(**values)

    @property
    def ended(self) -> int:
        return self.succeeded + self.failed + self.reused + self.not_run

    @property
    def left(self) -> int:
        return max(0, self.total - self.ended)


@dataclass(frozen=True)
class Item:
    """One input of a batch, as its row says."""

    batch_id: str
    seq: int
    input_key: str
    size: int
    etag: str
    kind: str
    state: ItemState
    reason: str | None
    output_key: str | None
    frames: int
    seconds: float
    runtime: str
    precision: str
    node: str
    job_id: str | None

    @classmethod
    def columns(cls) -> list:
        """The item table's columns in this record's order: selected as plain rows, 100,000 read in a second."""
        return [getattr(BatchItemRow, f.name) for f in fields(cls)]

    @classmethod
    def of(cls, row: Any) -> Item:
        """From a row of :meth:`columns`."""
        item = cls(*row)
        object.__setattr__(item, "state", ItemState(item.state))
        return item


@dataclass(frozen=True)
class ItemEnd:
    """How an item ended: its state, and what a worker learnt of it."""

    seq: int
    state: ItemState
    reason: str | None = None
    kind: str = ""
    output_key: str | None = None
    frames: int = 0
    seconds: float = 0.0
    runtime: str = ""
    precision: str = ""
    node: str = ""
