"""The local engine: a pool of worker processes on this machine, one model session each."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from restyle.engines.base import TaskFunction
from restyle.errors import RestyleError
from restyle.handlers.base import Model, ModelSpec, load_model
from restyle.runtime import Runtime


class LocalEngine:
    """Runs items on ``workers`` processes (in this process when there is one)."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)
        self.redone = 0  # a lost local worker fails the run instead (finished chunks are kept for the next)

    def map(
        self,
        fn: TaskFunction,
        spec: ModelSpec,
        runtime: Runtime,
        items: Sequence[Any],
        on_frames: Callable[[int], None] | None = None,
    ) -> Iterator[Any]:
        report = on_frames or (lambda n: None)
        if self.workers == 1 or len(items) <= 1:
            model = load_model(spec, runtime)
            for item in items:
                yield fn(item, model, runtime.frames_per_call, report)
            return
        yield from self._pool_map(fn, spec, runtime, items, report)

    def _pool_map(self, fn, spec, runtime, items, report) -> Iterator[Any]:
        context = multiprocessing.get_context("spawn")  # no forked onnxruntime or PyAV state
        progress = context.Queue()
        drain = threading.Thread(target=_forward, args=(progress, report), daemon=True)
        drain.start()
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(items)),
            mp_context=context,
            initializer=_start_worker,
            initargs=(spec, runtime, progress),
        )
        try:
            pending: set[Future] = {pool.submit(_run_item, fn, item) for item in items}
            while pending:
                # Each result as soon as it is there (a service shows chunks as they finish); a failure too.
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool:
            raise RestyleError(
                "a worker process died (killed, or out of memory?); finished chunks are kept, run again to resume"
            ) from None
        except BaseException:
            # Ctrl-C or a failed item: stop now rather than after the chunks in flight.
            for child in multiprocessing.active_children():
                child.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            progress.put(None)
            drain.join()


_model: Model | None = None
_load_error: RestyleError | None = None
_batch = 1
_progress: Any = None


def _start_worker(spec: ModelSpec, runtime: Runtime, progress: Any) -> None:
    global _model, _load_error, _batch, _progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    die_with_parent()
    _batch, _progress = runtime.frames_per_call, progress
    try:
        _model = load_model(spec, runtime)
    except RestyleError as exc:  # raised again with the first item, so the caller sees the reason
        _load_error = exc


def _run_item(fn: TaskFunction, item: Any) -> Any:
    if _model is None:
        raise _load_error or RestyleError("worker started without its model")
    return fn(item, _model, _batch, _progress.put)


def _forward(progress: Any, report: Callable[[int], None]) -> None:
    while (frames := progress.get()) is not None:
        report(frames)


def die_with_parent(parent: int | None = None) -> None:
    """On Linux, have the kernel kill this process when its parent dies (kill -9 leaves no orphans).

    With ``parent``, a parent that died before this call is caught too: the process exits now.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)
