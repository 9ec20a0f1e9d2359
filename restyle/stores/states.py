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
