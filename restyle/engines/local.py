"""The local engine: a pool of worker processes on this machine, each keeping its loaded models.

The pool outlives a single ``map``: a service worker runs job after job on it, and a
worker that already holds the network a job needs (the same LoadSpec: the 26-style
network serves every style and blend) does not load it again. Each worker keeps at
most ``max_models`` models, dropping the least recently used.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from restyle.engines.base import Item, Result, TaskFunction, worker_runtime
from restyle.errors import RestyleError
from restyle.files import LocalFile
from restyle.handlers.base import LoadSpec, Model, load_model
from restyle.runtime import Runtime

DEFAULT_MAX_MODELS = 2


class LocalEngine:
    """Runs items on ``workers`` processes (in this process when there is one)."""

    remote = False  # every worker is on this machine

    def __init__(self, workers: int = 1, max_models: int = DEFAULT_MAX_MODELS):
        self.workers = max(1, workers)
        bound_heap()  # this process runs models when there is one worker (or one item)
        self.redone = 0  # a lost local worker fails the run instead (finished chunks are kept for the next)
        self.loads = 0
        self._models = ModelCache(max_models)  # the in-process worker's, when workers == 1
        self._max_models = max_models
        self._pool: ProcessPoolExecutor | None = None
        self._progress: Any = None
        self._listener: Callable[[int], None] = lambda frames: None
        self._drain: threading.Thread | None = None
        self._pids: set[int] = set()  # the pool's processes, as each says when it starts (to stop them at once)
        self._lock = threading.Lock()

    def map(
        self,
        fn: TaskFunction,
        load: LoadSpec,
        runtime: Runtime,
        items: Sequence[Item],
        on_frames: Callable[[int], None] | None = None,
    ) -> Iterator[Result]:
        report = on_frames or (lambda n: None)
        if self.workers == 1 or len(items) <= 1:
            for item in items:
                result, loaded = _run(fn, load, runtime, item, self._models, report)
                self.loads += loaded
                yield result
            return
        yield from self._pool_map(fn, load, runtime, items, report)

    def share(self, path: Path) -> LocalFile:
        return LocalFile(str(path))

    def _pool_map(self, fn, load, runtime, items, report) -> Iterator[Any]:
        with self._lock:  # one map at a time feeds the progress listener
            pool = self._start()
            self._listener = report
            try:
                pending: list[Future] = [pool.submit(_run_item, fn, load, runtime, item) for item in items]
                for future in as_completed(pending):  # each chunk as it finishes: live progress
                    result, loaded = future.result()
                    self.loads += loaded
                    yield result
            except BrokenProcessPool:
                self.close()
                raise RestyleError(
                    "a worker process died (killed, or out of memory?); finished chunks are kept, run again to resume"
                ) from None
            except BaseException:
                # Ctrl-C, a failed item or an abandoned run: stop now rather than after the chunks in flight.
                self.close(kill=True)
                raise
            finally:
                self._listener = lambda frames: None

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no forked onnxruntime or PyAV state
            self._progress = context.Queue()
            self._drain = threading.Thread(target=self._forward, args=(self._progress,), daemon=True)
            self._drain.start()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self._progress, self._max_models),
            )
        return self._pool

    def _forward(self, progress: Any) -> None:
        while True:
            try:
                frames = progress.get()
            except (EOFError, OSError, ValueError):
                return
            if frames is None:
                return
            if isinstance(frames, tuple):  # ("started", pid): a worker process is up
                self._pids.add(frames[1])
                continue
            self._listener(frames)

    def close(self, kill: bool = False) -> None:
        """Stop the workers (and drop their models); the next map starts new ones."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            for pid in self._pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        pool.shutdown(wait=True, cancel_futures=True)
        self._pids = set()
        self._progress.put(None)
        if self._drain is not None:
            self._drain.join(timeout=5)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


