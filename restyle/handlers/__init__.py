"""Handlers: how a kind of model is checked, loaded and run on a batch of frames. Knows nothing of video."""

from restyle.handlers.base import (
    BaseHandler,
    Handler,
    LoadSpec,
    Model,
    OutputKind,
    check,
    file_kinds,
    get_handler,
    kind_for_file,
    load_model,
    params_of,
    registered,
)
from restyle.jobspec import JobSpec
from restyle.runtime import Runtime


def load(spec: JobSpec, runtime: Runtime) -> Model:
    """Load the model ``spec`` names (checked first): a shortcut for scripts and benchmarks."""
    return load_model(check(spec).load_spec(spec), runtime)


__all__ = [
    "BaseHandler",
    "Handler",
    "JobSpec",
    "LoadSpec",
    "Model",
    "OutputKind",
    "Runtime",
    "check",
    "file_kinds",
    "get_handler",
    "kind_for_file",
    "load",
    "load_model",
    "params_of",
    "registered",
]
