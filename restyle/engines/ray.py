"""The Ray engine: the same task function, run by actors on a Ray cluster.

Each actor loads the model once and keeps it for every chunk it is given, across jobs.
Chunks are handed out one at a time as actors finish (no barrier: a slow or lost node
holds up only its own chunk). An actor that dies — its process killed, its node lost or
pre-empted — is replaced by a new one, which Ray places wherever there is room (on a
cloud cluster, a node the autoscaler starts), and its chunk is given out again to the
first actor free; chunks that were already stored are never redone. Segments go from the actor to
the segment store (the system object store for the service), never through the head.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from restyle.engines.base import TaskFunction
from restyle.errors import RestyleError
from restyle.handlers.base import LoadSpec, load_model
from restyle.runtime import Runtime

log = logging.getLogger("restyle")


class RayEngine:
    """Runs items on actors of the Ray cluster at ``address`` (``auto``, ``host:port`` or ``ray://...``)."""

    def __init__(self, address: str | None = None, actors: int = 0, cpus_per_actor: float = 1.0,
                 gpus_per_actor: float = 0.0, max_retries: int = 3, node_ip: str | None = None):
        try:
            import ray
        except ImportError:
            raise RestyleError('the Ray engine needs Ray: pip install -e ".[ray]"') from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                # node_ip: which of this machine's Ray nodes the driver joins, when it runs several.
                ray.init(address=address or "auto", namespace="restyle", log_to_driver=False,
                         logging_level=logging.WARNING, _node_ip_address=node_ip or None)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RestyleError(f"cannot reach the Ray cluster at {address or 'auto'}: {exc}") from None
        self.cpus, self.gpus, self.max_retries = cpus_per_actor, gpus_per_actor, max_retries
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = actors or max(1, int(cluster_cpus // max(cpus_per_actor, 0.01)))
        self._actors: dict[tuple, list] = {}
        self.redone = 0  # items given out again after their actor died
        self.loads = 0
        self.pids: dict[Any, int] = {}  # live actors' process ids, for operators (and tests) to find them

    def map(self, fn: TaskFunction, load: LoadSpec, runtime: Runtime, items: Sequence[Any],
            on_frames: Callable[[int], None] | None = None) -> Iterator[Any]:
        ray = self._ray
        pool = self._pool(load, runtime, min(self.workers, len(items)))
        todo = deque(enumerate(items))
        attempts = {i: 0 for i in range(len(items))}
        running: dict[Any, tuple[Any, int]] = {}  # task ref -> (actor, item index)
        starting = {actor.pid.remote(): actor for actor in pool}  # an actor takes work once it is up
        failed_starts = 0
        idle: list = []
        while todo or running:
            while todo and idle:
                actor = idle.pop()
                index, item = todo.popleft()
                running[actor.run.remote(fn, item)] = (actor, index)
            if not running and not starting:
                raise RestyleError("every Ray actor is gone and none can be started; is the cluster up?")
            ready, _ = ray.wait(list(running) + list(starting), num_returns=1)
            ref = ready[0]
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    self.pids[actor] = ray.get(ref)
                    idle.append(actor)
                except ray.exceptions.RayError as exc:
                    failed_starts += 1
                    if failed_starts > 2 * len(pool):  # e.g. the model cannot load: say why, do not loop
                        raise RestyleError(f"Ray actors cannot start: {exc}") from None
                    replacement = self._replace(pool, actor, load, runtime)
                    starting[replacement.pid.remote()] = replacement
                continue
            actor, index = running.pop(ref)
            try:
                result = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as exc:
                attempts[index] += 1
                if attempts[index] > self.max_retries:
                    raise RestyleError(f"chunk {index} was lost {attempts[index]} times with its worker: {exc}") from None
                log.warning("a Ray worker died with chunk %s; giving it out again", index)
                self.redone += 1
                todo.appendleft((index, items[index]))
                # A fresh actor in its place: Ray puts it wherever there is room (a new node, in the cloud).
                replacement = self._replace(pool, actor, load, runtime)
                starting[replacement.pid.remote()] = replacement
                continue
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                raise cause from None
            idle.append(actor)
            if on_frames:
                on_frames(getattr(result, "frames", 1))
            yield result

    def close(self) -> None:
        """Nothing to do per run: the actors stay for the next job of this process (bounded by their pools)."""

    def _pool(self, load: LoadSpec, runtime: Runtime, count: int) -> list:
        """Actors for this model, made once and kept: the next job with the same model reuses them."""
        pool = self._actors.setdefault((load, runtime), [])
        while len(pool) < count:
            pool.append(self._actor(load, runtime))
        return pool[:count]

    def _actor(self, load: LoadSpec, runtime: Runtime):
        actor_class = self._ray.remote(ModelActor)
        return actor_class.options(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0).remote(load, runtime)

    def _replace(self, pool: list, dead, load: LoadSpec, runtime: Runtime):
        self.pids.pop(dead, None)
        self._ray.kill(dead, no_restart=True)
        pool.remove(dead)
        pool.append(self._actor(load, runtime))
        return pool[-1]


class ModelActor:
    """Holds one loaded model; runs the engine's task function on the items it is given."""

    def __init__(self, load: LoadSpec, runtime: Runtime):
        self.model = load_model(load, runtime)
        self.batch = runtime.frames_per_call

    def run(self, fn: TaskFunction, item: Any) -> Any:
        return fn(item, self.model, self.batch, lambda frames: None)

    def pid(self) -> int:
        return os.getpid()
