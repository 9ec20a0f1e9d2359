"""The job store's schema: every table on one declarative ``Base``, made by one ``create_all``.

The jobs and workers (:mod:`restyle.stores.jobs`), the catalogue's records
(:mod:`restyle.stores.catalogue`) and the running totals (:mod:`restyle.stores.counters`)
share one database; :func:`create_all` makes whatever tables are missing.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Engine, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("input_key", "input_etag", name="one_job_per_object_version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    input_key: Mapped[str] = mapped_column(String(600))
    input_etag: Mapped[str | None] = mapped_column(String(128), nullable=True)
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # a JobParams as JSON (restyle.stores.params)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[float] = mapped_column(Float, default=0.0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)  # the notifier's feed
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_key: Mapped[str | None] = mapped_column(String(600), nullable=True)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_scored: Mapped[int] = mapped_column(Integer, default=0)  # over every attempt
    figures: Mapped[dict] = mapped_column(JSON, default=dict)


class WorkerRow(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    frames_scored: Mapped[int] = mapped_column(Integer, default=0)
    chunks_scored: Mapped[int] = mapped_column(Integer, default=0)


class ChunkRow(Base):
    """One scored chunk: the data behind the per-job figures (the totals are in CounterRow)."""

    __tablename__ = "chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    chunk: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str] = mapped_column(String(128))
    frames: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class CounterRow(Base):
    """A running total (restyle.stores.counters)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)


class ModelRow(Base):
    __tablename__ = "catalogue_models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))  # the handler that runs it: onnx, yolo, or a plugin's
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(200))  # in the system store
    size: Mapped[int] = mapped_column(BigInteger)
    output: Mapped[str] = mapped_column(String(32))  # the handler's output kind: frames, scaled-frames, records
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")


class PictureRow(Base):
    __tablename__ = "catalogue_pictures"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[float] = mapped_column(Float)


def create_all(engine: Engine) -> None:
    """Make the tables that are missing. Two processes starting at once may both try: the loser tries again."""
    try:
        Base.metadata.create_all(engine)
    except (ProgrammingError, IntegrityError):  # another process made them between look and make
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        if "already exists" not in str(exc):
            raise
        Base.metadata.create_all(engine)
