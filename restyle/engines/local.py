"""The local engine: a pool of worker processes on this machine, each keeping its loaded models.

The pool outlives a single ``map``: a service worker runs job after job on it, and a
worker that already holds the network a job needs (the same LoadSpec: the 26-style
network serves every style and blend) does not load it again. Each worker keeps at
most ``max_models`` models, dropping the least recently used.

A task that makes no progress past its deadline (:mod:`restyle.engines.deadline`) has its
worker killed. That breaks the pool (a process pool cannot lose one process), so the pool
starts again: the tasks it had out that did not finish are given out again, the stuck one
counted as a try, up to ``max_retries``. One worker runs in this process, where nothing
can cut a stuck call short: no deadline there.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from restyle.engines.base import (
    Item,
    Result,
    TaskFunction,
    cases_of,
    label_of,
    stop_at_cancel,
    units_of,
    worker_runtime,
)
from restyle.engines.deadline import Deadlines, Stall, StallLimits
from restyle.engines.heap import bound_heap, release_heap
from restyle.errors import Cancelled, RestyleError
from restyle.files import LocalFile
from restyle.handlers.base import LoadSpec, Model, load_model
from restyle.runtime import Runtime

log = logging.getLogger("restyle")

DEFAULT_MAX_MODELS = 2
TICK_S = 1.0  # how often a map looks for stuck tasks
CANCEL_POLL_S = 0.1  # how often a map that may be cancelled looks at its cancel


class LocalEngine:
    """Runs items on ``workers`` processes (in this process when there is one)."""

    remote = False  # every worker is on this machine

    def __init__(
        self,
        workers: int = 1,
        max_models: int = DEFAULT_MAX_MODELS,
        max_retries: int = 3,
        stall: StallLimits | None = None,
        isolated: bool = False,
    ):
        self.workers = max(1, workers)
        # Isolated: every task in a worker process, even with one worker or one task, so that a stuck one can be
        # killed (a call stuck in this process cannot be): a service's worker, whose pool outlives its jobs.
        self.isolated = isolated
        bound_heap()  # this process runs models when there is one worker (or one item)
        # Given out again after their worker was killed stuck. A worker lost otherwise fails the run
        # (killed, or out of memory: it would be again); finished chunks are kept for the next.
        self.redone = 0
        self.loads = 0
        self.max_retries, self.stall = max_retries, stall or StallLimits()
        self._models = ModelCache(max_models)  # the in-process worker's, when workers == 1
        self._max_models = max_models
        self._pool: ProcessPoolExecutor | None = None
        self._progress: Any = None
        self._stop: Any = None  # shared with the pool: the number of the map its workers are to stop
        self._watch: _Watch | None = None  # the map the pool's reports are for
        self._maps = 0
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
        cancel: threading.Event | None = None,
    ) -> Iterator[Result]:
        report = on_frames or (lambda n: None)
        if not self.isolated and (self.workers == 1 or len(items) <= 1):
            stopped = cancel.is_set if cancel is not None else lambda: False
            for item in items:
                if stopped():
                    raise Cancelled("cancelled")
                result, loaded = _run(fn, load, runtime, item, self._models, stop_at_cancel(report, stopped))
                self.loads += loaded
                yield result
            return
        yield from self._pool_map(fn, load, runtime, items, report, cancel)

    def warm(self, load: LoadSpec, runtime: Runtime) -> None:
        if not self.isolated and self.workers == 1:
            return  # the model loads in this process: loading it now would only make the caller wait
        pool = self._start()
        for _ in range(self.workers):  # an idle worker takes one each: every worker loads while the caller goes on
            pool.submit(_warm_worker, load, runtime)

    def share(self, path: Path) -> LocalFile:
        return LocalFile(str(path))

    def _pool_map(self, fn, load, runtime, items, report, cancel: threading.Event | None) -> Iterator[Any]:
        with self._lock:  # one map at a time feeds the progress listener
            self._maps += 1
            watch = self._watch = _Watch(self._maps, items, report, Deadlines(self.stall))
            todo, tries = list(range(len(items))), Counter[int]()
            tick = TICK_S if cancel is None else CANCEL_POLL_S
            try:
                while todo:
                    pool = self._start()
                    pending = {pool.submit(_run_item, fn, load, runtime, items[i], (watch.map, i)): i for i in todo}
                    todo = []
                    while pending:
                        done, _ = wait(pending, timeout=tick, return_when=FIRST_COMPLETED)
                        if cancel is not None and cancel.is_set():
                            yield from self._wind_down(watch, pending)
                        for future in done:  # each chunk as it finishes: live progress
                            yield self._finished(watch, pending.pop(future), future)
                        if stalled := watch.deadlines.stuck():
                            self._stop_stuck(watch, stalled, tries)  # the pool with them
                            yield from (self._finished(watch, i, f) for f, i in pending.items() if _succeeded(f))
                            todo = [i for f, i in pending.items() if not _succeeded(f)]
                            self.redone += sum(i in watch.holders for i in todo)  # those that had begun
                            watch.restart(todo)
                            break
            except Cancelled:  # every task has stopped: the workers stay up, with their models, for the next map
                raise
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
                self._watch = None

    def _wind_down(self, watch: _Watch, pending: dict[Future, int]) -> Iterator[Result]:
        """A cancelled map: its workers told to stop (those running stop at their next frame batch, the others
        never begin), the results that finished meanwhile yielded, then :class:`Cancelled`."""
        self._stop.value = watch.map
        while pending:
            done, _ = wait(pending, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
            if not done and watch.deadlines.stuck():  # a stuck task hears nothing: its worker goes, with the pool
                self.close(kill=True)
                break
            for future in done:
                index = pending.pop(future)
                if future.cancelled() or isinstance(future.exception(), Cancelled):
                    continue
                yield self._finished(watch, index, future)  # finished before it heard, or failed: as it ended
        raise Cancelled("cancelled")

    def _finished(self, watch: _Watch, index: int, future: Future) -> Result:
        """The result of a finished task, whose frames its worker's reports did not bring yet are counted now."""
        result, loaded = future.result()
        self.loads += loaded
        watch.tell(watch.deadlines.finish(index, result.frames))
        return result

    def _stop_stuck(self, watch: _Watch, stalled: list[Stall], tries: Counter[int]) -> None:
        """Kill the workers of the stuck tasks, and so the pool; fail a task stuck once too often."""
        for stall in stalled:
            tries[stall.index] += 1
            label, pid = label_of(watch.items[stall.index], stall.index), watch.holders.get(stall.index)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # stuck in a call: only SIGKILL is sure to end it
            if tries[stall.index] > self.max_retries:
                log.error("%s; giving up", stall.reason(label, tries[stall.index]))
                raise RestyleError(stall.reason(label, tries[stall.index]))
            log.warning("%s; killed its worker (pid %s), running it again", stall.what(label), pid)
        self.close(kill=True)

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no forked onnxruntime or PyAV state
            self._progress = context.Queue()
            self._stop = context.Value("q", 0, lock=False)  # one word, written here only: no lock needed
            self._drain = threading.Thread(target=self._forward, args=(self._progress,), daemon=True)
            self._drain.start()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(self._progress, self._stop, self._max_models),
            )
        return self._pool

    def _forward(self, progress: Any) -> None:
        while True:
            try:
                message = progress.get()
            except (EOFError, OSError, ValueError):
                return
            if message is None:
                return
            if message[0] == "started":  # ("started", pid): a worker process is up
                self._pids.add(message[1])
            elif (watch := self._watch) is not None:  # ("begin" | "frames", (map, index), pid | frames)
                watch.heard(*message)

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


