"""How a run gets its engine, and gives the spec's files to it (videos and folders alike)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from restyle.config import Settings
from restyle.engines import Engine, make_engine
from restyle.files import FileRef
from restyle.handlers.base import Handler
from restyle.jobspec import JobSpec

Engines = Engine | Callable[[int], Engine]  # an engine, or what gives one for a number of workers (kept by the caller)


@contextmanager
def engine_for(settings: Settings, workers: int, given: Engines | None = None) -> Iterator[Engine]:
    """The engine to run on: the one given (or the given factory's), left open; else one made here, closed after."""
    if callable(given):  # the caller's pools by worker count (a service worker's): the caller closes them
        given = given(workers)
    if given is not None:
        yield given
        return
    engine = make_engine(settings, workers)
    try:
        yield engine
    finally:
        engine.close()


def shared_files(spec: JobSpec, handler: Handler, engine: Engine) -> dict[str, FileRef]:
    """The spec's per-call files (the handler's ``file_fields``, less its weights, which the engine loads)
    by reference."""
    weights = handler.load_spec(spec).weights
    named = {f: getattr(spec, f) for f in handler.file_fields if getattr(spec, f)}
    return {f: engine.share(Path(path)) for f, path in named.items() if not _same_file(path, weights)}


def _same_file(path: str, weights: str | None) -> bool:
    return weights is not None and Path(path).resolve() == Path(weights).resolve()
