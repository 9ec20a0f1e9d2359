"""Score one chunk: decode -> batch -> model -> write its part, the three overlapped.

Decoding and writing run in threads beside the model (PyAV and onnxruntime release
the GIL), joined by small bounded queues: the model never waits for a frame, and memory
holds a few frames whatever the chunk's length. This is the function every engine runs.

What a chunk's part is (a video segment, or a records model's JSON Lines) is the task's
``part`` (:mod:`restyle.pipeline.sinks`): the chunk only hands it what the model made.

With a deflicker, each restyled batch is smoothed against the frames before it (in the
model's thread: the state runs frame to frame), starting from the chunk's lead-in
frames, which are scored but not written.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from restyle.files import FileRef, localized
from restyle.handlers.base import Model, Records, blend, get_handler, params_of
from restyle.jobspec import JobSpec
from restyle.media.chunks import Chunk
from restyle.media.decode import decode_chunk
from restyle.media.deflicker import Deflicker
from restyle.stores.segments import SegmentStore

QUEUE_BATCHES = 2  # batches in flight on each side of the model
_DONE = object()


class PartWriter(Protocol):
    """Writes one chunk's part under a temporary name; ``close`` makes it whole, ``abort`` removes it."""

    frames: int

    def write(self, item: Any, pts: int, duration: int) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class PartSpec(Protocol):
    """What a chunk's part is, as a worker needs to know it (picklable: it travels with the task)."""

    suffix: str  # of the part's name: mp4 | jsonl
    smooths: bool  # its frames are pictures a deflicker may smooth
    size: tuple[int, int]  # the frames the model makes (width, height)

    def writer(self, path: Path, chunk: Chunk) -> PartWriter: ...


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to score one chunk, wherever it runs.

    No path of the scheduler's machine: the input and the spec's files are references the
    engine made (:mod:`restyle.files`), that open on the worker's machine. The worker stores
    the part itself (``segments.keep``) where it can reach the store; else the part's
    bytes go back with the result (:class:`restyle.stores.segments.CarriedSegments`).
    """

    input: FileRef
    video_index: int
    chunk: Chunk
    part: PartSpec
    segments: SegmentStore
    segment_name: str
    spec: JobSpec  # the model's per-call parameters (style, strength, picture...) and the deflicker
    files: dict[str, FileRef] = field(default_factory=dict)  # the spec's fields that name files (style_image)

    @property
    def pixels(self) -> int:
        """One frame's pixels out of the model: what engines size a worker's memory by."""
        width, height = self.part.size
        return width * height

    @property
    def units(self) -> int:
        """The frames it makes (an engine's deadline for it is made from the measured seconds per frame)."""
        return self.chunk.frame_count

    @property
    def label(self) -> str:
        return f"chunk {self.chunk.index}"

    @property
    def fidelity_cases(self) -> tuple[str, ...] | None:
        """The fidelity table's cases its job runs (a style's): a worker chooses its precision for them."""
        return get_handler(self.spec.model).fidelity_cases(self.spec)


@dataclass(frozen=True)
class ChunkResult:
    """What a finished chunk reports: its frames, the CPU seconds of each stage and the wall clock.

    A stage's figure is the CPU time of the thread running it (``time.thread_time``): what
    it cost, whatever else shared the cores. A runtime's own helper threads, if any, are
    not in it.
    """

    index: int
    frames: int
    decode_s: float
    infer_s: float
    encode_s: float
    smooth_s: float
    wall_s: float
    segment_name: str
    segment: bytes | None = None  # the segment itself, when the worker could not store it (carried back)
    node: str = ""  # the machine it ran on, when the engine's workers are on several ("": this one)
    runtime: str = ""  # what the worker ran the model on, as it chose on its own CPU: "openvino bf16"
    bytes_in: int = 0  # bytes the worker fetched for it from elsewhere (shipped input, picture, weights)
    first_frame_at: float = 0.0  # when (time.time()) its first frame went to the encoder; 0: it wrote none

    def ran_on(self, node: str, runtime: str, bytes_in: int) -> ChunkResult:
        """This result, with where it ran and on what (set by the engine's worker)."""
        return dataclasses.replace(self, node=node, runtime=runtime, bytes_in=bytes_in)


def score_chunk(
    task: ChunkTask, model: Model, batch_size: int, on_frames: Callable[[int], None] | None = None
) -> ChunkResult:
    """Restyle ``task.chunk`` with ``model`` and store its part; return its figures."""
    started = time.perf_counter()
    spec = localized(task.spec, task.files)
    writer = task.part.writer(task.segments.local_path(task.segment_name), task.chunk)
    stages = _Stages(task, writer, on_frames)
    threads = [
        threading.Thread(target=stages.decode, args=(batch_size,), daemon=True),
        threading.Thread(target=stages.encode, daemon=True),
    ]
    for thread in threads:
        thread.start()
    error: BaseException | None = None
    try:
        stages.score(model, spec, threads[0])
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the threads are down
        error = exc
        stages.stop.set()
    finally:
        stages.restyled.put(_DONE)
        for thread in threads:
            thread.join()
    error = error or (stages.failures[0] if stages.failures else None)
    if error is not None:
        writer.abort()
        raise error
    writer.close()
    return ChunkResult(
        index=task.chunk.index,
        frames=writer.frames,
        decode_s=stages.timers["decode"],
        infer_s=stages.timers["infer"],
        encode_s=stages.timers["encode"],
        smooth_s=stages.timers["smooth"],
        wall_s=time.perf_counter() - started,
        segment_name=task.segment_name,
        segment=task.segments.keep(task.segment_name),
        first_frame_at=stages.first_frame_at,
    )


class _Stages:
    """The three stages of one chunk and what they share: two bounded queues, a stop flag, the timers."""

    def __init__(self, task: ChunkTask, writer: PartWriter, on_frames: Callable[[int], None] | None):
        self.task, self.writer, self.on_frames = task, writer, on_frames
        self.decoded: queue.Queue = queue.Queue(QUEUE_BATCHES)
        self.restyled: queue.Queue = queue.Queue(QUEUE_BATCHES)
        self.timers = {"decode": 0.0, "infer": 0.0, "encode": 0.0, "smooth": 0.0}
        self.failures: list[BaseException] = []
        self.stop = threading.Event()
        self.first_frame_at = 0.0  # time.time() when the first frame went to the encoder

    def decode(self, batch_size: int) -> None:
        task = self.task
        try:
            clock = time.thread_time()
            frames = decode_chunk(task.input.reader(), task.video_index, task.chunk, task.input.name)
            for batch in _batches(frames, batch_size):
                self.timers["decode"] += time.thread_time() - clock
                if not _put(self.decoded, batch, self.stop):
                    return
                clock = time.thread_time()
        except BaseException as exc:  # noqa: BLE001 - handed to the scoring thread, raised there
            self.failures.append(exc)
        finally:
            _put(self.decoded, _DONE, self.stop)

    def encode(self) -> None:
        try:
            while (item := self.restyled.get()) is not _DONE:
                clock = time.thread_time()
                stamps, frames = item
                for (pts, duration), frame in zip(stamps, frames, strict=False):
                    self.writer.write(frame, pts, duration)
                    self.first_frame_at = self.first_frame_at or time.time()
                self.timers["encode"] += time.thread_time() - clock
                if self.on_frames:
                    self.on_frames(len(frames))
        except BaseException as exc:  # noqa: BLE001 - anything, even an interrupt: handed to the caller's thread
            self.failures.append(exc)
            self.stop.set()
            while self.restyled.get() is not _DONE:  # drain so the scoring thread never blocks
                pass

    def score(self, model: Model, spec: JobSpec, producer: threading.Thread) -> None:
        """The model's thread: predict each batch, blend and smooth it, drop the lead-in, hand it to the writer."""
        params = params_of(spec)
        smoother = Deflicker(spec.deflicker) if spec.deflicker > 0 and self.task.part.smooths else None
        start_pts = self.task.chunk.start_pts
        while (item := _get(self.decoded, self.stop, producer)) is not _DONE:
            if self.stop.is_set():
                continue  # a side thread failed: drain the decoder, then report
            stamps, frames = item
            clock = time.thread_time()
            out = with_strength(frames, model.predict(frames, params), spec.strength)
            self.timers["infer"] += time.thread_time() - clock
            if smoother is not None:
                clock = time.thread_time()
                out = smoother(frames, out)
                self.timers["smooth"] += time.thread_time() - clock
            keep = [i for i, (pts, _) in enumerate(stamps) if pts >= start_pts]
            if len(keep) < len(stamps):  # the lead-in: it warmed the smoother up, it is not ours to store
                stamps, out = [stamps[i] for i in keep], [out[i] for i in keep] if isinstance(out, list) else out[keep]
            if stamps:
                self.restyled.put((stamps, out))


def with_strength(frames: np.ndarray, out: np.ndarray | Records, strength: float) -> np.ndarray | Records:
    """The strength post-process: mix the original frames back in (resized first where the model scales)."""
    if strength >= 1.0 or not isinstance(out, np.ndarray):
        return out
    if out.shape[1:3] != frames.shape[1:3]:
        size = (out.shape[2], out.shape[1])
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) for f in frames])
    return blend(frames, out, strength)


def _batches(
    frames: Iterator[tuple[int, int, np.ndarray]], size: int
) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:
    stamps: list[tuple[int, int]] = []
    images: list[np.ndarray] = []
    for pts, duration, rgb in frames:
        stamps.append((pts, duration))
        images.append(rgb)
        if len(images) == size:
            yield stamps, np.stack(images)
            stamps, images = [], []
    if images:
        yield stamps, np.stack(images)


def _get(q: queue.Queue, stop: threading.Event, producer: threading.Thread) -> object:
    """The next item; _DONE once the chunk is abandoned and its producer has stopped.

    A producer told to stop may give up handing over its _DONE (the queue was full and
    nobody was sure to empty it): waiting for it then would wait forever.
    """
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set() and not producer.is_alive():
                return _DONE


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless the chunk is being abandoned; never block forever."""
    while not stop.is_set() or item is _DONE:
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            if item is _DONE and stop.is_set():
                return False
    return False
