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
from restyle.handlers.base import Handler, check
from restyle.jobspec import JobSpec
from restyle.media.probe import probe
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
from restyle.pipeline.listing import mirrored_output
from restyle.pipeline.workers import engine_for, shared_files
from restyle.service import batches, keys
from restyle.service.context import Context, public_reason, scratch_dir
from restyle.service.specs import local_spec
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
    handler: Handler
    folder: Path

    @property
    def context(self) -> Context:
        return self.host.context

    def end(self, ends: list[ItemEnd]) -> None:
        self.context.batches.end_items(self.batch.id, ends)

    def output_of(self, item: Item, kind: str) -> tuple[str, str | None]:
        """(the output's key mirroring the input's; a reason when it may not be written there: a renamed output,
        ``photo.gif.png``, that is another input's name, which keeps its own)."""
        name = batches.relative(self.batch, item.input_key)
        output = mirrored_output(name, kind, self.handler, self.spec)
        if output != name and self.context.batches.has_input(self.batch.id, self.batch.source + output):
            return "", f"its output {output} would overwrite the output of the input of that name"
        return self.batch.output + output, None


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
        unit = Unit(host, batch, spec, check(spec), Path(tmp))
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
            planned.append((item, path, key, f"{item.seq}{PurePosixPath(key).suffix}"))
    unit.end(refused)
    if planned:
        _run_images(unit, planned)


def _run_images(unit: Unit, planned: list[tuple[Item, Path, str, str]]) -> None:
    host, handler = unit.host, unit.handler
    runtime, workers = choose_layout(host.settings, BUDGET_PIXELS, handler.network)
    by_target = {target: (item, key) for item, _, key, target in planned}
    done = [0]

    def progress(frames: int) -> None:
        done[0] += frames
        host.on_progress(done[0], len(planned))

    with engine_for(host.settings, workers, host.worker.engine) as engine:  # the worker's pool, kept from unit to unit
        files = shared_files(unit.spec, handler, engine)
        tasks = in_batches([ImageItem(engine.share(path), target) for _, path, _, target in planned], unit.spec, files)
        for result in engine.map(score_images, handler.load_spec(unit.spec), runtime, tasks, progress):
            unit.end([_image_end(unit, result, outcome, *by_target[outcome.target]) for outcome in result.outcomes])


def _image_end(unit: Unit, result: ImageBatchResult, outcome: ImageOutcome, item: Item, key: str) -> ItemEnd:
    """How one picture ended: its output stored before it ends (a records model's: one line), or its reason."""
    backend, _, precision = result.runtime.partition(" ")
    share = result.seconds / max(1, len(result.outcomes))
    facts = {"kind": "image", "seconds": share, "runtime": backend, "precision": precision, "node": result.node}
    if outcome.reason:
        return ItemEnd(item.seq, ItemState.FAILED, public_reason(outcome.reason, unit.host.settings), **facts)
    data = outcome.data
    if outcome.record is not None:  # as the CLI's door writes it: frame 0, the picture's size, the record
        line = {"frame": 0, "time": 0.0, "width": outcome.size[0], "height": outcome.size[1], **outcome.record}
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    unit.context.data.put_bytes(data, key)
    facts["node"] = result.node or "local"
    return ItemEnd(item.seq, ItemState.SUCCEEDED, output_key=key, frames=1, **facts)


def _score_video(unit: Unit, item: Item, path: Path) -> ItemEnd:
    """One item that is no picture, through the video pipeline; failed with the reason when its content is no
    video restyle reads either."""
    host, context, settings = unit.host, unit.context, unit.host.settings
    try:
        probe(path, settings)
    except InputError as exc:
        formats = ", ".join(IMAGE_FORMATS)
        return ItemEnd(
            item.seq,
            ItemState.FAILED,
            f"neither a picture ({formats}) nor a video restyle reads: {_said(unit, exc, path)}",
        )
    key, why = unit.output_of(item, "video")
    if why:
        return ItemEnd(item.seq, ItemState.FAILED, why, kind="video")
    target = unit.folder / f"{item.seq}-out" / PurePosixPath(key).name
    target.parent.mkdir()
    segments = ObjectSegments(context.system, keys.unit_work(host.job.id, item.seq))
    clock = time.perf_counter()
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
        return ItemEnd(item.seq, ItemState.FAILED, _said(unit, exc, path), kind="video")
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
        seconds=round(time.perf_counter() - clock, 3),
        runtime=report.backend,
        precision=report.precision,
        node=",".join(sorted(report.nodes)) or "local",
    )


def _said(unit: Unit, exc: Exception, path: Path) -> str:
    """An error's words for the item's owner: the item by its name, no worker's paths."""
    return public_reason(str(exc).replace(str(path), path.name), unit.host.settings)


def _report(unit: Unit, scored: list[Item], seconds: float) -> RunReport:
    return RunReport(
        input=unit.batch.source,
        output=unit.batch.output,
        model=batches.label(unit.host.job.params),
        frames=sum(item.frames for item in scored),
        chunks=len(scored),
        chunks_reused=0,
        chunks_retried=0,
        width=None,
        height=None,
        duration_s=None,
        workers=0,
        threads=0,
        backend=scored[0].runtime,
        precision=scored[0].precision or "f32",
        seconds={"total": round(seconds, 3)},
    )
