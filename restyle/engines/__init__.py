"""Engines run a task function over many items, each worker holding one loaded model.

The pipeline gives an engine a function (``score_chunk`` for videos), a LoadSpec (what its workers load) and
the items; the engine decides where they run. Swap the engine, keep the pipeline. How many workers a run gets
is :mod:`restyle.engines.sizing`'s business.
"""

from __future__ import annotations

import threading

from restyle.config import Settings
from restyle.engines.base import Engine, Item, Result, TaskFunction
from restyle.engines.deadline import StallLimits
from restyle.engines.local import LocalEngine

# Ray engines of this process by their settings: their actors keep models loaded from one job to the next, so a
# run that makes "an" engine gets the process's one. close_ray_engines() lets go of them (their actors too).
_ray_engines: dict[tuple, Engine] = {}
_ray_lock = threading.Lock()


def make_engine(settings: Settings, workers: int, *, isolated: bool = False) -> Engine:
    """The engine the settings name: the local pool by default, a Ray cluster with RESTYLE_ENGINE=ray.
    ``isolated``: the local pool runs every task in a worker process (see LocalEngine), so every task has a
    deadline."""
    if settings.engine == "ray":
        return _ray_engine(settings)
    return LocalEngine(
        workers,
        max_models=settings.max_models,
        max_retries=settings.task_retries,
        stall=StallLimits.of(settings),
        isolated=isolated,
    )


def _ray_engine(settings: Settings) -> Engine:
    """This process's Ray engine for these settings, made on first use (see ``_ray_engines``)."""
    key = (
        settings.ray_address or None,
        settings.ray_actors,
        settings.ray_cpus_per_actor,
        settings.ray_gpus_per_actor,
        settings.ray_node_ip or None,
        settings.max_models,
        settings.ray_actor_idle_seconds,
        settings.ray_actors_per_job,
        settings.task_retries,
        StallLimits.of(settings),
    )
    with _ray_lock:
        if key not in _ray_engines:
            from restyle.engines.ray import RayEngine

            address, actors, cpus, gpus, node_ip, max_models, idle_seconds, min_actors, retries, stall = key
            _ray_engines[key] = RayEngine(
                address,
                actors=actors,
                cpus_per_actor=cpus,
                gpus_per_actor=gpus,
                max_retries=retries,
                node_ip=node_ip,
                max_models=max_models,
                idle_seconds=idle_seconds,
                min_actors=min_actors,
                stall=stall,
            )
        return _ray_engines[key]


def close_ray_engines() -> None:
    """Stop the idle actors of every Ray engine this process made, and forget the engines."""
    with _ray_lock:
        engines = list(_ray_engines.values())
        _ray_engines.clear()
    for engine in engines:
        engine.stop_idle()


__all__ = ["Engine", "Item", "LocalEngine", "Result", "TaskFunction", "close_ray_engines", "make_engine"]
