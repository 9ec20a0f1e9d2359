"""One job: probe -> plan -> score chunks on an engine -> deliver.

A chunk is done when its part is in the work store; a run that finds a part reuses it,
so a killed run picks up where it stopped. The output appears at its path only when it
is whole (written under a temporary name, then renamed). What the output is (a video,
or a records model's JSON Lines) is the sink's business (:mod:`restyle.pipeline.sinks`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from restyle.config import Settings, load_settings
from restyle.engines import Engine
from restyle.engines.sizing import choose_layout
from restyle.errors import Cancelled, InputError, OutputError, WorkDirError
from restyle.files import FileRef, Link
from restyle.handlers.base import Handler, check, registered
from restyle.jobspec import JobSpec
from restyle.media.chunks import Chunk, plan_chunks
from restyle.media.deflicker import warmup_frames
from restyle.media.probe import VideoInfo, probe
from restyle.pipeline.chunk import ChunkResult, ChunkTask, score_chunk
from restyle.pipeline.report import RunReport, runtime_figures
from restyle.pipeline.sinks import SINKS, Delivered, Planned, Sink
from restyle.pipeline.workers import Engines, engine_for, shared_files
from restyle.runtime import Runtime
from restyle.stores.segments import CarriedSegments, FolderSegments, SegmentStore

log = logging.getLogger("restyle")

Progress = Callable[[int, int], None]  # (frames done, frames in all)


@dataclass
class Hooks:
    """What a service hears while a run goes on, and how it stops one."""

    on_plan: Callable[[int, int], None] | None = None  # (chunks, chunks already done)
    on_chunk: Callable[[ChunkResult], None] | None = None  # each chunk as it is stored
    cancel: threading.Event | None = None  # set it to stop at the next frame batch, keeping finished chunks


@dataclass(frozen=True)
class Job:
    """One run's question: what to score into what, how, and who listens."""

    input: Path
    output: Path
    spec: JobSpec
    handler: Handler
    settings: Settings
    input_id: str | None = None
    input_url: str | None = None
    on_progress: Progress | None = None
    hooks: Hooks = field(default_factory=Hooks)


@dataclass(frozen=True)
class Plan:
    """What a run will do: its chunks, the part each writes and under what name, the tasks still to score."""

    chunks: list[Chunk]
    planned: Planned
    names: dict[int, str]  # chunk index -> part name in the work store
    tasks: list[ChunkTask]


def run(
    input: str | Path,
    output: str | Path,
    spec: JobSpec | None = None,
    *,
    settings: Settings | None = None,
    work: str | Path | SegmentStore | None = None,
    input_id: str | None = None,
    input_url: str | None = None,
    engine: Engine | None = None,
    engines: Callable[[int], Engine] | None = None,
    on_progress: Progress | None = None,
    hooks: Hooks | None = None,
) -> RunReport:
    """Score the video ``input`` into ``output`` as ``spec`` says (default: style 0).

    A model whose output is pictures makes a video (or a folder of images); one whose
    output is records (a detector) makes a JSON Lines file, one line per frame.

    ``on_progress(frames done, frames)`` hears the frames as they are encoded. ``work``
    keeps finished chunks (a folder, or any SegmentStore) so that running again resumes;
    without it they live in a temporary folder, removed at the end. Segments are filed
    under a key made of the input (``input_id``, or its path, size and mtime), the model
    and the encoding, so different settings never mix. ``input_url`` is where workers on
    other machines read the input (a presigned link), used when the engine is remote.
    ``engines(workers)`` gives the engine to run on when ``engine`` is not given: a
    service worker keeps its pools (and their loaded models) from one job to the next.
    """
    settings = settings or load_settings()
    spec = spec or JobSpec()
    handler = check(spec)
    given = engine or engines
    if Path(input).is_dir():  # a folder is a batch: its own report (a row per item), its own function
        raise InputError(f"{input} is a folder: score a batch with run_batch({str(input)!r}, OUTPUT_FOLDER)")
    job = Job(Path(input), Path(output), spec, handler, settings, input_id, input_url, on_progress, hooks or Hooks())
    with _segments(work) as segments:
        return _run_video(job, segments, given)