# A loaded model keeps the working set of the largest frames it ran: its runtime keeps the buffers (after one
# 4096x2304 frame the 26-style network held 1.8 GiB, idle or running 640x360 frames after; issue 21). A worker's
# budget (restyle/engines/sizing.py) counts one model's working set, for the frames at hand. So after each item a model
# that ran frames over KEEP_PIXELS is let go (loading it again takes ~0.3 s, against a minute or more for a chunk
# of such frames); smaller ones stay loaded between items and jobs, side by side, up to ``max_models``.
KEEP_PIXELS = 640 * 360


MMAP_THRESHOLD = 4 * 1024**2  # allocations from this size up get their own mapping, returned to the system when freed
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def bound_heap() -> None:
    """Have big allocations (a 4096x2304 frame is 28 MB) mapped apart and unmapped when freed. glibc's threshold
    otherwise rises to 32 MB after the first such free, and the decode, model and encode threads' arenas keep
    the frames' memory: 0.1 GiB more, kept after a deflickered 4096x2304 chunk, in every job after it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc
            ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_heap() -> None:
    """Give freed heap back to the system. Frames of big pictures (28 MB at 4096x2304) come from glibc's arenas
    once its mmap threshold has risen, and stay there after they are freed: 0.2 GiB kept after a deflickered
    4096x2304 chunk, which the next job's budget does not count."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class ModelCache:
    """Loaded models by (LoadSpec, Runtime), at most ``size``, least recently used dropped first; :meth:`trim`
    lets go of those that hold the working set of frames over KEEP_PIXELS."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._models: OrderedDict[tuple[LoadSpec, Runtime], Model] = OrderedDict()
        self._pixels: dict[tuple[LoadSpec, Runtime], int] = {}  # the largest frames each model was got for

    def get(self, load: LoadSpec, runtime: Runtime, pixels: int = 0) -> tuple[Model, bool]:
        """The model for an item whose frames have ``pixels`` (0: unknown), and whether it had to be loaded now."""
        key = (load, runtime)
        if key in self._models:
            self._models.move_to_end(key)
            self._pixels[key] = max(self._pixels[key], pixels)
            return self._models[key], False
        while len(self._models) >= self.size:
            self._drop(next(iter(self._models)))
        self._models[key] = model = load_model(load, runtime)
        self._pixels[key] = pixels
        return model, True

    def trim(self) -> None:
        """Let go of the models whose working set is for frames over KEEP_PIXELS
        (unknown sizes stay: images in a folder)."""
        dropped = False
        for key, pixels in list(self._pixels.items()):
            if pixels > KEEP_PIXELS:
                self._drop(key)
                dropped = True
        if dropped:
            release_heap()

    def _drop(self, key: tuple[LoadSpec, Runtime]) -> None:
        del self._models[key], self._pixels[key]
        gc.collect()  # a model caught in a reference cycle would keep its memory until the collector came by


_cache: ModelCache | None = None
_progress: Any = None


def _start_worker(progress: Any, max_models: int) -> None:
    global _cache, _progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    die_with_parent()
    bound_heap()
    _cache, _progress = ModelCache(max_models), progress
    progress.put(("started", os.getpid()))


def _run_item(fn: TaskFunction, load: LoadSpec, runtime: Runtime, item: Item) -> tuple[Result, bool]:
    assert _cache is not None, "worker started without its initializer"
    return _run(fn, load, runtime, item, _cache, _progress.put)


def _run(
    fn: TaskFunction, load: LoadSpec, runtime: Runtime, item: Item, cache: ModelCache, report: Callable[[int], None]
) -> tuple[Result, bool]:
    """One item in this process: its model from the cache, the result stamped with the runtime this worker chose."""
    model, loaded = cache.get(load, runtime, item.pixels)
    try:
        result = fn(item, model, runtime.frames_per_call, report)
    finally:
        del model  # only the cache may hold it, so that trim frees it
        cache.trim()
    return result.ran_on("", worker_runtime(load, runtime), 0), loaded


def die_with_parent(parent: int | None = None) -> None:
    """On Linux, have the kernel kill this process when its parent dies (kill -9 leaves no orphans).

    With ``parent``, a parent that died before this call is caught too: the process exits now.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:
        os._exit(1)
