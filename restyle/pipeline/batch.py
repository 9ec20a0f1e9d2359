"""A batch: many inputs (a folder walked, or a list of paths), one JobSpec, one manifest; a bad item fails alone.

Pictures travel in mini-batches (:mod:`restyle.pipeline.images`: many per engine task, same-size
frames in one model call); each video runs as its own job (:func:`restyle.pipeline.run.run`) on the
same engine, keeping its chunks, parallelism and resume. Every item ends with a state and, when it
failed, a reason; ``max_failures`` says when the batch stops instead.

The manifest is written as items end (one JSON line each, appended) and rewritten whole, in input
order, at the end (:mod:`restyle.pipeline.manifest`). Running the same batch again reads it: an
item whose output is stored, for the same input (size and mtime) and the same JobSpec fingerprint,
is reused, not redone; after a kill, only what was not stored is done again (a video's finished
chunks too: they wait in the output's ``.restyle-work`` folder until the batch ends).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from restyle.config import Settings, load_settings
from restyle.engines import Engine
from restyle.engines.sizing import choose_layout
from restyle.errors import Cancelled, InputError, ModelError, OutputError, RestyleError
from restyle.handlers.base import Handler, OutputKind, check
from restyle.jobspec import Allowance, JobSpec
from restyle.media.probe import probe
from restyle.pipeline.images import (
    IMAGE_FORMATS,
    IMAGES_PER_TASK,
    ImageItem,
    ImageOutcome,
    in_batches,
    is_image,
    score_images,
)
from restyle.pipeline.listing import WORK_FOLDER, BatchItem, Outputs, listed, mirrored_output, walk
from restyle.pipeline.manifest import MANIFEST_JSONL, STORED, ItemState, ManifestRow, read_journal
from restyle.pipeline.outcomes import BatchProgress, BatchReport, Journal, image_row, video_row
from restyle.pipeline.run import Hooks, run
from restyle.pipeline.workers import Engines, engine_for, shared_files

log = logging.getLogger("restyle")

BUDGET_PIXELS = 1280 * 720  # pictures' sizes vary: workers' memory is budgeted for 720p
PERMANENT = (InputError, ModelError, OutputError)  # the same input would meet them again: no retry
TASKS_IN_FLIGHT = 8  # image tasks per worker handed to the engine at a time: a stop is heard soon


@dataclass
class Batch:
    """One batch's question and its running state."""

    items: list[BatchItem]
    root: str  # where the inputs are on this machine (their names in the manifest are under it)
    target: Path
    spec: JobSpec
    handler: Handler
    settings: Settings
    allowance: Allowance | None
    journal: Journal
    on_item: Callable[[ManifestRow], None] | None = None
    on_progress: Callable[[BatchProgress], None] | None = None
    cancel: threading.Event | None = None
    rows: dict[str, ManifestRow] = field(default_factory=dict)
    stopped: str = ""  # why the batch stopped early ("" while it runs on)
    progress: BatchProgress = field(init=False)  # counted as items end

    def __post_init__(self) -> None:
        self.progress = BatchProgress(items=len(self.items))

    def end(self, row: ManifestRow) -> None:
        if row.reason:  # the input is named by the row; a reason need not repeat where this machine keeps it
            row = row.model_copy(update={"reason": row.reason.replace(f"{self.root}{os.sep}", "")})
        self.rows[row.input] = row
        self.progress = self.progress.plus(row)  # counted as they end: a batch of 100,000 never recounts
        self.journal.append(row)
        if self.on_item:
            self.on_item(row)
        failed = self.progress.failed
        if not self.stopped and self.allowance and self.allowance.exceeded(failed, len(self.items)):
            self.stopped = f"{failed} of {len(self.items)} items failed: over --max-failures {self.allowance}"
        if not self.stopped and self.cancel is not None and self.cancel.is_set():
            self.stopped = "cancelled"
        if self.on_progress:
            self.on_progress(self.progress)


