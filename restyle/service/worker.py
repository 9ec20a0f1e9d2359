"""A worker: takes a job with a lease, runs the pipeline on it, delivers the output.

Any number of workers, on any machine that reaches both stores and the job store.
Finished chunk segments go to the system store as they finish, so a worker that dies
costs only the chunks it had in flight: the next worker to take the job reuses the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from restyle.config import Settings
from restyle.engines import Engine, make_engine
from restyle.errors import InputError, ModelError, OutputError, RestyleError
from restyle.media.assemble import output_suffix
from restyle.pipeline import Cancelled, ChunkResult, Hooks, RunReport, run
from restyle.service import batches, keys, units
from restyle.service.context import Context, clean_scratch, public_reason, scratch_dir
from restyle.service.joblog import JobLog
from restyle.service.specs import is_records, local_spec
from restyle.service.stills import make_stills
from restyle.stores.jobs import Job, JobState, JobStoreError, Lease
from restyle.stores.retry import wait_out
from restyle.stores.segments import ObjectSegments

log = logging.getLogger("restyle.worker")

# Failures that the same input would meet again: no retry.
PERMANENT = (InputError, ModelError, OutputError)


class Worker:
    def __init__(self, context: Context, worker_id: str | None = None):
        self.context = context
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self._engines: dict[int, Engine] = {}  # by worker count: pools kept from job to job, models loaded once

    def engine(self, workers: int) -> Engine:
        if workers not in self._engines:
            # Isolated: a stuck decoder or model is timed out even with one worker (the pool outlives the job).
            self._engines[workers] = make_engine(self.settings, workers, isolated=True)
        return self._engines[workers]

    @property
    def settings(self) -> Settings:
        return self.context.settings

    def run(self, stop: threading.Event) -> None:
        """Take and run jobs until ``stop``; survive job-store outages by waiting and trying again."""
        log.info("worker %s ready", self.id)
        clean_scratch(self.settings)  # input copies left by workers that were killed
        try:
            self._take_jobs(stop)
        finally:
            for engine in self._engines.values():
                engine.close()

    def _take_jobs(self, stop: threading.Event) -> None:
        swept = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - swept > self.settings.batch_sweep_seconds:  # batches no worker saw end
                    swept = time.monotonic()
                    batches.sweep(self.context)
                self.context.jobs.worker_alive(self.id, None)
                job = self.context.jobs.claim(self.id, self.settings.lease_seconds, self.settings.tenant_priorities)
            except Exception as exc:  # noqa: BLE001 - the database may be restarting
                log.warning("job store unreachable, will retry: %s", exc)
                stop.wait(self.settings.idle_seconds)
                continue
            if job is None:
                stop.wait(self.settings.idle_seconds)
                continue
            try:
                self.process(job)
            except Exception as exc:  # noqa: BLE001 - its end could not be recorded: the lease runs out, another try resumes it
                log.error("job %s: its end state was not recorded (%s); it will be taken again", job.id, exc)

    def stills(self, job_id: str, source: Path, target: Path | None) -> None:
        """Before/after stills along the video, for the dashboard (records jobs have no after)."""
        make_stills(self.context, job_id, source, target)

    def process(self, job: Job) -> JobState | Lease | None:
        """Run one claimed job to an end state (or back to the queue); return that state, ``Lease.LOST`` when
        another worker has the job now, or None when the job is gone from the store."""
        ended = JobRun(self, job).run()
        if job.batch_id:  # a batch's unit: its items' ends counted, and the batch's own end if it was the last
            try:
                self.persist(batches.settle, self.context, job.batch_id)
            except Exception as exc:  # noqa: BLE001 - a store away: a worker's sweep settles the batch later
                log.warning("batch %s not settled after unit %s: %s", job.batch_id, job.id, exc)
        return ended

    def persist(self, write, *args, **kwargs):
        """A job-store write that must land: tried again while the database is away, up to store_retry_seconds."""
        return wait_out(
            lambda: write(*args, **kwargs),
            transient=lambda exc: isinstance(exc, (DBAPIError, JobStoreError)),
            seconds=self.settings.store_retry_seconds,
            what="job store",
        )


class JobRun:
    """One claimed job, run to its end. The pipeline's threads (its hooks) write the progress that the
    heartbeat thread reports, under one lock; the heartbeat's last answer about the lease is ``lease``."""

    def __init__(self, worker: Worker, job: Job):
        self.worker, self.job = worker, job
        self.context, self.settings, self.jobs = worker.context, worker.settings, worker.context.jobs
        self.journal = JobLog(self.context, job.id, worker.id)
        self.cancel = threading.Event()
        self.lease = Lease.HELD
        self._progress = {"frames_done": 0, "frames_total": 0, "chunks_done": 0, "chunks_total": 0}
        self._lock = threading.Lock()
        self._beating = threading.Event()

    def run(self) -> JobState | Lease | None:
        job, jobs = self.job, self.jobs
        self.journal.write("claimed", attempt=job.attempts, input=job.input_key)
        beat = threading.Thread(target=self.heartbeat, daemon=True)
        beat.start()
        segments = ObjectSegments(self.context.system, keys.work(job.id))
        try:
            return self._succeed(*self.execute(segments), segments)
        except Cancelled:
            if self.lease == Lease.LOST:  # another worker runs the job now: leave its work area alone
                self.journal.write("lease lost", note="stopped; another worker has the job")
                return Lease.LOST
            if self.worker.persist(jobs.cancelled, job.id, self.worker.id, self._progress["chunks_done"]):
                # Its finished chunks stay in its work area: a retry resumes from them (retention removes them).
                self.journal.write("cancelled", chunks_kept=self._progress["chunks_done"])
            return JobState.CANCELLED
        except PERMANENT as exc:
            reason = public_reason(str(exc), self.settings)  # a tenant reads it: no worker paths
            state = self.worker.persist(jobs.fail, job.id, self.worker.id, reason, retry=False)
            self.journal.write("failed", reason=str(exc))
            return state
        except Exception as exc:  # noqa: BLE001 - anything else may pass: retry until attempts run out
            text = str(exc) if isinstance(exc, RestyleError) else f"{type(exc).__name__}: {exc}"
            reason = public_reason(text, self.settings)
            state = self.worker.persist(jobs.fail, job.id, self.worker.id, reason, retry=True)
            self.journal.write("error", reason=reason, next_state=state)
            log.warning("job %s: %s (%s)", job.id, reason, state)
            return state
        finally:
            self._beating.set()
            beat.join()
            segments.close()
            with contextlib.suppress(Exception):
                jobs.worker_alive(self.worker.id, None)

    def execute(self, segments: ObjectSegments) -> tuple[RunReport, str]:
        """Fetch the input, run the pipeline, deliver the output and the stills: (the report, the output's key)."""
        job, context, settings = self.job, self.context, self.settings
        if job.batch_id:  # a batch's unit: each of its items by its content (restyle.service.units)
            return units.run_unit(self)
        with tempfile.TemporaryDirectory(prefix=f"restyle-job-{job.id}-", dir=scratch_dir(settings)) as tmp:
            # registered names and pictures -> local files
            spec = local_spec(context, job.params, job.owner, job.params_problem)
            records = is_records(job.params)
            # No part of the user's name on the local copy: its format is read from its content alone.
            source = Path(tmp) / "input"
            context.data.get_file(job.input_key, source)
            # Records go to a .jsonl; a video to the container its spec asks for, or (auto) the input's family
            # (.ts stays .ts, .mkv .mkv).
            stem, container = Path(job.input_key).stem, spec.output.container
            suffix = output_suffix(job.input_key) if container == "auto" else f".{container}"
            target = Path(tmp) / (f"{stem}.jsonl" if records else f"{stem}-restyled{suffix}")
            # Workers on other machines (the pipeline asks its engine) read the input through a presigned link.
            shared = not context.data.is_local
            report = run(
                source,
                target,
                spec,
                settings=settings,
                work=segments,
                input_id=f"{job.input_key}@{job.input_etag}",
                on_progress=self.on_progress,
                input_url=context.data.presign(job.input_key, 24 * 3600) if shared else None,
                hooks=Hooks(on_plan=self.on_plan, on_chunk=self.on_chunk, cancel=self.cancel),
                engines=self.worker.engine,
            )
            output_key = keys.output(job.id, target.name)
            context.data.put_file(target, output_key)
            self.worker.stills(job.id, source, None if records else target)
        return report, output_key

    def _succeed(self, report: RunReport, output_key: str, segments: ObjectSegments) -> JobState | Lease:
        figures = _figures(report)
        if not self.worker.persist(
            self.jobs.succeed,
            self.job.id,
            self.worker.id,
            output_key,
            figures,
            frames_done=report.frames,
            frames_total=report.frames,
            chunks_done=report.chunks,
            chunks_total=report.chunks,
        ):
            self.journal.write(
                "lease lost", note="finished after another worker took the job; its work area is left to it"
            )
            return Lease.LOST
        self.journal.write("succeeded", output=output_key, **figures)
        segments.discard()
        return JobState.SUCCEEDED

    # -- the heartbeat thread, and the pipeline's hooks --------------------------------------------

    def heartbeat(self) -> None:
        """Often enough for live progress, and well inside the lease; a lease no longer held cancels the run."""
        while not self._beating.wait(min(self.settings.lease_seconds / 4, 2.0)):
            try:
                with self._lock:
                    progress = dict(self._progress)
                self.lease = self.jobs.heartbeat(self.job.id, self.worker.id, self.settings.lease_seconds, **progress)
                if self.lease != Lease.HELD:
                    self.cancel.set()
                self.jobs.worker_alive(self.worker.id, self.job.id)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the lease has slack
                log.warning("heartbeat failed: %s", exc)

    def on_progress(self, done: int, total: int) -> None:
        with self._lock:
            self._progress["frames_done"], self._progress["frames_total"] = done, total

    def on_plan(self, chunks: int, reused: int) -> None:
        with self._lock:
            self._progress["chunks_total"], self._progress["chunks_done"] = chunks, reused
        self.journal.write("planned", chunks=chunks, reused=reused)

    def on_chunk(self, result: ChunkResult) -> None:
        with self._lock:
            self._progress["chunks_done"] += 1
        try:  # bookkeeping only: the chunk is done because its segment is stored
            self.worker.persist(
                self.jobs.chunk_done, self.job.id, self.worker.id, result.index, result.frames, result.wall_s
            )
        except Exception as exc:  # noqa: BLE001 - bookkeeping only: the stored segment is what counts
            log.warning("chunk %d of job %s not recorded: %s", result.index, self.job.id, exc)
        self.journal.write("chunk", chunk=result.index, frames=result.frames, seconds=round(result.wall_s, 3))


def _figures(report: RunReport) -> dict:
    data = report.to_dict()
    keys = (
        "frames",
        "chunks",
        "chunks_reused",
        "chunks_retried",
        "seconds",
        "busy_s",
        "fps",
        "workers",
        "threads",
        "backend",
        "precision",
        "precision_reason",
        "nodes",
        "width",
        "height",
        "duration_s",
        "notes",
        "output_check",
        "model",
        "records",
        "models_loaded",
    )
    return {key: data[key] for key in keys if data.get(key) is not None}
