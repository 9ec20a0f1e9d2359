"""A batch's unit, run by a worker: each item read for what its content is, each ending alone.

A unit is an ordinary job (:mod:`restyle.service.worker` claims it, heartbeats it, retries it);
its items are the batch's (:mod:`restyle.stores.batches`). The content decides, never the name:
an item that reads as a picture is scored with the unit's other pictures, 16 to an engine task
and same-size frames in one model call (:mod:`restyle.pipeline.images`); anything else goes
through the video pipeline, with its chunks, parallelism and resume (segments under
``work/<job>/<seq>``). A bad item fails alone with its reason (a picture that is text, an empty
or random file); the unit fails only when none of its items could be scored, and a failure
that is not the input's (a store away) retries the unit, which then takes up only the items
still open.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from restyle.config import Settings
from restyle.engines import Engine
from restyle.engines.sizing import choose_layout
from restyle.errors import Cancelled, InputError, ModelError, OutputError
from restyle.handlers.base import check
from restyle.jobspec import JobSpec
from restyle.pipeline import ChunkResult, Hooks, RunReport, run
from restyle.pipeline.images import (
    IMAGE_FORMATS,
    ImageBatchResult,
    ImageItem,
    ImageOutcome,
    in_batches,
    is_image,
    score_images,
)
from restyle.pipeline.workers import engine_for, shared_files
from restyle.service import batches, keys
from restyle.service.context import Context, public_reason, scratch_dir
from restyle.service.specs import is_records, local_spec
from restyle.stores.batches import Batch, Item, ItemEnd
from restyle.stores.jobs import Job
from restyle.stores.segments import ObjectSegments
from restyle.stores.states import ITEM_OPEN, ItemState

PERMANENT = (InputError, ModelError, OutputError)  # the item's own fault: it fails, the others go on
BUDGET_PIXELS = 1280 * 720  # pictures vary in size: workers' memory is budgeted for 720p


class Engines(Protocol):
    def engine(self, workers: int) -> Engine: ...


class UnitHost(Protocol):
    """What the worker's run of a job (``worker.JobRun``) lends a unit: the job, its stores, its worker's
    engines (kept from job to job) and the hooks its heartbeat reports."""

    job: Job
    context: Context
    settings: Settings
    cancel: threading.Event
    worker: Engines

    def on_progress(self, done: int, total: int) -> None: ...

    def on_plan(self, chunks: int, reused: int) -> None: ...

    def on_chunk(self, result: ChunkResult) -> None: ...


@dataclass
class Unit:
    host: UnitHost
    batch: Batch
    spec: JobSpec
    records: bool
    folder: Path

    @property
    def context(self) -> Context:
        return self.host.context

    def end(self, ends: list[ItemEnd]) -> None:
        self.context.batches.end_items(self.batch.id, ends)

    def output_of(self, item: Item, kind: str) -> tuple[str, str | None]:
        """(the output's key, or "" for none; a reason when it may not be written: another input's name)."""
        name = batches.mirrored(batches.relative(self.batch, item.input_key), kind, self.records)
        if not name:
            return "", None
        if name != batches.relative(self.batch, item.input_key) and self.context.batches.has_input(
            self.batch.id, self.batch.source + name
        ):
            return "", f"its output {name} would be another input's name; rename one of them"
        return self.batch.output + name, None


def run_unit(host: UnitHost) -> tuple[RunReport, str]:
    """Score the unit's open items; (a report of the unit, the key of an output it wrote)."""
    job, context = host.job, host.context
    batch = context.batches.get(job.batch_id or "")
    if batch is None:
        raise InputError(f"the batch of unit {job.id} is gone")
    started = time.perf_counter()
    context.batches.start_unit(job.id)
    spec = local_spec(context, job.params, job.owner, job.params_problem)
    items = [item for item in context.batches.unit_items(job.id) if item.state in ITEM_OPEN]
    with tempfile.TemporaryDirectory(prefix=f"restyle-job-{job.id}-", dir=scratch_dir(host.settings)) as tmp:
        unit = Unit(host, batch, spec, is_records(job.params), Path(tmp))
        fetched = [(item, _fetch(unit, item)) for item in items]
        pictures = [(item, path) for item, path in fetched if is_image(str(path))]
        _score_images(unit, pictures)
        for item, path in fetched:
            if host.cancel.is_set():
                raise Cancelled("the unit was cancelled")
            if (item, path) not in pictures:
                unit.end([_score_video(unit, item, path)])
    ended = context.batches.unit_items(job.id)
    scored = [item for item in ended if item.state == ItemState.SUCCEEDED]
    if not scored:
        failed = next((item for item in ended if item.state == ItemState.FAILED), None)
        raise InputError(failed.reason if failed and failed.reason else "no item of the unit could be scored")
    return _report(unit, scored, time.perf_counter() - started), scored[0].output_key or ""


def _fetch(unit: Unit, item: Item) -> Path:
    """The item's bytes in a file named as the item is (its reasons name it), in a folder of its own."""
    folder = unit.folder / str(item.seq)
    folder.mkdir()
    path = folder / (PurePosixPath(item.input_key).name or "input")
    unit.context.data.get_file(item.input_key, path)
    return path


