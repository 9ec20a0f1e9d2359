"""The engine interface: what the pipeline may ask of any place that runs work."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from restyle.handlers.base import Model, ModelSpec
from restyle.runtime import Runtime

# fn(item, model, frames_per_call, on_frames) -> result; must be importable (workers pickle it by name).
TaskFunction = Callable[[Any, Model, int, Callable[[int], None]], Any]


class Engine(Protocol):
    workers: int
    redone: int  # items given out again because their worker was lost, since the engine was made

    def map(
        self,
        fn: TaskFunction,
        spec: ModelSpec,
        runtime: Runtime,
        items: Sequence[Any],
        on_frames: Callable[[int], None] | None = None,
    ) -> Iterator[Any]:
        """Run ``fn`` on every item, the model loaded once per worker; yield results as they finish."""
        ...