def run_batch(
    source: str | Path,
    target: str | Path,
    spec: JobSpec | None = None,
    *,
    settings: Settings | None = None,
    engine: Engines | None = None,
    max_failures: Allowance | str | None = None,
    list_file: bool = False,
    on_item: Callable[[ManifestRow], None] | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> BatchReport:
    """Score every input under ``source`` (a folder; with ``list_file``, a file naming one path a line) into
    ``target``, mirroring the tree, with one manifest. The report says each item's state and reason."""
    started = time.perf_counter()
    settings = settings or load_settings()
    spec = spec or JobSpec()
    handler = check(spec)
    source, target = Path(source), Path(target)
    try:
        allowance = max_failures if isinstance(max_failures, Allowance) else Allowance.parse(max_failures)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    root, items = _inputs(source, target, list_file)
    fingerprint = spec.fingerprint(handler.file_fields)
    journal = Journal(target / MANIFEST_JSONL, fingerprint)
    batch = Batch(
        items,
        str(root),
        target,
        spec,
        handler,
        settings,
        allowance,
        journal,
        on_item,
        on_progress,
        cancel,
    )
    workers = _score(batch, read_journal(target / MANIFEST_JSONL), engine)
    for item in items:  # what a stop left undone
        if item.input not in batch.rows:
            batch.end(
                ManifestRow(
                    input=item.input,
                    size=item.size,
                    version=item.version,
                    state=ItemState.NOT_RUN,
                    reason=f"not run: the batch stopped ({batch.stopped})",
                    fingerprint=fingerprint,
                )
            )
    report = BatchReport.of(
        source,
        target,
        handler.label(spec),
        [batch.rows[i.input] for i in items],
        batch.stopped,
        workers,
        time.perf_counter() - started,
    )
    journal.finish(report.rows, handler.output == OutputKind.RECORDS)
    if not batch.stopped:
        shutil.rmtree(target / WORK_FOLDER, ignore_errors=True)
    return report


def _score(batch: Batch, before: dict[str, ManifestRow], engine: Engines | None) -> int:
    """Sort the items (ending those reused or refused) and score the rest; the workers it ran on (0: none)."""
    runtime, planned = choose_layout(batch.settings, BUDGET_PIXELS, batch.handler.network)
    with ExitStack() as stack:
        pool: Engine | None = None
        if not before:  # a fresh batch has work: its workers start, and load the model, while its inputs are read
            pool = stack.enter_context(engine_for(batch.settings, planned, engine))
            pool.warm(batch.handler.load_spec(batch.spec), runtime)
        images, videos = _sort(batch, before)
        if batch.on_progress:
            batch.on_progress(batch.progress)
        if not (images or videos):
            return 0
        pool = pool or stack.enter_context(engine_for(batch.settings, planned, engine))
        _score_images(batch, images, pool, runtime)
        _score_videos(batch, videos, pool)
        return pool.workers


def _inputs(source: Path, target: Path, list_file: bool) -> tuple[Path, list[BatchItem]]:
    """The folder the items' names are under and the items, after refusing what cannot be a batch and making
    ``target``."""
    if not source.exists():
        raise InputError(f"{source} does not exist")
    if not list_file and not source.is_dir():
        raise InputError(f"{source} is not a folder (a list of paths is given with --list)")
    if target.exists() and not target.is_dir():
        raise OutputError(f"output {target} is a file; for a batch give a folder")
    if not list_file and target.resolve() == source.resolve():
        raise OutputError(f"output {target} is the input folder; outputs would overwrite their inputs")
    root, items = listed(source) if list_file else (source, list(walk(source, skip=target)))
    if not items:
        raise InputError(f"{source} holds no files (hidden files and links are not read)")
    try:
        (target / WORK_FOLDER).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {target}: {exc.strerror}") from None
    return root, items


Todo = list[tuple[BatchItem, str]]  # items still to score, each with its output's name


def _sort(batch: Batch, journal: dict[str, ManifestRow]) -> tuple[Todo, Todo]:
    """Read each item's kind from its content and claim its output; end at once those stored before (reused)
    and those that cannot be a batch's item; give the pictures and the videos still to score."""
    images, videos, outputs = [], [], Outputs()
    for item in batch.items:
        kind = "image" if is_image(str(item.path)) else "video"
        output = mirrored_output(item.input, kind, batch.handler, batch.spec)
        base = ManifestRow(
            input=item.input, size=item.size, version=item.version, kind=kind, fingerprint=batch.journal.fingerprint
        )
        try:
            outputs.claim(output, item.input)
        except InputError as exc:
            batch.end(base.model_copy(update={"state": ItemState.FAILED, "reason": str(exc)}))
            continue
        before = journal.get(item.input)
        if before is not None and _stored(before, base, batch.target / output):
            batch.end(before.model_copy(update={"state": ItemState.REUSED}))
        else:
            (images if kind == "image" else videos).append((item, output))
    return images, videos


def _stored(before: ManifestRow, now: ManifestRow, output: Path) -> bool:
    return (
        before.state in STORED
        and (before.size, before.version, before.fingerprint) == (now.size, now.version, now.fingerprint)
        and output.is_file()
    )


def _score_images(batch: Batch, images: Todo, engine: Engine, runtime) -> None:
    """The pictures, a window of engine tasks at a time (so that a stop is heard soon, and a Ray cluster is
    shipped only the window's files), each written as it comes back."""
    files = shared_files(batch.spec, batch.handler, engine) if images else {}
    load = batch.handler.load_spec(batch.spec)
    window = TASKS_IN_FLIGHT * max(1, engine.workers) * IMAGES_PER_TASK
    for start in range(0, len(images), window):
        todo = {output: item for item, output in images[start : start + window]}
        for attempt in (1, 2):  # a worker lost (killed, out of memory, stuck) costs its window one more try
            if batch.stopped:
                return
            tasks = in_batches(
                [ImageItem(engine.share(i.path), output) for output, i in todo.items()], batch.spec, files
            )
            try:
                for result in engine.map(score_images, load, runtime, tasks):
                    for outcome in result.outcomes:
                        batch.end(
                            image_row(todo[outcome.target], outcome, result, batch.target, batch.journal.fingerprint)
                        )
                break
            except PERMANENT as exc:  # the model itself cannot run: every picture would fail the same way
                batch.stopped = str(exc)
                return
            except RestyleError as exc:
                todo = {output: item for output, item in todo.items() if item.input not in batch.rows}
                log.warning("%d pictures to try again: %s", len(todo), exc)
                if attempt == 2:
                    for item in todo.values():
                        batch.end(
                            image_row(
                                item, ImageOutcome("", reason=str(exc)), None, batch.target, batch.journal.fingerprint
                            )
                        )


def _score_videos(batch: Batch, videos: Todo, engine: Engine) -> None:
    """Each video as its own run on the batch's engine; a failure ends only its item (a transient one is
    retried once, its finished chunks kept)."""
    for item, output in videos:
        if batch.stopped:
            return
        clock = time.perf_counter()
        try:
            probe(item.path, batch.settings)
        except InputError as exc:  # nor a picture: is_image said so before
            reason = f"neither a picture ({', '.join(IMAGE_FORMATS)}) nor a video restyle reads: {exc}"
            batch.end(video_row(item, output, batch.journal.fingerprint, reason=reason).model_copy(update={"kind": ""}))
            continue
        path = batch.target / output
        path.parent.mkdir(parents=True, exist_ok=True)
        row = None
        for attempt in (1, 2):
            try:
                report = run(
                    item.path,
                    path,
                    batch.spec,
                    settings=batch.settings,
                    work=batch.target / WORK_FOLDER,
                    engine=engine,
                    hooks=Hooks(cancel=batch.cancel),
                    input_id=f"{item.input}|{item.size}|{item.version}",
                )
            except Cancelled:
                batch.stopped = "cancelled"
                return
            except RestyleError as exc:
                if attempt == 1 and not isinstance(exc, PERMANENT):
                    log.warning("%s failed (%s); trying it once more", item.input, exc)
                    continue
                row = video_row(item, output, batch.journal.fingerprint, reason=str(exc) or type(exc).__name__)
                break
            row = video_row(item, output, batch.journal.fingerprint, report=report)
            break
        batch.end(row.model_copy(update={"seconds": round(time.perf_counter() - clock, 3)}))


__all__ = ["BatchProgress", "BatchReport", "run_batch"]
