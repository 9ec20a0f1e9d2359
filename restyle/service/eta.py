"""A running job's ETA, from the progress the API has seen: frames left / recent speed."""

from __future__ import annotations

import threading
import time
from collections import deque

from restyle.stores.jobs import Job, JobState


class Speedometer:
    """Each running job's recent speed, from the progress the API has seen: ETA = frames left / recent speed.

    Workers report frames done on every heartbeat; the frames seen over the last WINDOW_S
    give the speed, so a job that slows or speeds up gets a fresh estimate. One per app
    (``app.state``), not per process: two apps in one process do not mix their readings.
    """

    WINDOW_S = 30.0

    def __init__(self) -> None:
        self._seen: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def eta(self, job: Job) -> float | None:
        return self.seconds_left(job.id, job.frames_done, job.frames_total, job.state == JobState.RUNNING)

    def seconds_left(self, key: str, done: int, total: int, running: bool = True) -> float | None:
        """Seconds until ``done`` reaches ``total`` at the recent speed (frames of a job, items of a batch);
        None while no speed is seen or when it is not running (what was seen of it is forgotten)."""
        if not running or not total:
            with self._lock:
                self._seen.pop(key, None)
            return None
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            if seen and done < seen[-1][1]:
                seen.clear()  # a retry started over: old speeds say nothing
            if not seen or seen[-1][1] != done:
                seen.append((now, done))
            while len(seen) > 2 and now - seen[0][0] > self.WINDOW_S:
                seen.popleft()
            if len(self._seen) > 10_000:  # jobs the API stopped asking about
                self._seen.pop(next(iter(self._seen)))
            (t0, f0), (t1, f1) = seen[0], seen[-1]
        if f1 <= f0 or t1 <= t0:
            return None
        return round((total - done) / ((f1 - f0) / (t1 - t0)), 1)
