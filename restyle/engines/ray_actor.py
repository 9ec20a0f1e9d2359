"""The Ray engine's actor: one loaded model, running the engine's task function on the items it is given."""

from __future__ import annotations

import dataclasses
import os

from restyle.engines import shipping
from restyle.engines.base import Item, Result, TaskFunction, cases_of, stop_at_cancel, worker_runtime
from restyle.engines.shipping import ShippedFile
from restyle.handlers.base import LoadSpec, load_model
from restyle.runtime import Runtime


class ModelActor:
    """Holds one loaded model; runs the engine's task function on the items it is given.

    ``start`` loads the model (once; again after Ray restarts the actor, as the engine
    calls it then too), its weights, when the model has a file, shipped and read from the
    node's cache. They come with ``start`` rather than the constructor: Ray keeps no
    constructor argument for a restart. The actor chooses its runtime and precision on its
    own node's CPU, and says so, with its node's address, on every result (``Result.ran_on``).

    ``progress`` answers beside a running ``run`` (the actor has two threads): the frames its
    task has made, by which the engine tells a working actor from a stuck one.
    """

    def __init__(self, load: LoadSpec, runtime: Runtime):
        self.load, self.runtime_asked = load, runtime
        self.model = None
        self.frames = 0  # made by the task running now
        self.stopping = False  # the running task is to stop at its next frame batch (``stop``)
        self._unreported = 0

    def start(self, weights: ShippedFile | None) -> tuple[int, str]:
        """Load the model if it is not loaded; this actor's process id and node id."""
        import ray

        if self.model is None:
            before = shipping.bytes_fetched()
            load = dataclasses.replace(self.load, weights=str(weights.local())) if weights is not None else self.load
            self.model = load_model(load, self.runtime_asked)
            self.batch = self.runtime_asked.frames_per_call
            self.node = ray.util.get_node_ip_address()
            self._unreported = shipping.bytes_fetched() - before  # the weights: counted on this actor's first result
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, fn: TaskFunction, item: Item) -> Result:
        before = shipping.bytes_fetched()
        self.stopping = False  # a stop meant for the task before, heard after it ended
        try:
            result = fn(item, self.model, self.batch, stop_at_cancel(self._made, lambda: self.stopping))
        finally:
            self.frames = 0  # between tasks: a question asked before the next one starts hears no frames
        fetched, self._unreported = shipping.bytes_fetched() - before + self._unreported, 0
        return result.ran_on(self.node, worker_runtime(self.load, self.runtime_asked, cases_of(item)), fetched)

    def progress(self) -> int:
        """Frames the running task has made so far."""
        return self.frames

    def stop(self) -> None:
        """Have the running task stop (:class:`restyle.errors.Cancelled`) at its next frame batch."""
        self.stopping = True

    def _made(self, frames: int) -> None:
        self.frames += frames
