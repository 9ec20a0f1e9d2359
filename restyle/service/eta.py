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
        if job.state != JobState.RUNNING or not job.frames_total:
            with self._lock:
                self._seen.pop(job.id, None)
            return None
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(job.id, deque())
            if seen and job.frames_done < seen[-1][1]:
                seen.clear()  # a retry started over: old speeds say nothing
            if not seen or seen[-1][1] != job.frames_done:
                seen.append((now, job.frames_done))
            while len(seen) > 2 and now - seen[0][0] > self.WINDOW_S:
                seen.popleft()
            if len(self._seen) > 10_000:  # jobs the API stopped asking about
                self._seen.pop(next(iter(self._seen)))
            (t0, f0), (t1, f1) = seen[0], seen[-1]
        if f1 <= f0 or t1 <= t0:
            return None
        return round((job.frames_total - job.frames_done) / ((f1 - f0) / (t1 - t0)), 1)
