"""Running totals of scored work, kept in the job store as chunks finish.

/metrics reads these (a dozen rows) instead of every chunk ever scored, so a scrape
costs the same on a service that has scored a million chunks. The chunk latency
histogram is one counter per bucket (non-cumulative; cumulated when read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from restyle.stores.tables import CounterRow

# Upper bounds (seconds) of the chunk latency histogram.
CHUNK_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf"))


def _bucket(bound: float) -> str:
    return "chunks_le_inf" if bound == float("inf") else f"chunks_le_{bound:g}"


COUNTERS = ("frames_scored", "chunks", "chunk_seconds_sum", *(_bucket(b) for b in CHUNK_BUCKETS))


@dataclass(frozen=True)
class ChunkLatencies:
    """The chunk latency histogram: cumulative counts per upper bound, their count and their sum."""

    buckets: list[tuple[float, int]]
    count: int
    total_s: float


def start(session: Session, chunks: Any) -> None:
    """Make the counter rows once; a job store from before them gets its totals from its chunk rows
    (``chunks``: the mapped class with ``frames`` and ``seconds``), once."""
    have = set(session.scalars(select(CounterRow.name)))
    if set(COUNTERS) <= have:
        return
    values = dict.fromkeys(COUNTERS, 0.0)
    values["frames_scored"] = float(session.scalar(select(func.coalesce(func.sum(chunks.frames), 0))) or 0)
    values["chunks"] = float(session.scalar(select(func.count()).select_from(chunks)) or 0)
    values["chunk_seconds_sum"] = float(session.scalar(select(func.coalesce(func.sum(chunks.seconds), 0.0))) or 0.0)
    below = 0.0
    for bound in CHUNK_BUCKETS:
        query = select(func.count()).select_from(chunks)
        if bound != float("inf"):
            query = query.where(chunks.seconds <= bound)
        upto = float(session.scalar(query) or 0)
        values[_bucket(bound)], below = upto - below, upto
    for name in COUNTERS:
        if name not in have:
            session.add(CounterRow(name=name, value=values[name]))


def add_chunk(session: Session, frames: int, seconds: float) -> None:
    """Count one scored chunk, in the caller's transaction."""
    bucket = _bucket(next(b for b in CHUNK_BUCKETS if seconds <= b))
    for name, step in (("frames_scored", frames), ("chunks", 1), ("chunk_seconds_sum", seconds), (bucket, 1)):
        session.execute(update(CounterRow).where(CounterRow.name == name).values(value=CounterRow.value + step))


def read(session: Session) -> dict[str, float]:
    return {row.name: row.value for row in session.scalars(select(CounterRow))}


def latencies(counters: dict[str, float]) -> ChunkLatencies:
    cumulative, buckets = 0, []
    for bound in CHUNK_BUCKETS:
        cumulative += int(counters.get(_bucket(bound), 0))
        buckets.append((bound, cumulative))
    return ChunkLatencies(buckets, int(counters.get("chunks", 0)), float(counters.get("chunk_seconds_sum", 0.0)))
