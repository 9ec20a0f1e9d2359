"""A job's states and a lease's answers, as enums: the words the job store, the service and the client share.

Stdlib only, so that the client (``restyle submit --wait``) can import it without SQLAlchemy.

A job's life: ``uploading`` (a presigned upload not landed yet) -> ``queued`` -> ``running``
(a worker holds a lease and heartbeats) -> ``succeeded`` | ``failed`` (a reason a person can
read) | ``dead`` (attempts used up) | ``cancelled``.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    UPLOADING = "uploading"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


# Tuples, in the order of a job's life: /metrics lists the states in this order.
ACTIVE: tuple[JobState, ...] = (JobState.UPLOADING, JobState.QUEUED, JobState.RUNNING)
FINAL: tuple[JobState, ...] = (JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED)


class Lease(StrEnum):
    """What a worker's heartbeat learns about its lease on a job."""

    HELD = "held"  # carry on
    CANCEL = "cancel"  # someone cancelled the job: stop and record it cancelled
    LOST = "lost"  # another worker has the job now: stop and touch nothing of it


class BatchState(StrEnum):
    """A batch's life: ``listing`` (its inputs are being listed into items) -> ``running`` -> an end.

    The end says what became of the items: ``succeeded`` (every item scored or reused), ``partial``
    (some failed, within the allowance), ``failed`` (every item failed, or its listing did),
    ``stopped`` (more failed than ``max_failures`` allows: the rest were not run) or ``cancelled``.
    """

    LISTING = "listing"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"


BATCH_ACTIVE: tuple[BatchState, ...] = (BatchState.LISTING, BatchState.RUNNING)
BATCH_FINAL: tuple[BatchState, ...] = (
    BatchState.SUCCEEDED,
    BatchState.PARTIAL,
    BatchState.FAILED,
    BatchState.STOPPED,
    BatchState.CANCELLED,
)


class ItemState(StrEnum):
    """One input of a batch (the same words as the manifest's rows, restyle.pipeline.manifest).

    ``reused``: its output was already stored for the same input version and JobSpec fingerprint;
    ``not_run``: the batch stopped (too many failures, or a cancel) before it.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REUSED = "reused"
    NOT_RUN = "not_run"


ITEM_OPEN: tuple[ItemState, ...] = (ItemState.QUEUED, ItemState.RUNNING)
ITEM_ENDED: tuple[ItemState, ...] = (ItemState.SUCCEEDED, ItemState.FAILED, ItemState.REUSED, ItemState.NOT_RUN)
