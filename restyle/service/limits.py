"""Rate limits and quotas, decided at the door before a request's body is read.

Rates: a token bucket per caller, so one token cannot flood the job queue or the stores. Each
caller may submit ``per_minute`` jobs a minute on average and ``burst`` at once (and store
pictures, datasets and models at a rate of their own). Past that the API answers 429 with
Retry-After. The buckets live in the API process: behind a proxy with several API processes,
each limits on its own.

Quotas (:class:`Quotas`): what one tenant may hold at once: jobs uploading, queued or running,
bytes stored, pictures saved. Past one, the API answers 429 (jobs, pictures) or 413 (bytes).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        """Spend one token of ``name``'s bucket: 0 when allowed, else the seconds until one is there."""
        if self.rate <= 0:
            return 0.0  # limits off
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(name, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True)
class Usage:
    """What a tenant holds, as its quotas count it."""

    jobs: int = 0  # uploading, queued or running
    bytes: int = 0  # stored: its videos in the inbox, its datasets, its pictures
    pictures: int = 0  # saved

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.jobs + other.jobs, self.bytes + other.bytes, self.pictures + other.pictures)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.jobs - other.jobs, self.bytes - other.bytes, self.pictures - other.pictures)


class OverQuota(Exception):
    """A request the tenant's quota refuses: the guard answers ``status`` with ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


QUOTAS = ("jobs", "bytes", "pictures")  # what a route may count against its caller (policy.Policy.quota)


class Quotas:
    """Per-tenant quotas, decided at the door from the headers: jobs uploading, queued or running, bytes stored,
    pictures saved (a limit of 0: none).

    A request a route's policy meters is *held* while it runs: it counts as one more job or picture and as its
    declared length in bytes, so that a burst of requests at once cannot all pass a quota that one of them fills.
    The jobs and pictures are counted in the job store each time (an indexed count); the bytes, by listing the
    tenant's folders, at most every ``bytes_seconds`` and again after each of its storing requests. Like the rate
    limits, the holds live in the API process: behind several API processes, each holds its own.
    """

    def __init__(self, limits: Usage, measure: Callable[[str, bool], Usage], bytes_seconds: float = 30.0):
        """``measure(owner, with_bytes)``: its jobs and pictures, and its stored bytes if asked (else -1)."""
        self.limits, self._measure, self.bytes_seconds = limits, measure, bytes_seconds
        self._held: dict[str, Usage] = {}
        self._bytes: dict[str, tuple[int, float]] = {}  # owner -> (bytes stored, when listed)
        self._lock = threading.Lock()

    def hold(self, owner: str, counted: tuple[str, ...], declared: int) -> Usage:
        """Count one request of ``owner`` against the quotas named in ``counted``; what it holds (give it back with
        :meth:`release`), or OverQuota with the reason."""
        wanted = Usage(
            jobs=int("jobs" in counted),
            bytes=max(0, declared) if "bytes" in counted else 0,
            pictures=int("pictures" in counted),
        )
        found = self._measure(owner, "bytes" in counted and self._stale(owner))  # unlocked: stores are slow
        with self._lock:
            if found.bytes >= 0:
                self._bytes[owner] = (found.bytes, time.monotonic())
            stored = self._bytes.get(owner, (0, 0.0))[0]
            has = Usage(found.jobs, stored, found.pictures) + self._held.get(owner, Usage())
            self._check(owner, has, wanted, counted, declared)
            self._held[owner] = self._held.get(owner, Usage()) + wanted
        return wanted

    def _stale(self, owner: str) -> bool:
        with self._lock:
            listed = self._bytes.get(owner, (0, -math.inf))[1]
        return time.monotonic() - listed > self.bytes_seconds

    def release(self, owner: str, held: Usage) -> None:
        """The request ended: what it held is no longer counted (what it stored is, once its folders are listed)."""
        with self._lock:
            left = self._held.get(owner, Usage()) - held
            if left == Usage():
                self._held.pop(owner, None)
            else:
                self._held[owner] = left
            if held.bytes or held.pictures:
                self._bytes.pop(owner, None)  # list again next time: what it stored counts from now on

    def remaining_bytes(self, owner: str) -> int | None:
        """Bytes ``owner`` may still store as things stand (None: no quota), to bound a body of no declared length."""
        if not self.limits.bytes:
            return None
        with self._lock:
            stored = self._bytes.get(owner, (0, 0.0))[0] + self._held.get(owner, Usage()).bytes
        return max(0, self.limits.bytes - stored)

    def _check(self, owner: str, has: Usage, wanted: Usage, counted: tuple[str, ...], declared: int) -> None:
        limits = self.limits
        if "jobs" in counted and limits.jobs and has.jobs + 1 > limits.jobs:
            raise OverQuota(
                429,
                f"{owner} has {has.jobs} jobs uploading, queued or running: the most one tenant may have "
                f"(RESTYLE_QUOTA_JOBS={limits.jobs}); submit more when some have ended",
            )
        if "pictures" in counted and limits.pictures and has.pictures + 1 > limits.pictures:
            raise OverQuota(
                429,
                f"{owner} has saved {has.pictures} pictures: the most one tenant may "
                f"(RESTYLE_QUOTA_PICTURES={limits.pictures}); delete one first (DELETE /api/pictures/NAME)",
            )
        full = has.bytes >= limits.bytes or has.bytes + wanted.bytes > limits.bytes
        if "bytes" in counted and limits.bytes and full:
            size = f"{declared} more bytes" if declared > 0 else "more"
            raise OverQuota(
                413,
                f"{owner} stores {has.bytes} bytes (videos waiting in the inbox, datasets, pictures); {size} would "
                f"pass its quota of {limits.bytes} bytes (RESTYLE_QUOTA_BYTES): delete some first",
            )
