"""The handler interface: how restyle loads a model and scores a batch of frames with it.

In the spirit of Apache Beam's ``ModelHandler``: a handler knows how to *load* a model
(once per worker, kept for every chunk and every job that needs the same weights) and
how to *predict* a batch of frames with per-call parameters (the job's :class:`JobSpec`:
its style, strength, picture...), and it declares what comes out: frames the size of the
input, frames of another size (super-resolution), or records (detections per frame).
Nothing else: where it runs is the engine's business, what happens to the output is the
pipeline's.

Handlers are found by name in the ``restyle.handlers`` entry point group; restyle's own
(``styles``, ``style-image``, ``onnx``, ``yolo``, ``tensors``) are registered there the same way a
third-party package registers its own::

    [project.entry-points."restyle.handlers"]
    mine = "my_package.handler:MyHandler"
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import numpy as np

from restyle.errors import ModelError
from restyle.jobspec import JobSpec
from restyle.runtime import Runtime

ENTRY_POINT_GROUP = "restyle.handlers"


class OutputKind(StrEnum):
    FRAMES = "frames"  # pictures out (the input's size, or the handler's output_size: super-resolution)
    RECORDS = "records"  # one JSON-able record per frame (detections, labels)


Records = list[dict[str, Any]]  # what a records model returns for a batch: one dict per frame


@dataclass(frozen=True)
class LoadSpec:
    """What a worker loads and keeps: a handler and its weights file. Engines key loaded models by it.

    Per-call parameters (style, strength, style picture...) are not part of it: one loaded
    network serves every job that needs the same weights.
    """

    handler: str
    weights: str | None = None  # a file path; None: the handler's own built-in weights


class Model(Protocol):
    """A loaded model. Made once per worker by :meth:`Handler.load`."""

    description: str
    output: OutputKind

    def predict(self, frames: np.ndarray, params: Any) -> np.ndarray | Records:
        """``frames`` is (N, H, W, 3) uint8 RGB, ``params`` what :meth:`Handler.params` made of the job's spec;
        returns (N, H', W', 3) uint8, or N records. Strength and deflicker are the pipeline's post-processes."""
        ...


class Handler(Protocol):
    """A kind of model: checks a JobSpec at the door, names the weights to load, loads them.

    It also *declares* the facts the rest of restyle would otherwise have to know by its name:
    which network it runs (the fidelity table, memory figures and int8 files are keyed by it),
    which JobSpec fields name files (shipped to workers, localized, hashed into the work key),
    whether the service may register weights files of this kind, its label, and its output size.
    :class:`BaseHandler` gives every one of them a default; third-party handlers subclass it.
    """

    name: ClassVar[str]
    output: ClassVar[OutputKind]
    network: ClassVar[str | None]  # the network's name for fidelity/memory/int8 tables; None: a user's file
    file_fields: ClassVar[tuple[str, ...]]  # JobSpec fields that name files this handler reads
    registrable: ClassVar[bool]  # the service may register weights files of this kind (``restyle models add``)
    built_in_styles: ClassVar[int]  # styles of its own, chosen by ``JobSpec.style`` (the gallery shows them)

    def check(self, spec: JobSpec) -> None:
        """Fail now, with a reason, rather than in every worker later (cheap: no model is loaded)."""
        ...

    def label(self, spec: JobSpec) -> str:
        """What a person reads for this job's model: ``styles:7``, ``style-image:wave.jpg``, ``onnx:x4.onnx``."""
        ...

    def output_size(self, spec: JobSpec, width: int, height: int) -> tuple[int, int]:
        """The size of the pictures out for frames of ``width`` x ``height`` (asked before the encoding is planned)."""
        ...

    def params(self, spec: JobSpec) -> Any:
        """The per-call parameters the model's ``predict`` gets for ``spec`` (made where the model runs)."""
        ...

    def load_spec(self, spec: JobSpec) -> LoadSpec:
        """What to load for ``spec``: engines keep one loaded model per LoadSpec."""
        ...

    def load(self, load: LoadSpec, runtime: Runtime) -> Model:
        """Load the model onto ``runtime``'s device. Raises ModelError with a reason."""
        ...

    def fidelity_cases(self, spec: JobSpec) -> tuple[str, ...] | None:
        """The fidelity table's cases ``spec`` runs (``("style 3", "style 12")``): a precision is chosen for them
        (Runtime.choose); None: the whole network."""
        ...


