"""The job store's schema: every table on one declarative ``Base``, made by one ``create_all``.

The jobs and workers (:mod:`restyle.stores.jobs`), the batches and their items
(:mod:`restyle.stores.batches`), the catalogue's records (:mod:`restyle.stores.catalogue`),
the running totals (:mod:`restyle.stores.counters`) and the dashboard's sessions
(:mod:`restyle.stores.sessions`) share one database; :func:`create_all`
makes whatever tables are missing, and adds the nullable columns a newer version brought to a
table an older one made (``jobs.batch_id``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
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
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # when a worker first took it
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)  # the notifier's feed
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_key: Mapped[str | None] = mapped_column(String(600), nullable=True)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_scored: Mapped[int] = mapped_column(Integer, default=0)  # over every attempt
    figures: Mapped[dict] = mapped_column(JSON, default=dict)
    # A unit of a batch (restyle.stores.batches): its items are batch_items rows with this job_id.
    batch_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # What the retention sweep deleted of an ended job (restyle.stores.retention): NULL, "input" or "all".
    swept: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)


class BatchRow(Base):
    """A batch: many inputs under one prefix, one JobSpec; its counts kept as its items end."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    source: Mapped[str] = mapped_column(String(600))  # the prefix its inputs were listed from (data store)
    output: Mapped[str] = mapped_column(String(600), index=True)  # the prefix its outputs and manifest go under
    params: Mapped[dict] = mapped_column(JSON, default=dict)  # a JobParams as JSON, as a job's
    fingerprint: Mapped[str] = mapped_column(String(64))
    max_failures: Mapped[str | None] = mapped_column(String(32), nullable=True)  # an Allowance's text
    webhook: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    stop: Mapped[str | None] = mapped_column(String(16), nullable=True)  # why it stops early: stopped | cancelled
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    reused: Mapped[int] = mapped_column(Integer, default=0)
    not_run: Mapped[int] = mapped_column(Integer, default=0)
    frames: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BatchItemRow(Base):
    """One input of a batch. Paged by (batch_id, seq), filtered by state through (batch_id, state, seq)."""

    __tablename__ = "batch_items"
    __table_args__ = (
        Index("batch_items_by_state", "batch_id", "state", "seq"),
        Index("batch_items_by_input", "input_key", "etag"),  # resume: the same input version in earlier batches
    )

    batch_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # its place in the listing, from 0
    input_key: Mapped[str] = mapped_column(String(600))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    etag: Mapped[str] = mapped_column(String(128), default="")
    kind: Mapped[str] = mapped_column(String(8), default="")  # image | video once its content was read
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_key: Mapped[str | None] = mapped_column(String(700), nullable=True)
    frames: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    runtime: Mapped[str] = mapped_column(String(64), default="")
    precision: Mapped[str] = mapped_column(String(16), default="")
    node: Mapped[str] = mapped_column(String(128), default="")
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)


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


class TurnRow(Base):
    """When one of an owner's jobs was last taken: the fair claim's turns (restyle.stores.fairness)."""

    __tablename__ = "owner_turns"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_claim: Mapped[float] = mapped_column(Float, default=0.0)


class CounterRow(Base):
    """A running total (restyle.stores.counters)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)


class SessionRow(Base):
    """A dashboard session (restyle.stores.sessions): the cookie holds a random id, never the token."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie's value
    token: Mapped[str] = mapped_column(String(64), index=True)  # SHA-256 of the token that signed in
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    notice: Mapped[str | None] = mapped_column(Text, nullable=True)  # a refusal's reason, shown once by the page


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


class ModelGraphRow(Base):
    """A registered model's graph with its weights left out (restyle/service/facts.py), by the file's hash:
    what a job's door checks it against, so that no door loads the file."""

    __tablename__ = "catalogue_graphs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    graph: Mapped[bytes] = mapped_column(LargeBinary)  # empty: the file is not ONNX (a plugin's kind)


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
    _add_missing_columns(engine)


def _add_missing_columns(engine: Engine) -> None:
    """A table made by an older version gets the nullable columns added since (``jobs.batch_id``), and their
    indexes. Only nullable columns are ever added this way: old rows read them as NULL."""
    found = inspect(engine)
    for table in Base.metadata.sorted_tables:
        have = {column["name"] for column in found.get_columns(table.name)}
        for column in table.columns:
            if column.name in have or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as connection:
                    connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
                    for index in table.indexes:
                        if [c.name for c in index.columns] == [column.name]:
                            index.create(connection, checkfirst=True)
            except (OperationalError, ProgrammingError) as exc:  # another process added it first
                if "duplicate" not in str(exc).lower() and "already exists" not in str(exc).lower():
                    raise
