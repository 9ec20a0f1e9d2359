"""Engines run a task function over many items, each worker holding one loaded model.

The pipeline gives an engine a function (``score_chunk`` for videos), a LoadSpec (what its workers load) and
the items; the engine decides where they run. Swap the engine, keep the pipeline.
"""
import functools

from restyle.config import Settings
from restyle.engines.base import Engine, TaskFunction
from restyle.engines.local import LocalEngine


def make_engine(settings: Settings, workers: int) -> Engine:
    """The engine the settings name: the local pool by default, a Ray cluster with RESTYLE_ENGINE=ray."""
    if settings.engine == "ray":
        return _ray_engine(settings.ray_address or None, settings.ray_actors, settings.ray_cpus_per_actor,
                           settings.ray_gpus_per_actor, settings.ray_node_ip or None, settings.max_models,
                           settings.ray_actor_idle_seconds, settings.ray_actors_per_job)
    return LocalEngine(workers, max_models=settings.max_models)


@functools.cache
def _ray_engine(address: str | None, actors: int, cpus: float, gpus: float, node_ip: str | None,
                max_models: int, idle_seconds: float, min_actors: int) -> Engine:
    """One per process: its actors keep their models loaded from one job to the next."""
    from restyle.engines.ray import RayEngine

    return RayEngine(address, actors=actors, cpus_per_actor=cpus, gpus_per_actor=gpus, node_ip=node_ip,
                     max_models=max_models, idle_seconds=idle_seconds, min_actors=min_actors)


__all__ = ["Engine", "LocalEngine", "TaskFunction", "make_engine"]
