"""The engine interface: what the pipeline may ask of any place that runs work, and what it tells an engine.

An engine learns what it needs of the work through two small declared interfaces, never
by guessing: an :class:`Item` says how big its frames are (workers size their memory by
it), a :class:`Result` how many frames it made and takes the worker's facts (``ran_on``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from restyle.errors import Cancelled
from restyle.files import FileRef
from restyle.handlers.base import LoadSpec, Model, get_handler
from restyle.runtime import Runtime


class Item(Protocol):
    """One piece of work an engine hands a worker.

    It may also say ``units``, the frames it makes (a chunk's frames, a mini-batch's images): its deadline
    is then made from the measured seconds per frame (:mod:`restyle.engines.deadline`), else it gets the
    floor alone; ``label``, what messages call it ("chunk 3"); and ``fidelity_cases``, the cases of the
    fidelity table its job runs (the precision a worker runs it at is chosen for them). Read through
    :func:`units_of`, :func:`label_of` and :func:`cases_of`.
    """

    @property
    def pixels(self) -> int:
        """One frame's pixels its model runs (0: unknown until the worker reads it, e.g. an image file)."""
        ...


def units_of(item: Item) -> int:
    """The frames ``item`` makes, if it says (0: unknown)."""
    return int(getattr(item, "units", 0) or 0)


def cases_of(item: Item) -> tuple[str, ...] | None:
    """The fidelity table's cases ``item``'s job runs (its ``fidelity_cases``, a style's), if it says: its
    precision is chosen for them (None: for the whole network)."""
    return getattr(item, "fidelity_cases", None)


def label_of(item: Item, index: int) -> str:
    """What messages call ``item``, the ``index``-th of its map: its ``label``, else "item 3"."""
    return str(getattr(item, "label", "") or f"item {index}")


class Result(Protocol):
    """What a task function gives back for an item."""

    frames: int  # frames it made (the engine's progress)

    def ran_on(self, node: str, runtime: str, bytes_in: int) -> Result:
        """This result with its worker's facts: its node ("": this machine), its runtime ("openvino bf16"),
        the bytes it fetched for the item."""
        ...


# fn(item, model, frames_per_call, on_frames) -> result; must be importable (workers pickle it by name).
TaskFunction = Callable[[Any, Model, int, Callable[[int], None]], Result]


def stop_at_cancel(report: Callable[[int], None], cancelled: Callable[[], bool]) -> Callable[[int], None]:
    """``report``, which raises :class:`Cancelled` once ``cancelled()`` says so: a task function reports after
    each frame batch, so a cancelled task stops within one batch, wherever it runs."""

    def checked(frames: int) -> None:
        report(frames)
        if cancelled():
            raise Cancelled("cancelled")

    return checked


def worker_runtime(load: LoadSpec, runtime: Runtime, cases: tuple[str, ...] | None = None) -> str:
    """What a worker runs ``load``'s model on for a job's ``cases`` (a style's), as it chooses on its own
    machine: ``openvino int8``."""
    return runtime.choose(get_handler(load.handler).network, cases).runtime


class Engine(Protocol):
    workers: int
    redone: int  # items given out again because their worker was lost or stuck, since the engine was made
    loads: int  # models loaded by its workers, since the engine was made (a kept model is not loaded again)
    remote: bool  # may its workers be on machines that do not share this one's disk?

    def share(self, path: Path) -> FileRef:
        """A reference through which this engine's workers, wherever they are, read the file at ``path`` here."""
        ...

    def map(
        self,
        fn: TaskFunction,
        load: LoadSpec,
        runtime: Runtime,
        items: Sequence[Item],
        on_frames: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Result]:
        """Run ``fn`` on every item with the model ``load`` names, loaded once per worker and kept
        (by LoadSpec, a bounded number) for later maps; yield results as they finish.

        Once ``cancel`` is set, items not begun are not begun and those running stop at their next report
        (``on_frames``: a frame batch); results finished before are still yielded, then the map raises
        :class:`restyle.errors.Cancelled`. The workers stay up for the next map."""
        ...

    def warm(self, load: LoadSpec, runtime: Runtime) -> None:
        """Start the workers and have each load ``load``'s model, without waiting for them: the caller goes on
        (reading its inputs) meanwhile, and its first map finds them ready. A hint: an engine may do nothing."""
        ...

    def close(self) -> None:
        """Let go of the workers this engine started (a pool's processes); kept models go with them."""
        ...
