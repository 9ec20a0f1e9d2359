"""A deadline for each task out on a worker, made from the speed its map has measured.

A worker can be alive and still never answer: a decoder or a model stuck in a call. Its task then
reports no frames. An engine lets a task go without progress for

* ``floor_s``, until the map has measured a speed and the task has made its first frames (a worker
  may first load its model, fetch and open the input, score a deflicker's lead-in);
* then ``max(minimum_s, factor x seconds per frame x frames it has left)``,

and then kills the worker that holds it and gives the task out again, a retry counted like a lost
worker's. The speed is measured within the map (one job's model and frame size): the seconds between
each task's reports over the frames they brought, on every worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from restyle.config import Settings


@dataclass(frozen=True)
class StallLimits:
    """How long a task may make no progress before its worker is deemed stuck (see the module's doc)."""

    factor: float = 10.0
    floor_s: float = 120.0
    minimum_s: float = 60.0

    @classmethod
    def of(cls, settings: Settings) -> StallLimits:
        return cls(settings.task_stall_factor, settings.task_stall_floor_s, settings.task_stall_minimum_s)


@dataclass(frozen=True)
class Stall:
    """A task that made no progress for ``silent_s``, past its limit."""

    index: int  # the task's place in the map's items
    silent_s: float
    limit_s: float
    expected_s: float | None  # its frames left at the measured speed; None: the floor applied
    per_frame_s: float | None

    def what(self, label: str) -> str:
        """``chunk 3 made no progress for 95 s (expected ~9 s from the measured 0.04 s/frame)``."""
        if self.expected_s is None or self.per_frame_s is None:
            why = f"no frames from it yet; {_s(self.limit_s)} s are allowed before the first"
        else:
            why = f"expected ~{_s(self.expected_s)} s from the measured {self.per_frame_s:.2g} s/frame"
        return f"{label} made no progress for {_s(self.silent_s)} s ({why})"

    def reason(self, label: str, tries: int) -> str:
        """Why the task failed, once it has been stuck once too often."""
        return f"{self.what(label)}; stopped after {tries} tries"


def _s(seconds: float) -> str:
    return f"{seconds:.2g}" if seconds < 10 else f"{seconds:.0f}"


@dataclass
class _Task:
    units: int  # frames it makes (0: unknown)
    made: int = 0  # frames this try has reported
    counted: int = 0  # frames passed on to the map's listener, over all its tries
    since: float | None = None  # when it last made progress; None: no worker is on it now
    done: bool = False  # finished, its frames counted from its result: later reports are late words


class Deadlines:
    """One map's tasks: when each last made progress, and the seconds per frame measured from all of them.

    Thread-safe: a local pool's reports arrive on another thread than the map's. The frames a retry makes
    again are not counted twice (:meth:`progress` says how many are new).
    """

    def __init__(self, limits: StallLimits, clock: Callable[[], float] = time.monotonic):
        self.limits, self._clock = limits, clock
        self._tasks: dict[int, _Task] = {}
        self._seconds = 0.0  # between reports, over every task
        self._frames = 0  # ... the frames those reports brought
        self._lock = threading.Lock()

    @property
    def per_frame_s(self) -> float | None:
        """The measured seconds per frame; None before any frame."""
        return self._seconds / self._frames if self._frames else None

    def begin(self, index: int, units: int) -> None:
        """A worker took the task (again): its clock starts now."""
        with self._lock:
            task = self._tasks.setdefault(index, _Task(units))
            task.made, task.since = 0, self._clock()

    def progress(self, index: int, frames: int) -> int:
        """The task made ``frames`` more; how many frames are new to the map's listener."""
        with self._lock:
            task = self._tasks.setdefault(index, _Task(0))
            if frames <= 0 or task.done:
                return 0
            if task.since is not None:
                now = self._clock()
                self._seconds, self._frames = self._seconds + now - task.since, self._frames + frames
                task.since = now
            task.made += frames
            new = max(0, task.made - task.counted)
            task.counted += new
            return new

    def made(self, index: int) -> int:
        """Frames the task's present try has reported."""
        with self._lock:
            return self._tasks[index].made if index in self._tasks else 0

    def finish(self, index: int, frames: int | None = None) -> int:
        """No worker is on the task any more (it finished, or its worker is gone): its clock stops.

        With ``frames``, it finished and made that many in all: the frames its reports did not bring
        (yet) are counted, and their number (new to the listener) returned; its reports after are not.
        """
        new = self.progress(index, frames - self.made(index)) if frames is not None else 0
        with self._lock:
            if index in self._tasks:
                self._tasks[index].since = None
                self._tasks[index].done = frames is not None
        return new

    def stuck(self) -> list[Stall]:
        """The tasks on workers that made no progress for longer than their limit."""
        now, stalled = self._clock(), []
        with self._lock:
            for index, task in self._tasks.items():
                if task.since is None:
                    continue
                limit, expected = self._limit(task)
                if now - task.since > limit:
                    stalled.append(Stall(index, now - task.since, limit, expected, self.per_frame_s))
        return stalled

    def _limit(self, task: _Task) -> tuple[float, float | None]:
        """How long ``task`` may go without progress, and the time its frames left should take (None: unknown)."""
        per_frame = self.per_frame_s
        if per_frame is None or task.made == 0 or task.units <= 0:
            return self.limits.floor_s, None
        expected = per_frame * max(1, task.units - task.made)
        return max(self.limits.minimum_s, self.limits.factor * expected), expected
