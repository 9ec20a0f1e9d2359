"""The Ray engine: the same task function, run by actors on a Ray cluster.

Actors are keyed by what they load (``LoadSpec`` and runtime), never by a job's per-call
parameters: one loaded network serves every style, blend and strength, across jobs.
The loaded models are bounded like Apache Beam's ``max_models``: at most ``max_models``
kinds of actor are kept, the least recently used goes first, and a model whose actors
cannot be placed takes the CPUs of idle actors of other models instead of waiting for
them. Actors idle for ``idle_seconds`` go away, so the nodes under them can too (the
autoscaler returns an idle cluster to zero nodes).

Chunks are handed out one at a time as actors finish (no barrier: a slow or lost node
holds up only its own chunk). An actor that dies — its process killed, its node lost or
pre-empted — is restarted by Ray itself (``max_restarts``) wherever there is room, or on a
node the autoscaler starts; its chunk is not pinned to it but given out again at once to
the first actor free (which Ray's ``max_task_retries`` would not do: it waits for the same
actor). Chunks already stored are never redone. An actor alive but stuck (its task has made no
frames past its deadline, :mod:`restyle.engines.deadline`; actors answer ``progress`` beside their
task) is killed, Ray starts it again, and its chunk is given out again the same way.

Nothing is shared but the network: a node need not see the driver's disk. Files the
driver names (the input, a style picture, a registered model's weights) reach actors
through Ray's object store (:mod:`restyle.engines.shipping`): inputs read in pieces as
decoded, weights and pictures once per node into its cache by SHA-256. Segments go from
the actor to the segment store when it can reach it (S3); else back with the result,
and the driver stores them. Each result says which node ran it and on what runtime and
precision that node's CPU chose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from restyle.engines.base import Item, Result, TaskFunction
from restyle.engines.deadline import StallLimits
from restyle.engines.ray_actor import ModelActor
from restyle.engines.ray_map import Key, MapRun
from restyle.engines.shipping import ShippedFile, Shipper
from restyle.errors import Cancelled, ModelError, RestyleError
from restyle.handlers.base import LoadSpec
from restyle.runtime import Runtime

log = logging.getLogger("restyle")

POLL_S = 1.0  # how often a map whose actors wait for room looks for idle actors to take it from


class RayEngine:
    """Runs items on actors of the Ray cluster at ``address`` (``auto``, ``host:port`` or ``ray://...``)."""

    remote = True  # actors may be on machines that see nothing of this one's disk

    def __init__(
        self,
        address: str | None = None,
        actors: int = 0,
        cpus_per_actor: float = 1.0,
        gpus_per_actor: float = 0.0,
        max_retries: int = 3,
        node_ip: str | None = None,
        max_models: int = 2,
        idle_seconds: float = 60.0,
        min_actors: int = 1,
        stall: StallLimits | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise RestyleError('the Ray engine needs Ray: pip install -e ".[ray]"') from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                # node_ip: which of this machine's Ray nodes the driver joins, when it runs several.
                ray.init(
                    address=address or "auto",
                    namespace="restyle",
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    _node_ip_address=node_ip or None,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RestyleError(f"cannot reach the Ray cluster at {address or 'auto'}: {exc}") from None
        self.cpus, self.gpus, self.max_retries = cpus_per_actor, gpus_per_actor, max_retries
        self.actors, self.max_models, self.idle_seconds = actors, max(1, max_models), idle_seconds
        self.min_actors = max(1, min_actors)
        self.stall = stall or StallLimits()
        self._lock = threading.RLock()
        self._idle: OrderedDict[Key, list] = OrderedDict()  # idle actors by model, least recently used first
        self._busy: Counter[Key] = Counter()  # actors out on a map, by model
        self._idle_since: dict[Any, float] = {}
        self.redone = 0  # items given out again after their actor died or was killed stuck
        self.loads = 0  # models loaded by actors: one per actor started or restarted by Ray
        self.redone_on: Counter[str] = Counter()  # ... by the node they were lost with
        self.evicted = 0  # actors killed to free their CPUs for another model, or for being idle
        self.pids: dict[Any, int] = {}  # live actors' process ids, for operators (and tests) to find them
        self.nodes: dict[Any, str] = {}  # live actors' node ids
        self._shipper = Shipper()
        self._weights: dict[Key, ShippedFile] = {}  # shipped weights of the models with actors (restarts need them)
        threading.Thread(target=self._reap_idle, name="restyle-ray-idle", daemon=True).start()

    @property
    def workers(self) -> int:
        """Actors a job gets: ``actors``, or as many as the cluster's CPUs (GPUs) hold now, at least ``min_actors``.

        At least ``min_actors``: a cluster at zero nodes holds none, and the autoscaler starts nodes for them.
        """
        if self.actors:
            return self.actors
        resources = self._ray.cluster_resources()
        fits = [resources.get("CPU", 0) // self.cpus] + ([resources.get("GPU", 0) // self.gpus] if self.gpus else [])
        return max(self.min_actors, int(min(fits)))

    @property
    def models(self) -> list[Key]:
        """The models that have actors now, least recently used first."""
        with self._lock:
            return [key for key in self._idle if self._idle[key] or self._busy[key]]

    def share(self, path: Path) -> ShippedFile:
        """``path``'s bytes in the cluster's object store, for actors on any node."""
        return self._shipper.ship(Path(path))

    def map(
        self,
        fn: TaskFunction,
        load: LoadSpec,
        runtime: Runtime,
        items: Sequence[Item],
        on_frames: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Result]:
        key = (load, runtime)
        pool = self._check_out(key, min(self.workers, len(items)))
        run = MapRun(self, fn, key, pool, items)
        room_checked = time.monotonic()
        try:
            while run.todo or run.running:
                if cancel is not None and cancel.is_set() and not run.cancelled:
                    run.cancel()
                run.dispatch()
                ready, _ = self._ray.wait(list(run.running) + list(run.starting), num_returns=1, timeout=POLL_S)
                if run.starting and time.monotonic() - room_checked >= POLL_S:
                    # Actors waiting for room take it from idle actors of other models, also while the others
                    # keep finishing chunks (a busy map would otherwise run on its first actors alone).
                    room_checked = time.monotonic()
                    self._make_room(key)
                run.watch()
                result = None
                if ready:
                    result = run.started(ready[0]) if ready[0] in run.starting else run.finished(ready[0])
                if on_frames and run.new_frames:
                    on_frames(run.new_frames)
                run.new_frames = 0
                if result is not None:
                    yield result
            if run.cancelled:
                raise Cancelled("cancelled")
        finally:
            self._check_in(key, pool, run.broken)

    def warm(self, load: LoadSpec, runtime: Runtime) -> None:
        """The actors a map would take, each asked to load the model now (an actor answers in order: the map's
        own ``start`` then finds it loaded)."""
        key = (load, runtime)
        pool = self._check_out(key, self.workers)
        try:
            weights = self._weights.get(key)
            for actor in pool:
                actor.start.remote(weights)
        finally:
            self._check_in(key, pool, [])

    def close(self) -> None:
        """Nothing per run: the actors stay for the next job of this process (bounded, and stopped when idle)."""

    def stop_idle(self) -> None:
        """Stop every idle actor now (actors out on a map finish it first)."""
        with self._lock:
            for key in list(self._idle):
                self._evict(key, len(self._idle[key]))

    # -- the pool of actors, by model ------------------------------------------

    def _check_out(self, key: Key, count: int) -> list:
        """``count`` actors for ``key``: its idle ones first, new ones for the rest."""
        with self._lock:
            idle = self._idle.pop(key, [])
            self._idle[key] = idle  # now the most recently used
            if not self._busy[key] and not idle:
                self._bound(keep=key, adding=1)  # a model more: the least recently used idle ones go
            taken, self._idle[key] = idle[:count], idle[count:]
            for actor in taken:
                self._idle_since.pop(actor, None)
            taken += [self._actor(*key) for _ in range(count - len(taken))]
            self._busy[key] += len(taken)
            return taken

    def _check_in(self, key: Key, actors: list, broken: list) -> None:
        with self._lock:
            self._busy[key] -= len(actors)
            kept = [actor for actor in actors if actor not in broken]
            for actor in broken:
                self._kill(actor)
            self._idle.setdefault(key, []).extend(kept)
            now = time.monotonic()
            for actor in kept:
                self._idle_since[actor] = now
            if not self._idle[key] and not self._busy[key]:
                self._forget(key)
            self._bound(keep=key)

    def _bound(self, keep: Key, adding: int = 0) -> None:
        """At most ``max_models`` models with actors: kill the idle actors of the least recently used.

        Models whose actors are all out on maps are never cut short; the bound holds again when they return.
        """
        for key in list(self._idle):
            if len(self.models) + adding <= self.max_models:
                return
            if key != keep and not self._busy[key]:
                self._evict(key, len(self._idle[key]))

    def _make_room(self, key: Key) -> None:
        """An actor of ``key`` waits for CPUs: kill one idle actor of another model (least recently used)."""
        free = self._ray.available_resources()
        if free.get("CPU", 0) >= self.cpus and free.get("GPU", 0) >= self.gpus:
            return  # there is room: the actor is loading its model, not waiting
        with self._lock:
            for other, actors in self._idle.items():
                if other != key and actors:
                    log.info("freeing an idle %s actor for %s", other[0].handler, key[0].handler)
                    self._evict(other, 1)
                    return

    def _evict(self, key: Key, count: int) -> None:
        actors = self._idle.get(key, [])
        for actor in actors[:count]:
            self._kill(actor)
            self.evicted += 1
        del actors[:count]
        if not actors and not self._busy[key]:
            self._forget(key)

    def _forget(self, key: Key) -> None:
        """``key`` has no actors left: drop its bookkeeping and its shipped weights."""
        self._idle.pop(key, None)
        self._busy.pop(key, None)
        self._weights.pop(key, None)

    def _kill(self, actor) -> None:
        for table in (self.pids, self.nodes, self._idle_since):
            table.pop(actor, None)
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - an actor already gone is gone
            log.debug("killing a Ray actor: %s", exc)

    def _reap_idle(self) -> None:
        """Kill actors idle for ``idle_seconds``: their CPUs go to other drivers, their nodes may go."""
        while True:
            time.sleep(max(0.2, min(5.0, self.idle_seconds / 4)))
            now = time.monotonic()
            with self._lock:
                for key, actors in list(self._idle.items()):
                    stale = [a for a in actors if now - self._idle_since.get(a, now) >= self.idle_seconds]
                    for actor in stale:
                        actors.remove(actor)
                        self._kill(actor)
                        self.evicted += 1
                    if not actors and not self._busy[key]:
                        self._forget(key)

    def _actor(self, load: LoadSpec, runtime: Runtime):
        actor_class = self._ray.remote(ModelActor)
        key = (load, runtime)
        if load.weights and key not in self._weights:
            try:
                self._weights[key] = self._shipper.ship(Path(load.weights))
            except RestyleError as exc:
                raise ModelError(f"Ray actors cannot start: {exc}") from None
        # max_restarts=-1: Ray brings an actor lost with its node back wherever there is room (a node the
        # autoscaler starts, in the cloud). max_task_retries=0: its chunk goes to the first free actor instead.
        # max_concurrency=2: ``progress`` answers while ``run`` works.
        return actor_class.options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=-1, max_task_retries=0, max_concurrency=2
        ).remote(load, runtime)
