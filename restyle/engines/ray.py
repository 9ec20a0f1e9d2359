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

import contextlib
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from restyle.engines.base import Item, Result, TaskFunction, label_of, units_of
from restyle.engines.deadline import Deadlines, Stall, StallLimits
from restyle.engines.ray_actor import ModelActor
from restyle.engines.shipping import ShippedFile, Shipper
from restyle.errors import Cancelled, ModelError, RestyleError
from restyle.handlers.base import LoadSpec
from restyle.runtime import Runtime

log = logging.getLogger("restyle")

Key = tuple[LoadSpec, Runtime]
POLL_S = 1.0  # how often a map whose actors wait for room looks for idle actors to take it from
# Lost with a worker or a node: the actor, or a finished chunk's result that lived on the node (ObjectLostError
# and its kinds: owner died, cannot be reconstructed...).
LOST = ("RayActorError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError")


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
        run = _MapRun(self, fn, key, pool, items)
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


class _MapRun:
    """One map's actors and items: which actors are starting, idle or running which item, and what was lost."""

    def __init__(self, engine: RayEngine, fn: TaskFunction, key: Key, pool: list, items: Sequence[Item]):
        self.engine, self.fn, self.pool, self.items = engine, fn, pool, items
        self.todo = deque(enumerate(items))
        self.attempts = dict.fromkeys(range(len(items)), 0)
        self.running: dict[Any, tuple[Any, int]] = {}  # task ref -> (actor, item index)
        self.weights = engine._weights.get(key)
        self.starting = {actor.start.remote(self.weights): actor for actor in pool}  # takes work once it is up
        self.idle: list = []
        self.broken: list = []  # actors that cannot start (their model does not load): not kept
        self.failed_starts = 0
        self.deadlines = Deadlines(engine.stall)
        self.polls: dict[Any, Any] = {}  # an actor's answer to ``progress`` -> the task ref it is about
        self.stalls: dict[int, Stall] = {}  # items whose actor was killed stuck, until their task answers lost
        self.new_frames = 0  # frames made since the map last heard, not counted before (a retry's are not)
        self.cancelled = False

    def cancel(self) -> None:
        """Begin no more items; the running ones stop at their next frame batch (the actor's ``stop``)."""
        self.cancelled = True
        self.todo.clear()
        for actor, _ in self.running.values():
            actor.stop.remote()

    def dispatch(self) -> None:
        """Give items to idle actors; fail when no actor is left or coming."""
        while self.todo and self.idle:
            actor = self.idle.pop()
            index, item = self.todo.popleft()
            self.running[actor.run.remote(self.fn, item)] = (actor, index)
            self.deadlines.begin(index, units_of(item))
        if not self.running and not self.starting:
            raise RestyleError("every Ray actor is gone and none can be started; is the cluster up?")

    def started(self, ref: Any) -> None:
        """An actor's start answered: it is up (idle), or Ray restarts it, or its model cannot load."""
        engine, actor = self.engine, self.starting.pop(ref)
        try:
            where = engine._ray.get(ref)
        except engine._ray.exceptions.RayError as exc:
            # Unavailable: Ray is restarting it (its node was lost); it comes back, so ask again.
            self.failed_starts += type(exc).__name__ != "ActorUnavailableError"
            if self.failed_starts > 2 * len(self.pool) or not _lost(exc):  # e.g. the model cannot load
                self.broken += [actor, *self.starting.values()]  # the others load the same model: drop them too
                raise RestyleError(f"Ray actors cannot start: {_reason(exc)}") from None
            self.starting[actor.start.remote(self.weights)] = actor  # Ray restarts it (max_restarts)
            return None
        if engine.pids.get(actor) != where[0]:
            engine.loads += 1  # a new actor, or one Ray restarted: its model was loaded
        engine.pids[actor], engine.nodes[actor] = where
        self.idle.append(actor)
        return None

    def finished(self, ref: Any) -> Result | None:
        """An item's task answered: its result, or None when it was lost with its actor and is given out again."""
        engine = self.engine
        actor, index = self.running.pop(ref)
        try:
            result = engine._ray.get(ref)
        except engine._ray.exceptions.RayTaskError as exc:  # the task itself failed: its reason, as raised
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            if self.cancelled and isinstance(cause, Cancelled):
                self.deadlines.finish(index)
                self.idle.append(actor)
                return None
            raise cause from None
        except engine._ray.exceptions.RayError as exc:
            self.deadlines.finish(index)
            self._lost(exc, actor, index)
            return None
        self.new_frames += self.deadlines.finish(index, result.frames)
        self.idle.append(actor)
        return result

    def watch(self) -> None:
        """Hear how far the running tasks are (asking each actor anew once it answered); kill the stuck ones."""
        ray = self.engine._ray
        answered, _ = ray.wait(list(self.polls), num_returns=len(self.polls), timeout=0) if self.polls else ([], [])
        for ref in answered:
            task = self.polls.pop(ref)
            if task in self.running:  # still out: its actor's count is this task's
                with contextlib.suppress(ray.exceptions.RayError):  # a lost actor's task answers lost too
                    index = self.running[task][1]
                    self.new_frames += self.deadlines.progress(index, ray.get(ref) - self.deadlines.made(index))
        asked = set(self.polls.values())
        for task, (actor, _) in self.running.items():
            if task not in asked:
                self.polls[actor.progress.remote()] = task
        for stall in self.deadlines.stuck():
            actor = next(actor for actor, index in self.running.values() if index == stall.index)
            label, node = label_of(self.items[stall.index], stall.index), self.engine.nodes.get(actor, "?")
            log.warning("%s; killing its Ray actor on node %s, running it again", stall.what(label), node[:12])
            self.stalls[stall.index] = stall
            self.deadlines.finish(stall.index)
            ray.kill(actor, no_restart=False)  # Ray starts it again; its task answers lost (see _lost)

    def _lost(self, exc: BaseException, actor: Any, index: int) -> None:
        engine, label, stall = self.engine, label_of(self.items[index], index), self.stalls.pop(index, None)
        if not _lost(exc):
            raise RestyleError(f"Ray failed {label}: {_reason(exc)}") from None
        self.attempts[index] += 1
        if self.attempts[index] > engine.max_retries:
            tries = self.attempts[index]
            lost = f"{label} was lost {tries} times with its worker: {_reason(exc)}"
            raise RestyleError(stall.reason(label, tries) if stall else lost) from None
        node = engine.nodes.get(actor, "?")
        if stall is None:
            log.warning("a Ray actor on node %s died with %s; giving it out again", node[:12], label)
        engine.redone += 1
        engine.redone_on[node] += 1
        self.todo.appendleft((index, self.items[index]))
        if actor not in self.starting.values():  # back when Ray has restarted it, here or on a new node
            self.starting[actor.start.remote(self.weights)] = actor


def _lost(exc: BaseException) -> bool:
    """Did the work die with its worker or node (give it out again), rather than fail on its own?"""
    import ray.exceptions as errors

    kinds = tuple(getattr(errors, name) for name in LOST if hasattr(errors, name))
    return any(isinstance(e, kinds) for e in (exc, getattr(exc, "cause", None)) if e is not None) and not any(
        word in str(exc) for word in ("__init__", "creation task")
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
