"""The engine interface: what the pipeline may ask of any place that runs work."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from restyle.files import FileRef

from restyle.handlers.base import LoadSpec, Model
from restyle.runtime import Runtime

# fn(item, model, frames_per_call, on_frames) -> result; must be importable (workers pickle it by name).
TaskFunction = Callable[[Any, Model, int, Callable[[int], None]], Any]


class Engine(Protocol):
    workers: int
    redone: int  # items given out again because their worker was lost, since the engine was made
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
        items: Sequence[Any],
        on_frames: Callable[[int], None] | None = None,
    ) -> Iterator[Any]:
        """Run ``fn`` on every item with the model ``load`` names, loaded once per worker and kept
        (by LoadSpec, a bounded number) for later maps; yield results as they finish."""
        ...

    def close(self) -> None:
        """Let go of the workers this engine started (a pool's processes); kept models go with them."""
        ...