class _Watch:
    """One pool map as its workers report it: each task's deadline, the process on it, the frames to pass on."""

    def __init__(self, map: int, items: Sequence[Item], report: Callable[[int], None], deadlines: Deadlines):
        self.map, self.items, self.report, self.deadlines = map, items, report, deadlines
        self.holders: dict[int, int] = {}  # task index -> the pid of the worker on it
        self._telling = threading.Lock()  # the listener hears the reports' thread and the map's

    def heard(self, kind: str, task: tuple[int, int], value: int) -> None:
        map, index = task
        if map != self.map:  # a late word from an earlier map's worker
            return
        if kind == "begin":
            self.holders[index] = value
            self.deadlines.begin(index, units_of(self.items[index]))
        else:
            self.tell(self.deadlines.progress(index, value))

    def tell(self, frames: int) -> None:
        if frames:
            with self._telling:
                self.report(frames)

    def restart(self, todo: list[int]) -> None:
        """The pool is gone: no worker is on these tasks until they begin again."""
        for index in todo:
            self.holders.pop(index, None)
            self.deadlines.finish(index)


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


_cache: ModelCache | None = None
_progress: Any = None
_stop: Any = None  # the number of the map to stop (a shared value the parent writes)


def _start_worker(progress: Any, stop: Any, max_models: int) -> None:
    global _cache, _progress, _stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    die_with_parent()
    bound_heap()
    _cache, _progress, _stop = ModelCache(max_models), progress, stop
    progress.put(("started", os.getpid()))
    multiprocessing.util.Finalize(None, _exit_without_teardown, exitpriority=-100)  # after the queues' (-5)


def _exit_without_teardown() -> None:
    """A worker's last act, once its results and reports are flushed: leave without Python's teardown of what it
    loaded (OpenVINO's compiled networks and threads: 0.1 s at the end of every run, which waits for it). Not while
    an exception is on its way out: that worker exits as Python would, with its traceback and status."""
    if sys.exc_info()[0] is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _warm_worker(load: LoadSpec, runtime: Runtime) -> None:
    """Load the model into this worker's cache (a map's first task then finds it); a model that cannot load
    fails that map in its turn, with the reason."""
    assert _cache is not None, "worker started without its initializer"
    with contextlib.suppress(Exception):
        _cache.get(load, runtime)


def _run_item(
    fn: TaskFunction, load: LoadSpec, runtime: Runtime, item: Item, task: tuple[int, int]
) -> tuple[Result, bool]:
    """One item in a pool worker; it says when it begins (and in which process) and each frame it makes, and
    stops (:class:`Cancelled`) at the next report once its map is to stop."""
    assert _cache is not None, "worker started without its initializer"
    if _stop.value == task[0]:
        raise Cancelled("cancelled")
    _progress.put(("begin", task, os.getpid()))
    report = stop_at_cancel(lambda frames: _progress.put(("frames", task, frames)), lambda: _stop.value == task[0])
    return _run(fn, load, runtime, item, _cache, report)


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
    return result.ran_on("", worker_runtime(load, runtime, cases_of(item)), 0), loaded


def die_with_parent(parent: int | None = None) -> None:
    """On Linux, have the kernel kill this process when its parent dies (kill -9 leaves no orphans).

    With ``parent``, a parent that died before this call is caught too: the process exits now.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:
        os._exit(1)
