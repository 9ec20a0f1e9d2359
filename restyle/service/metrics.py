"""/metrics in Prometheus format, read from the job store at scrape time.

Workers are other processes, often on other machines; the job store is what they all
share, so the figures come from there: jobs by state, queue depth, frames scored,
chunk latencies and each worker's last heartbeat.
"""
from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from restyle.service.context import Context
from restyle.stores.jobs import ACTIVE, FINAL

CHUNK_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, float("inf"))


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

        latencies = jobs.chunk_seconds()
        buckets, total = [], 0
        for bound in CHUNK_BUCKETS:
            total = sum(1 for s in latencies if s <= bound)
            buckets.append(("+Inf" if bound == float("inf") else str(bound), total))
        histogram = HistogramMetricFamily("restyle_chunk_seconds", "Seconds to score one chunk")
        histogram.add_metric([], buckets, sum_value=sum(latencies))
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
    def scrape() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
