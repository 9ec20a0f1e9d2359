"""Scale a Ray cluster on the job queue: nodes for queued jobs, none when the queue is empty.

Ray's autoscaler starts nodes for work that Ray can see: actors and tasks waiting for
resources. Queued jobs are invisible to it until a worker takes one and asks for actors,
and a cluster at zero nodes would then start one node's worth at a time. The scaler
reads the job store's depth (queued + running jobs) and tells the autoscaler what they
need (``ray.autoscaler.sdk.request_resources``: ``ray_actors_per_job`` actor-sized bundles a
job, at most ``ray_max_requested_actors``); when the queue is empty it withdraws the
request, and nodes left idle go after the cluster's ``idle_timeout_minutes``.

The request is a floor, not a reservation: it makes room, the actors use it. Every
process that runs a scaler sends the same figure (it comes from the shared job store),
so running one per worker process is harmless; ``restyle serve`` runs one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from restyle.config import Settings
from restyle.stores.jobs import JobStore

log = logging.getLogger("restyle")

Bundle = dict[str, float]


def bundles_for(depth: int, settings: Settings) -> list[Bundle]:
    """What ``depth`` queued or running jobs need: one bundle per actor, the size of an actor."""
    actors = min(depth * settings.ray_actors_per_job, settings.ray_max_requested_actors)
    bundle: Bundle = {"CPU": settings.ray_cpus_per_actor}
    if settings.ray_gpus_per_actor:
        bundle["GPU"] = settings.ray_gpus_per_actor
    return [dict(bundle) for _ in range(actors)]


class QueueScaler:
    """Renews the autoscaler's request from the queue every ``ray_scale_seconds``."""

    def __init__(self, jobs: JobStore, settings: Settings, request: Callable[[list[Bundle]], None] | None = None):
        self.jobs, self.settings = jobs, settings
        self._request = request or _ray_request(settings)
        self.requested: list[Bundle] | None = None  # the last request sent; None before the first
        self.history: list[tuple[int, int]] = []  # (depth, actors requested) each time it changed

    def step(self) -> list[Bundle]:
        """Read the queue, send the request if it changed; returns what is requested now."""
        depth = self.jobs.depth()
        bundles = bundles_for(depth, self.settings)
        if bundles != self.requested:
            self._request(bundles)  # an empty list withdraws the request
            if self.requested is not None or bundles:
                log.info(
                    "queue depth %d: asking Ray for %d actor(s) of %s",
                    depth,
                    len(bundles),
                    bundles[0] if bundles else "-",
                )
            self.requested = bundles
            self.history.append((depth, len(bundles)))
        return bundles

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``; a store or cluster that fails for a while only delays the next request."""
        while not stop.is_set():
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - the scaler must outlive outages; the next step retries
                log.warning("queue scaler: %s", exc)
            stop.wait(self.settings.ray_scale_seconds)
        with contextlib.suppress(Exception):
            self._request([])  # nothing is asked for by a service that is gone


def start(jobs: JobStore, settings: Settings, stop: threading.Event) -> threading.Thread | None:
    """Run a scaler in a thread when the engine is Ray and scaling on the queue is on."""
    if settings.engine != "ray" or not settings.ray_scale_on_queue:
        return None
    scaler = QueueScaler(jobs, settings)
    thread = threading.Thread(target=scaler.run, args=(stop,), name="restyle-scaler", daemon=True)
    thread.start()
    return thread


def _ray_request(settings: Settings) -> Callable[[list[Bundle]], None]:
    """request_resources on the cluster the settings name (joining it once, as a driver)."""

    def request(bundles: list[Bundle]) -> None:
        import ray
        from ray.autoscaler.sdk import request_resources

        if not ray.is_initialized():
            ray.init(
                address=settings.ray_address or "auto",
                namespace="restyle",
                log_to_driver=False,
                logging_level=logging.WARNING,
                _node_ip_address=settings.ray_node_ip or None,
            )
        request_resources(bundles=bundles)

    return request
