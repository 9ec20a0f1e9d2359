"""Work that gets stuck, for the tests of the engines' deadlines (restyle/engines/deadline.py).

A stuck worker is alive and makes no progress: these block forever in a call, as a decoder or a model
that never returns would, on the first try that reaches the spot (it makes a marker file; the tries
after it find the file and go on), or on every try ("always"). Importable by any worker: the engines
unpickle the task function by name, and workers load the handler by its entry point.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from restyle.errors import ModelError
from restyle.handlers.base import BaseHandler, OutputKind

ALWAYS = "always"


def stuck_here(marker: str) -> None:
    """Block forever if this try is the first to come here (it makes ``marker``), or if ``marker`` is ALWAYS."""
    if marker == ALWAYS:
        threading.Event().wait()
    try:
        with open(marker, "x") as first:
            first.write(str(os.getpid()))  # who got stuck
    except FileExistsError:
        return
    threading.Event().wait()


@dataclass(frozen=True)
class Steps:
    """An item of ``frames`` steps of ``seconds``, each reported as a frame made; with a ``marker``, it gets
    stuck after ``stuck_after`` of them (see :func:`stuck_here`)."""

    index: int
    frames: int = 4
    seconds: float = 0.05
    marker: str = ""
    stuck_after: int = 0
    pixels: int = 0

    @property
    def units(self) -> int:
        return self.frames

    @property
    def label(self) -> str:
        return f"steps {self.index}"


@dataclass(frozen=True)
class Stepped:
    """What :func:`take_steps` made: the engine's Result."""

    index: int
    frames: int
    pid: int
    node: str = ""

    def ran_on(self, node: str, runtime: str, bytes_in: int) -> Stepped:
        return dataclasses.replace(self, node=node)


def take_steps(item: Steps, model: Any, batch_size: int, on_frames: Callable[[int], None]) -> Stepped:
    """The task function: ``item``'s steps, each reported, stuck where its marker says."""
    for step in range(item.frames):
        if item.marker and step == item.stuck_after:
            stuck_here(item.marker)
        time.sleep(item.seconds)
        on_frames(1)
    return Stepped(item.index, item.frames, os.getpid())


class StuckOnceHandler(BaseHandler):
    """A photographic negative whose model gets stuck in one call of one job: the ``after``-th call of a worker
    (counted from 0), on the first try that gets there (``params``: ``marker``, a file path, and ``after``).

    Registered in tests through an entry point on a folder they put on sys.path (workers see it too)."""

    name = "stuck-once"
    output = OutputKind.FRAMES

    def check(self, spec: Any) -> None:
        if not spec.params.get("marker"):
            raise ModelError("stuck-once: params.marker must name a file")

    def load(self, load: Any, runtime: Any) -> StuckOnce:
        return StuckOnce()


class StuckOnce:
    output = OutputKind.FRAMES
    description = "a negative that gets stuck once"

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, frames: np.ndarray, params: Any) -> np.ndarray:
        if self.calls == params.get("after", 0):
            stuck_here(params["marker"])
        self.calls += 1
        return 255 - frames