def _run_video(job: Job, segments: SegmentStore, given: Engines | None) -> RunReport:
    """Probe, plan, score, deliver: one straight line."""
    started, began = time.perf_counter(), time.time()
    seconds: dict[str, float] = {}
    sink = SINKS[job.handler.output]
    check_output(job.input, job.output)
    label = job.handler.label(job.spec)
    sink.check(job.output, label)
    info = probe(job.input, job.settings)
    seconds["probe"] = time.perf_counter() - started
    smooths = job.spec.deflicker > 0
    runtime, workers = choose_layout(job.settings, info.width * info.height, job.handler.network, smooths)
    with engine_for(job.settings, workers, given) as engine:
        loads, redone = engine.loads, engine.redone
        clock = time.perf_counter()
        plan = _plan(job, info, sink, engine, segments)
        seconds["plan"] = time.perf_counter() - clock
        if job.hooks.on_plan:
            job.hooks.on_plan(len(plan.chunks), len(plan.chunks) - len(plan.tasks))
        clock = time.perf_counter()
        results = _score(job, info, plan, engine, runtime, segments)
        seconds["score"] = time.perf_counter() - clock
        clock = time.perf_counter()
        delivered = _deliver(job, info, sink, plan, segments, label)
        seconds["assemble"] = time.perf_counter() - clock
        seconds["total"] = time.perf_counter() - started
        if delivered.frames != info.frame_count:
            delivered.notes.append(
                f"the input has {info.frame_count} frames but {delivered.frames} could be decoded and scored"
            )
        for note in delivered.notes:
            log.warning(note)
        width, height = plan.planned.part.size
        first = min((r.first_frame_at for r in results if r.first_frame_at), default=None)
        return RunReport(
            input=str(job.input),
            output=str(job.output),
            model=label,
            frames=delivered.frames,
            chunks=len(plan.chunks),
            chunks_reused=len(plan.chunks) - len(plan.tasks),
            chunks_retried=engine.redone - redone,
            models_loaded=engine.loads - loads,
            width=width,
            height=height,
            duration_s=round(info.duration_s, 3),
            workers=engine.workers,
            threads=runtime.threads,
            **runtime_figures(results, runtime.choose(job.handler.network, job.handler.fidelity_cases(job.spec))),
            seconds={k: round(v, 3) for k, v in seconds.items()},
            busy_s=_busy(results, job.spec.deflicker),
            deflicker=job.spec.deflicker,
            chunk_starts=[c.first_frame for c in plan.chunks],
            notes=delivered.notes,
            records=delivered.records,
            output_check=delivered.output_check,
            first_frame_at=first,
            first_frame_s=None if first is None else round(first - began, 3),
        )


def _plan(job: Job, info: VideoInfo, sink: Sink, engine: Engine, segments: SegmentStore) -> Plan:
    """The chunks, each one's part name, and the tasks of those not stored yet, with every file by reference.

    Workers may be on machines that see nothing of this one's disk: every file goes by a reference the
    engine makes, and parts they cannot store themselves come back with their results.
    """
    chunks = _chunks(info, job.spec, job.settings, engine.workers)
    planned = sink.plan(info, job.output, job.spec, job.handler, job.settings)
    key = _work_key(info, job.input_id, job.spec.fingerprint(job.handler.file_fields), planned.key)
    names = {c.index: f"{key}/{c.name}.{planned.part.suffix}" for c in chunks}
    todo = [c for c in chunks if not segments.has(names[c.index])]
    if not todo:  # a run that reuses every chunk ships nothing
        return Plan(chunks, planned, names, [])
    remote = engine.remote
    source: FileRef = Link(job.input_url) if job.input_url and remote else engine.share(Path(info.path))
    files = shared_files(job.spec, job.handler, engine)
    store = CarriedSegments() if remote and not segments.reachable_anywhere else segments
    tasks = [ChunkTask(source, info.video_index, c, planned.part, store, names[c.index], job.spec, files) for c in todo]
    return Plan(chunks, planned, names, tasks)


def _score(
    job: Job, info: VideoInfo, plan: Plan, engine: Engine, runtime: Runtime, segments: SegmentStore
) -> list[ChunkResult]:
    """Score the tasks on the engine, storing each part that comes back carried; stop at a cancel."""
    done = sum(c.frame_count for c in plan.chunks) - sum(t.chunk.frame_count for t in plan.tasks)
    progress = _counter(done, info.frame_count, job.on_progress)
    results: list[ChunkResult] = []
    cancel = job.hooks.cancel
    try:
        load = job.handler.load_spec(job.spec)
        for result in engine.map(score_chunk, load, runtime, plan.tasks, progress, cancel=cancel):
            if result.segment is not None:  # carried back from a worker that cannot reach the store: stored here
                segments.put_bytes(result.segment_name, result.segment)
                result = replace(result, segment=None)
            results.append(result)
            if job.hooks.on_chunk:
                job.hooks.on_chunk(result)
    except Cancelled:
        if cancel is None or not cancel.is_set():
            raise
        # the engine stopped its tasks at their next frame batch; what finished is stored
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"cancelled after {len(results)} of {len(plan.tasks)} chunks; finished chunks are kept")
    return results


