"""One job: probe -> plan -> score chunks on an engine -> assemble -> deliver.

A chunk is done when its segment is in the work directory; a run that finds a
segment reuses it, so a killed run picks up where it stopped. The output appears at
its path only when it is whole (written under a temporary name, then renamed).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from restyle.config import Settings, load_settings
from restyle.deflicker import warmup_frames
from restyle.engines import Engine, make_engine
from restyle.errors import Cancelled, InputError, OutputError, RestyleError, WorkDirError  # noqa: F401 - Cancelled is re-exported
from restyle.files import FileRef, Link
from restyle.media.assemble import assemble, container_for, plan_output
from restyle.media.chunks import Chunk, plan_chunks
from restyle.media.encode import EncodeSpec
from restyle.handlers.base import Handler, OutputKind, check
from restyle.jobspec import JobSpec
from restyle.layout import choose_layout, network_for
from restyle.media.probe import VideoInfo, probe
from restyle.media.verify import verify
from restyle.records import join_records
from restyle.report import RunReport
from restyle.score import ChunkResult, ChunkTask, score_chunk
from restyle.stores.segments import CarriedSegments, FolderSegments, SegmentStore

log = logging.getLogger("restyle")

Progress = Callable[[int, int], None]  # (frames done, frames in all)


@dataclass
class Hooks:
    """What a service hears while a run goes on, and how it stops one."""

    on_plan: Callable[[int, int], None] | None = None  # (chunks, chunks already done)
    on_chunk: Callable[[ChunkResult], None] | None = None  # each chunk as it is stored
    cancel: threading.Event | None = None  # set it to stop at the next chunk


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
    """Score ``input`` (a video, or a folder of images) into ``output`` as ``spec`` says (default: style 0).

    A model whose output is pictures makes a video (or a folder of images); one whose
    output is records (a detector) makes a JSON Lines file, one line per frame.

    ``on_progress(frames done, frames)`` hears the frames as they are encoded. ``work``
    keeps finished chunks (a folder, or any SegmentStore) so that running again resumes;
    without it they live in a temporary folder, removed at the end. Segments are filed
    under a key made of the input (``input_id``, or its path, size and mtime), the model
    and the encoding, so different settings never mix. ``input_url`` is where workers
    read the input if not from ``input``'s path: a presigned link, for workers on other
    machines. ``engines(workers)`` gives the engine to run on when ``engine`` is not given:
    a service worker keeps its pools (and their loaded models) from one job to the next.
    """
    settings = settings or load_settings()
    spec = spec or JobSpec()
    handler = check(spec)
    if Path(input).is_dir():
        from restyle.images import run_folder

        if spec.deflicker:
            raise InputError(f"{input} is a folder of images: --deflicker smooths frames over time, so it needs a video")
        if handler.output == OutputKind.RECORDS:
            raise InputError(f"{input} is a folder of images; records models run on videos")
        return run_folder(Path(input), Path(output), spec, handler, settings=settings, engine=engine, on_progress=on_progress)
    temporary = work is None
    if work is None:
        work = FolderSegments(Path(tempfile.mkdtemp(prefix="restyle-")))
    elif isinstance(work, (str, Path)):
        work = FolderSegments(_usable_folder(Path(work)))
    made: list[Engine] = []  # an engine this run made is closed by it; one given to it stays open
    try:
        return _run_video(Path(input), Path(output), spec, handler, settings, work, input_id, input_url, engine, on_progress,
                          hooks or Hooks(), made, engines)
    finally:
        for own in made:
            own.close()
        if temporary:
            work.discard()


def _run_video(
    input: Path, output: Path, spec: JobSpec, handler: Handler, settings: Settings, segments: SegmentStore,
    input_id: str | None, input_url: str | None, engine: Engine | None, on_progress: Progress | None, hooks: Hooks,
    made: list[Engine], engines: Callable[[int], Engine] | None,
) -> RunReport:
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    check_output(input, output)
    records = handler.output == OutputKind.RECORDS
    if records and output.suffix.lower() != ".jsonl":
        raise OutputError(f"{spec.label} writes records, one JSON line per frame: give an output such as {output.with_suffix('.jsonl').name}")
    if not records and output.suffix.lower() == ".jsonl":
        raise OutputError(f"{spec.label} makes pictures, not records: give a video output such as {output.with_suffix('.mp4').name}")
    if not records:
        container_for(output)  # a suffix restyle cannot write is refused before the input is read
    info = probe(input, settings)
    target = None if records else plan_output(info, output, spec.output.codec or settings.codec)
    seconds["probe"] = time.perf_counter() - started

    runtime, workers = choose_layout(settings, info.width * info.height, handler.name)
    choice = runtime.choose(network_for(handler.name))
    if engine is None and engines is not None:
        engine = engines(workers)
    elif engine is None:
        engine = make_engine(settings, workers)
        made.append(engine)
    loads_before = engine.loads
    clock = time.perf_counter()
    chunks = _chunks(info, spec, settings, engine.workers)
    width, height = (info.width, info.height) if records else _output_size(handler, spec, info)
    preset = spec.output.preset or settings.preset
    encode = EncodeSpec(
        width=width,
        height=height,
        time_base=info.time_base,
        rate=info.average_rate,
        codec=target.encoder if target else settings.codec,
        crf=settings.crf if spec.output.crf is None else spec.output.crf,
        preset=preset,
        x264_params=settings.x264_params_for(preset),
        pix_fmt=settings.pix_fmt,
        threads=settings.encoder_threads,
        sample_aspect_ratio=info.sample_aspect_ratio,
    )
    key = _work_key(info, input_id, spec, encode)
    names = {c.index: f"{key}/{c.name}.{'jsonl' if records else 'mp4'}" for c in chunks}
    todo_chunks = [c for c in chunks if not segments.has(names[c.index])]
    # Workers may be on machines that see nothing of this one's disk: every file goes by a reference the
    # engine makes, and segments they cannot store themselves come back with their results.
    tasks: list[ChunkTask] = []
    if todo_chunks:  # (a run that reuses every chunk ships nothing)
        source: FileRef = Link(input_url) if input_url else engine.share(Path(info.path))
        files = {"style_image": engine.share(Path(spec.style_image))} if spec.style_image else {}
        worker_segments = CarriedSegments() if engine.remote and not segments.reachable_anywhere else segments
        tasks = [ChunkTask(source, info.video_index, c, encode, worker_segments, names[c.index], spec, records, files)
                 for c in todo_chunks]
    seconds["plan"] = time.perf_counter() - clock
    if hooks.on_plan:
        hooks.on_plan(len(chunks), len(chunks) - len(tasks))

    clock = time.perf_counter()
    done = sum(c.frame_count for c in chunks if c not in todo_chunks)
    progress = _counter(done, info.frame_count, on_progress)
    results: list[ChunkResult] = []
    retried_before = engine.redone
    for result in engine.map(score_chunk, handler.load_spec(spec), runtime, tasks, progress):
        if result.segment is not None:  # carried back from a worker that cannot reach the store: stored here
            segments.put_bytes(result.segment_name, result.segment)
            result = replace(result, segment=None)
        results.append(result)
        if hooks.on_chunk:
            hooks.on_chunk(result)
        if hooks.cancel is not None and hooks.cancel.is_set():
            raise Cancelled(f"cancelled after {len(results)} of {len(tasks)} chunks; finished chunks are kept")
    seconds["score"] = time.perf_counter() - clock

    clock = time.perf_counter()
    partial = output.with_name(f".{output.name}.partial")
    try:
        stored = [(c, segments.fetch(names[c.index])) for c in chunks]
        if records:
            summary = join_records([path for _, path in stored], partial)
        else:
            assembled = assemble(info, stored, partial, target)
            checked = verify(info, partial, assembled.video_packets)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    seconds["assemble"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started

    if records:
        notes, frames = [], summary["frames"]
    else:
        notes, frames = list(target.notes), assembled.video_packets
        if encode.coded_size != (encode.width, encode.height):
            notes.append(f"{encode.width}x{encode.height} is odd-sized; {encode.pix_fmt} needs even sides, so the output is {encode.coded_size[0]}x{encode.coded_size[1]}")
        if (encode.width, encode.height) != (info.width, info.height):
            notes.append(f"{spec.label} scales the picture: {info.width}x{info.height} in, {encode.width}x{encode.height} out")
        notes += _format_notes(info, encode)
    if frames != info.frame_count:
        notes.append(f"the input has {info.frame_count} frames but {frames} could be decoded and scored")
    for note in notes:
        log.warning(note)
    return RunReport(
        input=str(input),
        output=str(output),
        model=spec.label,
        frames=frames,
        chunks=len(chunks),
        chunks_reused=len(chunks) - len(tasks),
        chunks_retried=engine.redone - retried_before,
        models_loaded=engine.loads - loads_before,
        width=encode.width,
        height=encode.height,
        duration_s=round(info.duration_s, 3),
        workers=engine.workers,
        threads=runtime.threads,
        backend=choice.backend,
        precision=choice.precision,
        precision_reason=choice.reason,
        nodes=_by_node(results, f"{choice.backend} {choice.precision}"),
        seconds={k: round(v, 3) for k, v in seconds.items()},
        busy_s={
            "decode": round(sum(r.decode_s for r in results), 3),
            "infer": round(sum(r.infer_s for r in results), 3),
            "encode": round(sum(r.encode_s for r in results), 3),
        } | ({"smooth": round(sum(r.smooth_s for r in results), 3)} if spec.deflicker else {}),
        deflicker=spec.deflicker,
        chunk_starts=[c.first_frame for c in chunks],
        notes=notes,
        records=summary if records else None,
        output_check={} if records else checked.to_dict(),
    )


def _by_node(results: list[ChunkResult], here: str) -> dict[str, dict]:
    """Per machine the chunks ran on: chunks, frames, the runtime it chose (its CPU's), bytes it fetched."""
    nodes: dict[str, dict] = {}
    for result in results:
        node = nodes.setdefault(result.node or "local", {"chunks": 0, "frames": 0, "runtime": Counter(), "bytes_in": 0})
        node["chunks"] += 1
        node["frames"] += result.frames
        node["runtime"][result.runtime or here] += 1
        node["bytes_in"] += result.bytes_in
    for node in nodes.values():  # one runtime per node, unless its actors differed (a mixed node): then all
        node["runtime"] = ", ".join(sorted(node["runtime"]))
    return nodes


def plan(input: str | Path, spec: JobSpec | None = None, settings: Settings | None = None,
         workers: int | None = None) -> list[Chunk]:
    """The chunks ``run`` cuts ``input`` into for ``spec`` with these settings here (or ``workers`` workers)."""
    settings = settings or load_settings()
    spec = spec or JobSpec()
    info = probe(Path(input), settings)
    if workers is None:
        _, workers = choose_layout(settings, info.width * info.height, spec.model)
    return _chunks(info, spec, settings, workers or 1)


def _chunks(info: VideoInfo, spec: JobSpec, settings: Settings, workers: int) -> list[Chunk]:
    """The one place the settings become a plan: what run scores and what plan() reports must agree."""
    return plan_chunks(info, settings.chunk_seconds, workers, lead_frames=warmup_frames(spec.deflicker))


def _output_size(handler: Handler, spec: JobSpec, info: VideoInfo) -> tuple[int, int]:
    """The pictures' size out: the input's, unless the handler says its model scales (super-resolution)."""
    size_of = getattr(handler, "output_size", None)
    return size_of(spec, info.width, info.height) if size_of else (info.width, info.height)


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


def _format_notes(info: VideoInfo, encode: EncodeSpec) -> list[str]:
    """What the output's pixel format cannot carry over from the input's."""
    notes = []
    source = info.pix_fmt
    if source.startswith(("yuva", "gbrap", "ya")) or source in ("rgba", "bgra", "argb", "abgr"):
        notes.append(f"the input's alpha channel ({source}) is not kept: {encode.pix_fmt} output is opaque")
    if any(depth in source for depth in ("p10", "p12", "p14", "p16")):
        notes.append(f"the input is high bit depth ({source}); the output is 8-bit {encode.pix_fmt}")
    return notes


def _work_key(info: VideoInfo, input_id: str | None, spec: JobSpec, encode: EncodeSpec) -> str:
    """One key per (input, whole JobSpec with its files, encoding): segments made otherwise are never reused."""
    if input_id is None:
        stat = Path(info.path).stat()
        input_id = f"{Path(info.path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(f"{input_id}|{spec.fingerprint()}|{encode}".encode()).hexdigest()[:16]


def _usable_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkDirError(f"cannot use work directory {folder}: {exc.strerror}") from None
    return folder


def _counter(done: int, total: int, on_progress: Progress | None) -> Callable[[int], None]:
    state = {"done": done}
    if on_progress:
        on_progress(done, total)

    def add(frames: int) -> None:
        state["done"] += frames
        if on_progress:
            on_progress(state["done"], total)

    return add
