"""Engines run a task function over many items, each worker holding one loaded model.

The pipeline gives an engine a function (``score_chunk`` for videos), a ModelSpec and
the items; the engine decides where they run. Swap the engine, keep the pipeline.
"""
from restyle.engines.base import Engine, TaskFunction
from restyle.engines.local import LocalEngine

__all__ = ["Engine", "LocalEngine", "TaskFunction"]
