"""Score one chunk: decode -> batch -> model -> encode its segment, the three overlapped.

Decoding and encoding run in threads beside the model (PyAV and onnxruntime release
the GIL), joined by small bounded queues: the model never waits for a frame, and memory
holds a few frames whatever the chunk's length. This is the function every engine runs.

A records model (a detector) writes one JSON line per frame into the chunk's part
instead of encoding a segment; everything else is the same.

With a deflicker, each restyled batch is smoothed against the frames before it (in the
model's thread: the state runs frame to frame), starting from the chunk's lead-in
frames, which are scored but not encoded.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from restyle.deflicker import Deflicker
from restyle.files import FileRef, localized
from restyle.media.chunks import Chunk
from restyle.media.decode import decode_chunk
from restyle.handlers.base import Model, OutputKind
from restyle.jobspec import JobSpec
from restyle.media.encode import EncodeSpec, SegmentWriter
from restyle.records import RecordsWriter
from restyle.stores.segments import SegmentStore

QUEUE_BATCHES = 2  # batches in flight on each side of the model
_DONE = object()


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to score one chunk, wherever it runs.

    No path of the scheduler's machine: the input and the spec's files are references the
    engine made (:mod:`restyle.files`), that open on the worker's machine. The worker stores
    the segment itself (``segments.keep``) where it can reach the store; else the segment's
    bytes go back with the result (:class:`restyle.stores.segments.CarriedSegments`).
    """

    input: FileRef
    video_index: int
    chunk: Chunk
    encode: EncodeSpec  # for records, only its time base is used
    segments: SegmentStore
    segment_name: str
    spec: JobSpec  # the model's per-call parameters (style, strength, picture...) and the deflicker
    records: bool = False  # the model outputs records: write a JSON Lines part, not a video segment
    files: dict[str, FileRef] = field(default_factory=dict)  # the spec's fields that name files (style_image)


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
    node: str = ""  # where it ran, and on what runtime: set by an engine whose workers are on several machines
    runtime: str = ""
    bytes_in: int = 0  # bytes the worker fetched for it from elsewhere (shipped input, picture, weights)


def score_chunk(task: ChunkTask, model: Model, batch_size: int, on_frames: Callable[[int], None] | None = None) -> ChunkResult:
    """Restyle ``task.chunk`` with ``model`` and store its segment; return its figures."""
    started = time.perf_counter()
    spec = localized(task.spec, task.files)
    decoded: queue.Queue = queue.Queue(QUEUE_BATCHES)
    restyled: queue.Queue = queue.Queue(QUEUE_BATCHES)
    timers = {"decode": 0.0, "encode": 0.0}
    failures: list[BaseException] = []
    stop = threading.Event()

    def decode() -> None:
        try:
            clock = time.thread_time()
            for batch in _batches(decode_chunk(task.input.reader(), task.video_index, task.chunk, task.input.name), batch_size):
                timers["decode"] += time.thread_time() - clock
                if not _put(decoded, batch, stop):
                    return
                clock = time.thread_time()
        except BaseException as exc:  # noqa: BLE001 - handed to the scoring thread, raised there
            failures.append(exc)
        finally:
            _put(decoded, _DONE, stop)

    path = task.segments.local_path(task.segment_name)
    writer: SegmentWriter | RecordsWriter = (
        RecordsWriter(path, task.encode.time_base, task.chunk.first_frame) if task.records
        else SegmentWriter(path, task.encode, task.chunk.start_pts)
    )

    def encode() -> None:
        try:
            while (item := restyled.get()) is not _DONE:
                clock = time.thread_time()
                stamps, frames = item
                for (pts, duration), frame in zip(stamps, frames):
                    writer.write(frame, pts, duration)
                timers["encode"] += time.thread_time() - clock
                if on_frames:
                    on_frames(len(frames))
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)
            stop.set()
            while restyled.get() is not _DONE:  # drain so the scoring thread never blocks
                pass

    threads = [threading.Thread(target=decode, daemon=True), threading.Thread(target=encode, daemon=True)]
    for thread in threads:
        thread.start()
    infer_s = smooth_s = 0.0
    smoother = Deflicker(spec.deflicker) if spec.deflicker > 0 and not task.records else None
    error: BaseException | None = None
    try:
        while (item := _get(decoded, stop, threads[0])) is not _DONE:
            if stop.is_set():
                continue  # a side thread failed: drain the decoder, then report
            stamps, frames = item
            clock = time.thread_time()
            out = model.predict(frames, spec)
            infer_s += time.thread_time() - clock
            if smoother is not None:
                clock = time.thread_time()
                out = smoother(frames, out)
                smooth_s += time.thread_time() - clock
            keep = [i for i, (pts, _) in enumerate(stamps) if pts >= task.chunk.start_pts]
            if len(keep) < len(stamps):  # the lead-in: it warmed the smoother up, it is not ours to store
                stamps, out = [stamps[i] for i in keep], [out[i] for i in keep] if isinstance(out, list) else out[keep]
            if stamps:
                restyled.put((stamps, out))
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the threads are down
        error = exc
        stop.set()
    finally:
        restyled.put(_DONE)
        for thread in threads:
            thread.join()
    error = error or (failures[0] if failures else None)
    if error is not None:
        writer.abort()
        raise error
    writer.close()
    carried = task.segments.keep(task.segment_name)
    return ChunkResult(
        index=task.chunk.index,
        frames=writer.frames,
        decode_s=timers["decode"],
        infer_s=infer_s,
        encode_s=timers["encode"],
        smooth_s=smooth_s,
        wall_s=time.perf_counter() - started,
        segment_name=task.segment_name,
        segment=carried,
    )


def _batches(frames: Iterator[tuple[int, int, np.ndarray]], size: int) -> Iterator[tuple[list[tuple[int, int]], np.ndarray]]:
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
