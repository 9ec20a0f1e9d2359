"""/metrics in Prometheus format, read from the job store at scrape time; and /healthz.

Workers are other processes, often on other machines; the job store is what they all
share, so the figures come from there: jobs by state, queue depth, frames scored,
chunk latencies, batches by state and their items by state, and each worker's last
heartbeat. Totals and the latency histogram are running counters the job store keeps as
chunks finish (a batch's counts as its items end): a scrape reads a dozen rows, however
many chunks were ever scored or items listed. A scrape needs an admin's token, or ``metrics_token``,
as a bearer token; ``metrics_public`` opens it to anyone.
"""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from restyle import __version__
from restyle.service.context import Context
from restyle.service.http.auth import bearer, signed_in
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.web import Web, web
from restyle.stores.jobs import ACTIVE, FINAL, JobState
from restyle.stores.states import BatchState

router = APIRouter(route_class=PolicyRoute, include_in_schema=False)


class JobStoreCollector:
    def __init__(self, context: Context):
        self.context = context

    def collect(self):
        jobs = self.context.jobs
        counts = jobs.counts()
        by_state = GaugeMetricFamily("restyle_jobs", "Jobs by state", labels=["state"])
        for state in ACTIVE + FINAL:
            by_state.add_metric([str(state)], counts.get(state, 0))
        yield by_state
        queued = counts.get(JobState.QUEUED, 0)
        yield GaugeMetricFamily("restyle_queue_depth", "Jobs waiting for a worker", value=queued)
        yield CounterMetricFamily("restyle_frames_scored", "Frames restyled, all jobs", value=jobs.frames_scored())

        latencies = jobs.chunk_latencies()
        buckets = [("+Inf" if bound == float("inf") else f"{bound:g}", count) for bound, count in latencies.buckets]
        histogram = HistogramMetricFamily("restyle_chunk_seconds", "Seconds to score one chunk")
        histogram.add_metric([], buckets, sum_value=latencies.total_s)
        yield histogram

        batches = self.context.batches
        items = GaugeMetricFamily("restyle_batch_items", "Items of batches that have not ended", labels=["state"])
        for state, count in batches.item_counts().items():
            items.add_metric([str(state)], count)
        yield items
        made = GaugeMetricFamily("restyle_batches", "Batches by state", labels=["state"])
        counts = batches.batch_counts()
        for state in BatchState:
            made.add_metric([str(state)], counts.get(state, 0))
        yield made

        beats = GaugeMetricFamily(
            "restyle_worker_heartbeat_age_seconds", "Seconds since each worker's last heartbeat", labels=["worker"]
        )
        now = time.time()
        for worker in jobs.workers():
            beats.add_metric([worker.id], round(now - worker.heartbeat_at, 3))
        yield beats


def registry(context: Context) -> CollectorRegistry:
    made = CollectorRegistry()
    made.register(JobStoreCollector(context))
    return made


@router.get("/metrics")
def scrape(request: Request, app: Web = Depends(web)) -> Response:
    _check_scraper(app.context, request)
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
def healthz() -> dict:
    return {"ok": True, "version": __version__}


def _check_scraper(context: Context, request: Request) -> None:
    """Closed by default (the figures name every worker's host and each tenant's activity): the metrics token or an
    admin's (the principal the guard found); open to anyone only with ``metrics_public``."""
    settings = context.settings
    if settings.metrics_public:
        return
    wanted, who = settings.metrics_token, signed_in(request)
    if wanted and hmac.compare_digest(bearer(request.headers).encode(), wanted.encode()):
        return
    if who is not None and who.is_admin:
        return
    raise HTTPException(
        401,
        "/metrics needs the metrics token (RESTYLE_METRICS_TOKEN) or an admin token; "
        "RESTYLE_METRICS_PUBLIC=true opens it to anyone",
        headers={"WWW-Authenticate": "Bearer"},
    )
