"""A small task for the Ray engine's tests and bench: restyle a few made-up frames with a loaded model.

Importable by the cluster's workers (they unpickle the task function by name). Each item
carries its own per-call JobSpec, as the pipeline's chunks do; the frames come from the
item's index alone, so an uninterrupted run can be computed anywhere and compared bit for bit.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from restyle.handlers.base import params_of
from restyle.jobspec import JobSpec


@dataclass(frozen=True)
class FrameTask:
    index: int
    spec: JobSpec
    frames: int = 4
    width: int = 96
    height: int = 64

    @property
    def pixels(self) -> int:  # the engine's Item: one frame's pixels
        return self.width * self.height


@dataclass(frozen=True)
class FrameResult:
    index: int
    frames: int
    pixels: str  # sha256 of the restyled frames, (frames, height, width, 3) uint8: results stay small, like a chunk's
    pid: int
    node: str
    seconds: float

    def ran_on(self, node: str, runtime: str, bytes_in: int) -> FrameResult:
        """The engine's Result: the task says its own node (the Ray node id), so the engine's facts are not kept."""
        return self


def frames_for(task: FrameTask) -> np.ndarray:
    """Smooth, varied pictures (gradients and a moving disc), the same for the same index."""
    y, x = np.mgrid[0 : task.height, 0 : task.width].astype(np.float32)
    out = np.empty((task.frames, task.height, task.width, 3), np.uint8)
    for i in range(task.frames):
        t = task.index * task.frames + i
        disc = ((x - (t * 3) % task.width) ** 2 + (y - task.height / 2) ** 2) < (task.height / 4) ** 2
        out[i, ..., 0] = (x * 255 / task.width).astype(np.uint8)
        out[i, ..., 1] = (y * 255 / task.height).astype(np.uint8)
        out[i, ..., 2] = np.where(disc, 240, (t * 17) % 256).astype(np.uint8)
    return out


def restyle_frames(
    task: FrameTask, model, batch_size: int, on_frames: Callable[[int], None] | None = None
) -> FrameResult:
    started = time.perf_counter()
    frames = frames_for(task)
    out = np.concatenate(
        [
            model.predict(frames[i : i + max(1, batch_size)], params_of(task.spec))
            for i in range(0, len(frames), max(1, batch_size))
        ]
    )
    node = ""
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    digest = hashlib.sha256(out.tobytes()).hexdigest()
    return FrameResult(task.index, len(out), digest, os.getpid(), node, time.perf_counter() - started)