def _deliver(job: Job, info: VideoInfo, sink: Sink, plan: Plan, segments: SegmentStore, label: str) -> Delivered:
    """The output, from the stored parts in order: written under a temporary name, renamed when whole."""
    partial = job.output.with_name(f".{job.output.name}.partial")
    try:
        stored = [(c, segments.fetch(plan.names[c.index])) for c in plan.chunks]
        delivered = sink.deliver(info, stored, partial, plan.planned, label)
        os.replace(partial, job.output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return delivered


def _busy(results: list[ChunkResult], deflicker: float) -> dict[str, float]:
    busy = {
        "decode": round(sum(r.decode_s for r in results), 3),
        "infer": round(sum(r.infer_s for r in results), 3),
        "encode": round(sum(r.encode_s for r in results), 3),
    }
    return busy | ({"smooth": round(sum(r.smooth_s for r in results), 3)} if deflicker else {})


def plan(
    input: str | Path, spec: JobSpec | None = None, settings: Settings | None = None, workers: int | None = None
) -> list[Chunk]:
    """The chunks ``run`` cuts ``input`` into for ``spec`` with these settings here (or ``workers`` workers)."""
    settings = settings or load_settings()
    spec = spec or JobSpec()
    info = probe(Path(input), settings)
    if workers is None:
        handler = registered().get(spec.model)
        network = handler.network if handler else None
        _, workers = choose_layout(settings, info.width * info.height, network, spec.deflicker > 0)
    return _chunks(info, spec, settings, workers or 1)


def _chunks(info: VideoInfo, spec: JobSpec, settings: Settings, workers: int) -> list[Chunk]:
    """The one place the settings become a plan: what run scores and what plan() reports must agree."""
    return plan_chunks(info, settings.chunk_seconds, workers, lead_frames=warmup_frames(spec.deflicker))


def check_output(input: Path, output: Path) -> None:
    """Refuse, before any work, an output that cannot be written."""
    if output.is_dir():
        raise OutputError(f"output {output} is a folder; give a file name such as {output / 'styled.mp4'}")
    if output.exists() and input.exists() and output.resolve() == input.resolve():
        raise OutputError(f"output {output} is the input; write somewhere else")
    parent = output.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {output}: folder {parent} does not exist")
    try:  # os.access says yes to root on read-only mounts; a real file says the truth
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{output.name}.", suffix=".check"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {output}: folder {parent} is not writable ({exc.strerror})") from None


def _work_key(info: VideoInfo, input_id: str | None, fingerprint: str, output_key: str) -> str:
    """One key per (input, whole JobSpec with its files, output): parts made otherwise are never reused."""
    if input_id is None:
        stat = Path(info.path).stat()
        input_id = f"{Path(info.path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(f"{input_id}|{fingerprint}|{output_key}".encode()).hexdigest()[:16]


@contextmanager
def _segments(work: str | Path | SegmentStore | None) -> Iterator[SegmentStore]:
    """The work store: the one given, a folder (made if need be), or a temporary folder removed after."""
    if work is None:
        temporary = FolderSegments(Path(tempfile.mkdtemp(prefix="restyle-")))
        try:
            yield temporary
        finally:
            temporary.discard()
        return
    if not isinstance(work, (str, Path)):
        yield work
        return
    folder = Path(work)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkDirError(f"cannot use work directory {folder}: {exc.strerror}") from None
    yield FolderSegments(folder)


def _counter(done: int, total: int, on_progress: Progress | None) -> Callable[[int], None]:
    state = {"done": done}
    if on_progress:
        on_progress(done, total)

    def add(frames: int) -> None:
        state["done"] += frames
        if on_progress:
            on_progress(state["done"], total)

    return add


__all__ = ["Cancelled", "Hooks", "Job", "RunReport", "check_output", "engine_for", "plan", "run"]
