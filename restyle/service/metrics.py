"""/metrics in Prometheus format, read from the job store at scrape time.

Workers are other processes, often on other machines; the job store is what they all
share, so the figures come from there: jobs by state, queue depth, frames scored,
chunk latencies and each worker's last heartbeat. Totals and the latency histogram are
running counters the job store keeps as chunks finish: a scrape reads a dozen rows,
however many chunks were ever scored. With ``metrics_token`` set, a scrape needs that
token (or an admin's) as a bearer token.
"""
from __future__ import annotations

import hmac
import time

from fastapi import FastAPI, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from restyle.service.context import Context
from restyle.stores.jobs import ACTIVE, FINAL


class JobStoreCollector:
    def __init__(self, context: Context):
        self.context = context

    def collect(self):
        jobs = self.context.jobs
        counts = jobs.counts()
        by_state = GaugeMetricFamily("restyle_jobs", "Jobs by state", labels=["state"])
        for state in ACTIVE + FINAL:
            by_state.add_metric([state], counts.get(state, 0))
        yield by_state
        yield GaugeMetricFamily("restyle_queue_depth", "Jobs waiting for a worker", value=counts.get("queued", 0))
        yield CounterMetricFamily("restyle_frames_scored", "Frames restyled, all jobs", value=jobs.frames_scored())

        latencies = jobs.chunk_latencies()
        buckets = [("+Inf" if bound == float("inf") else f"{bound:g}", count) for bound, count in latencies.buckets]
        histogram = HistogramMetricFamily("restyle_chunk_seconds", "Seconds to score one chunk")
        histogram.add_metric([], buckets, sum_value=latencies.total_s)
        yield histogram

        beats = GaugeMetricFamily("restyle_worker_heartbeat_age_seconds", "Seconds since each worker's last heartbeat", labels=["worker"])
        now = time.time()
        for worker in jobs.workers():
            beats.add_metric([worker.id], round(now - worker.heartbeat_at, 3))
        yield beats


def mount(app: FastAPI, context: Context) -> None:
    registry = CollectorRegistry()
    registry.register(JobStoreCollector(context))

    @app.get("/metrics", include_in_schema=False)
    def scrape(request: Request) -> Response:
        _check_scraper(context, request.headers.get("authorization", ""))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _check_scraper(context: Context, header: str) -> None:
    """Open when no metrics token is set (the default: the figures name workers, not tenants); else that token or an admin's."""
    wanted = context.settings.metrics_token
    if not wanted:
        return
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    principal = context.tokens.get(token)
    if hmac.compare_digest(token.encode(), wanted.encode()) or (principal is not None and principal.is_admin):
        return
    raise HTTPException(401, "/metrics needs the metrics token (RESTYLE_METRICS_TOKEN) or an admin token",
                        headers={"WWW-Authenticate": "Bearer"})