def _score_images(unit: Unit, pictures: list[tuple[Item, Path]]) -> None:
    """Every picture of the unit through the engine, 16 to a task; each item ends as its task comes back."""
    planned, refused = [], []
    for item, path in pictures:
        key, why = unit.output_of(item, "image")
        if why:
            refused.append(ItemEnd(item.seq, ItemState.FAILED, why, kind="image"))
        else:  # the target's suffix says how the output is encoded
            planned.append((item, path, key, f"{item.seq}{PurePosixPath(key).suffix or '.png'}"))
    unit.end(refused)
    if planned:
        _run_images(unit, planned)


def _run_images(unit: Unit, planned: list[tuple[Item, Path, str, str]]) -> None:
    host = unit.host
    handler = check(unit.spec)
    runtime, workers = choose_layout(host.settings, BUDGET_PIXELS, handler.network)
    by_target = {target: (item, key) for item, _, key, target in planned}
    done = [0]

    def progress(frames: int) -> None:
        done[0] += frames
        host.on_progress(done[0], len(planned))

    with engine_for(host.settings, min(workers, len(planned)) if workers else 0, host.worker.engine) as engine:
        files = shared_files(unit.spec, handler, engine)
        items = [ImageItem(engine.share(path), target) for _, path, _, target in planned]
        records: list[dict] = []
        for result in engine.map(
            score_images, handler.load_spec(unit.spec), runtime, in_batches(items, unit.spec, files), progress
        ):
            ends = [_image_end(unit, result, end, *by_target[end.target], records) for end in result.outcomes]
            if records:  # stored before its items end: an item that succeeded has its record kept
                lines = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in records)
                unit.context.system.put_bytes(lines.encode(), keys.unit_records(unit.batch.id, host.job.id))
            unit.end(ends)


def _image_end(
    unit: Unit, result: ImageBatchResult, outcome: ImageOutcome, item: Item, key: str, records: list[dict]
) -> ItemEnd:
    """How one picture ended: its output stored (or its record kept for the predictions), or its reason."""
    facts = {
        "kind": "image",
        "seconds": result.seconds / max(1, len(result.outcomes)),
        "runtime": result.runtime,
        "precision": result.runtime.rpartition(" ")[2],
        "node": result.node or "local",
    }
    if outcome.reason:
        return ItemEnd(item.seq, ItemState.FAILED, public_reason(outcome.reason, unit.host.settings), **facts)
    if outcome.record is not None:
        source = batches.relative(unit.batch, item.input_key)
        records.append({"input": source, "frame": 0, "time": 0.0} | outcome.record)
    else:
        unit.context.data.put_bytes(outcome.data, key)
    return ItemEnd(item.seq, ItemState.SUCCEEDED, output_key=key or None, frames=1, **facts)


def _score_video(unit: Unit, item: Item, path: Path) -> ItemEnd:
    """One item that is no picture, through the video pipeline; its end (failed with the reason when its
    content is no video restyle reads either)."""
    host, context, settings = unit.host, unit.context, unit.host.settings
    key, why = unit.output_of(item, "video")
    if why:
        return ItemEnd(item.seq, ItemState.FAILED, why)
    target = unit.folder / f"{item.seq}-out" / PurePosixPath(key).name
    target.parent.mkdir()
    segments = ObjectSegments(context.system, keys.unit_work(host.job.id, item.seq))
    try:
        report = run(
            path,
            target,
            unit.spec,
            settings=settings,
            work=segments,
            input_id=f"{item.input_key}@{item.etag}",
            on_progress=host.on_progress,
            input_url=None if context.data.is_local else context.data.presign(item.input_key, 24 * 3600),
            hooks=Hooks(on_plan=host.on_plan, on_chunk=host.on_chunk, cancel=host.cancel),
            engines=host.worker.engine,
        )
    except PERMANENT as exc:
        reason = public_reason(str(exc).replace(str(path), path.name), settings)
        if PurePosixPath(item.input_key).suffix.lower() in batches.IMAGE_NAMES:
            formats = ", ".join(IMAGE_FORMATS)
            reason = f"{path.name} is neither a picture restyle reads ({formats}) nor a video: {reason}"
        return ItemEnd(item.seq, ItemState.FAILED, reason)
    finally:
        segments.close()
    context.data.put_file(target, key)
    segments.discard()
    return ItemEnd(
        item.seq,
        ItemState.SUCCEEDED,
        kind="video",
        output_key=key,
        frames=report.frames,
        seconds=report.seconds.get("total", 0.0),
        runtime=f"{report.backend} {report.precision}",
        precision=report.precision,
        node=",".join(sorted(report.nodes)) or "local",
    )


def _report(unit: Unit, scored: list[Item], seconds: float) -> RunReport:
    frames = sum(item.frames for item in scored)
    runtime = scored[0].runtime
    return RunReport(
        input=unit.batch.source,
        output=unit.batch.output,
        model=batches.label(unit.host.job.params),
        frames=frames,
        chunks=len(scored),
        chunks_reused=0,
        chunks_retried=0,
        width=None,
        height=None,
        duration_s=None,
        workers=0,
        threads=0,
        backend=runtime.partition(" ")[0],
        precision=scored[0].precision or "f32",
        seconds={"total": round(seconds, 3)},
    )
