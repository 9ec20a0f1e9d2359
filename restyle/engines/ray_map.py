"""One Ray map's actors and items (:class:`MapRun`): which actors are starting, idle or running which item,
what was lost, and how a lost or stuck item is given out again. The engine (:mod:`restyle.engines.ray`) drives it."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from restyle.engines.base import Item, Result, TaskFunction, label_of, units_of
from restyle.engines.deadline import Deadlines, Stall
from restyle.errors import Cancelled, RestyleError
from restyle.handlers.base import LoadSpec
from restyle.runtime import Runtime

log = logging.getLogger("restyle")
Key = tuple[LoadSpec, Runtime]  # what an actor loads: its model, and the runtime it asks for
# Lost with a worker or a node: the actor, or a finished chunk's result that lived on the node (ObjectLostError
# and its kinds: owner died, cannot be reconstructed...).
LOST = ("RayActorError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError")


class MapRun:
    """One map's actors and items: which actors are starting, idle or running which item, and what was lost."""

    def __init__(self, engine: Any, fn: TaskFunction, key: Key, pool: list, items: Sequence[Item]):  # a RayEngine
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
        if not self.cancelled:  # a cancelled map begins nothing again
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