class BaseHandler:
    """The defaults of every declared fact of a :class:`Handler`: subclass it and override what differs."""

    name: ClassVar[str]
    output: ClassVar[OutputKind] = OutputKind.FRAMES
    network: ClassVar[str | None] = None
    file_fields: ClassVar[tuple[str, ...]] = ()
    registrable: ClassVar[bool] = False
    built_in_styles: ClassVar[int] = 0

    @classmethod
    def recognizes(cls, metadata: Mapping[str, str]) -> bool:
        """Whether a registrable file with this ONNX metadata is of this kind
        (``restyle models add`` with kind auto)."""
        return False

    def check(self, spec: JobSpec) -> None:
        return None

    def label(self, spec: JobSpec) -> str:
        for field in self.file_fields:
            value = getattr(spec, field)
            if value:
                return f"{self.name}:{Path(value).name}"
        return self.name

    def output_size(self, spec: JobSpec, width: int, height: int) -> tuple[int, int]:
        return width, height

    def params(self, spec: JobSpec) -> Mapping[str, Any]:
        """By default the spec's free-form ``params`` (read-only)."""
        return MappingProxyType(dict(spec.params))

    def load_spec(self, spec: JobSpec) -> LoadSpec:
        return LoadSpec(self.name)

    def fidelity_cases(self, spec: JobSpec) -> tuple[str, ...] | None:
        return None


GENERIC_FILE_KIND = "onnx"  # what a registered file is when no registrable handler recognizes it


def kind_for_file(metadata: Mapping[str, str]) -> str:
    """The registrable handler that recognizes a file by its ONNX metadata; the generic image model otherwise."""
    for name, handler in sorted(registered().items()):
        if getattr(handler, "registrable", False) and handler.recognizes(metadata):
            return name
    return GENERIC_FILE_KIND


def built_in_styles_handler() -> str:
    """The handler whose built-in styles a gallery shows: the first that declares any."""
    for name, handler in sorted(registered().items()):
        if getattr(handler, "built_in_styles", 0):
            return name
    raise ModelError("no installed handler has built-in styles")


def file_kinds() -> list[str]:
    """The names of the handlers whose weights files the service may register."""
    return sorted(name for name, handler in registered().items() if getattr(handler, "registrable", False))


@functools.cache
def registered() -> dict[str, type]:
    """Every handler class in the ``restyle.handlers`` entry point group, by name."""
    found: dict[str, type] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[entry.name] = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the built-ins down
            import logging

            logging.getLogger("restyle").warning("handler %s (%s) cannot be loaded: %s", entry.name, entry.value, exc)
    return found


def forget_handlers() -> None:
    """Find the handlers again at the next lookup (after a plugin was installed in this process)."""
    registered.cache_clear()
    _handler_class.cache_clear()


def get_handler(name: str) -> Handler:
    """The handler called ``name``; ModelError naming the known ones if there is none."""
    return _handler_class(name)()


@functools.cache
def _handler_class(name: str) -> type:
    # Only the named entry point is imported: a worker loading one model does not pay for every handler's
    # imports (onnx's alone is a second of start-up); the others are read only to name them in an error.
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            return entry.load()
        except Exception:  # noqa: BLE001 - registered() logs it; the error below names what is usable
            break
    handlers = registered()
    if name not in handlers:
        known = ", ".join(sorted(handlers)) or "none (is restyle installed with pip?)"
        raise ModelError(f"unknown model {name!r}; the handlers are: {known}")
    return handlers[name]


def check(spec: JobSpec) -> Handler:
    """The spec's handler, after it checked the spec."""
    handler = get_handler(spec.model)
    handler.check(spec)
    return handler


def params_of(spec: JobSpec) -> Any:
    """The per-call parameters ``spec``'s model gets (its handler's :meth:`Handler.params`)."""
    return get_handler(spec.model).params(spec)


def load_model(load: LoadSpec, runtime: Runtime) -> Model:
    """Load what ``load`` names: the one call every engine's worker makes."""
    return get_handler(load.handler).load(load, runtime)


def blend(original: np.ndarray, restyled: np.ndarray, strength: float) -> np.ndarray:
    """Mix the original frames back in: ``strength`` 1 keeps only the restyled ones."""
    if strength >= 1.0:
        return restyled
    mixed = original.astype(np.float32) * (1.0 - strength) + restyled.astype(np.float32) * strength
    return (mixed + 0.5).astype(np.uint8)


def to_uint8(values: np.ndarray, value_range: float = 1.0) -> np.ndarray:
    """Model output (floats on 0..value_range) to uint8 pixels, rounded."""
    return (np.clip(values * (255.0 / value_range), 0.0, 255.0) + 0.5).astype(np.uint8)
