"""Submission rate limits: a token bucket per caller, so one token cannot flood the job queue.

Each caller may submit ``per_minute`` jobs a minute on average and ``burst`` at once.
Past that the API answers 429 with Retry-After. The buckets live in the API process:
behind a proxy with several API processes, each limits on its own.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


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
