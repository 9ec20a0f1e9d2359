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
from dataclasses import dataclass
from pathlib import Path

from restyle.config import Settings, load_settings
from restyle.deflicker import warmup_frames
from restyle.engines import Engine, make_engine
from restyle.errors import InputError, OutputError, RestyleError, WorkDirError
from restyle.media.assemble import assemble, container_for
from restyle.media.chunks import Chunk, plan_chunks
from restyle.media.encode import EncodeSpec
from restyle.media.probe import VideoInfo, probe
from restyle.handlers.base import ModelSpec
from restyle.layout import NETWORKS, choose_layout
from restyle.report import RunReport
from restyle.score import ChunkResult, ChunkTask, score_chunk
from restyle.stores.segments import FolderSegments, SegmentStore

log = logging.getLogger("restyle")

Progress = Callable[[int, int], None]  # (frames done, frames in all)


class Cancelled(RestyleError):
    """The run was cancelled; finished chunks are kept."""


@dataclass
class Hooks:
    """What a service hears while a run goes on, and how it stops one."""

    on_plan: Callable[[int, int], None] | None = None  # (chunks, chunks already done)
    on_chunk: Callable[[ChunkResult], None] | None = None  # each chunk as it is stored
    cancel: threading.Event | None = None  # set it to stop at the next chunk


def run(
    input: str | Path,
    output: str | Path,
    model: ModelSpec,
    *,
    settings: Settings | None = None,
    work: str | Path | SegmentStore | None = None,
    input_id: str | None = None,
    input_url: str | None = None,
    engine: Engine | None = None,
    on_progress: Progress | None = None,
    hooks: Hooks | None = None,
) -> RunReport:
    """Restyle ``input`` (a video, or a folder of images) into ``output`` with ``model``.

    ``on_progress(frames done, frames)`` hears the frames as they are encoded. ``work``
    keeps finished chunks (a folder, or any SegmentStore) so that running again resumes;
    without it they live in a temporary folder, removed at the end. Segments are filed
    under a key made of the input (``input_id``, or its path, size and mtime), the model
    and the encoding, so different settings never mix. ``input_url`` is where workers
    read the input if not from ``input``'s path: a presigned link, for workers on other
    machines.
    """
    settings = settings or load_settings()
    if Path(input).is_dir():
        from restyle.images import run_folder

        if settings.deflicker:
            raise InputError(f"{input} is a folder of images: --deflicker smooths frames over time, so it needs a video")
        return run_folder(Path(input), Path(output), model, settings=settings, engine=engine, on_progress=on_progress)
    temporary = work is None
    if work is None:
        work = FolderSegments(Path(tempfile.mkdtemp(prefix="restyle-")))
    elif isinstance(work, (str, Path)):
        work = FolderSegments(_usable_folder(Path(work)))
    try:
        return _run_video(Path(input), Path(output), model, settings, work, input_id, input_url, engine, on_progress,
                          hooks or Hooks())
    finally:
        if temporary:
            work.discard()


def _run_video(
    input: Path, output: Path, model: ModelSpec, settings: Settings, segments: SegmentStore, input_id: str | None,
    input_url: str | None, engine: Engine | None, on_progress: Progress | None, hooks: Hooks,
) -> RunReport:
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    check_output(input, output)
    muxer = container_for(output)
    model.check()
    info = probe(input, settings)
    seconds["probe"] = time.perf_counter() - started

    runtime, workers = choose_layout(settings, info.width * info.height, model.kind)
    choice = runtime.choose(NETWORKS.get(model.kind, model.kind))
    engine = engine or make_engine(settings, workers)
    clock = time.perf_counter()
    chunks = _chunks(info, settings, engine.workers)
    encode = EncodeSpec(
        width=info.width,
        height=info.height,
        time_base=info.time_base,
        rate=info.average_rate,
        codec=settings.codec,
        crf=settings.crf,
        preset=settings.preset,
        pix_fmt=settings.pix_fmt,
        threads=settings.encoder_threads,
    )
    key = _work_key(info, input_id, model, encode, settings.deflicker)
    names = {c.index: f"{key}/{c.name}.mp4" for c in chunks}
    tasks = [ChunkTask(input_url or info.path, info.video_index, c, encode, segments, names[c.index], settings.deflicker)
             for c in chunks]
    todo = [t for t in tasks if not segments.has(names[t.chunk.index])]
    seconds["plan"] = time.perf_counter() - clock
    if hooks.on_plan:
        hooks.on_plan(len(tasks), len(tasks) - len(todo))

    clock = time.perf_counter()
    done = sum(t.chunk.frame_count for t in tasks if t not in todo)
    progress = _counter(done, info.frame_count, on_progress)
    results: list[ChunkResult] = []
    retried_before = engine.redone
    for result in engine.map(score_chunk, model, runtime, todo, progress):
        results.append(result)
        if hooks.on_chunk:
            hooks.on_chunk(result)
        if hooks.cancel is not None and hooks.cancel.is_set():
            raise Cancelled(f"cancelled after {len(results)} of {len(todo)} chunks; finished chunks are kept")
    seconds["score"] = time.perf_counter() - clock

    clock = time.perf_counter()
    partial = output.with_name(f".{output.name}.partial")
    try:
        stored = [(t.chunk, segments.fetch(names[t.chunk.index])) for t in tasks]
        assembled = assemble(info, stored, partial, muxer)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    seconds["assemble"] = time.perf_counter() - clock
    seconds["total"] = time.perf_counter() - started

    notes = list(assembled.dropped_streams)
    if encode.coded_size != (info.width, info.height):
        notes.append(f"{info.width}x{info.height} is odd-sized; {encode.pix_fmt} needs even sides, so the output is {encode.coded_size[0]}x{encode.coded_size[1]}")
    notes += _format_notes(info, encode)
    if assembled.video_packets != info.frame_count:
        notes.append(f"the input has {info.frame_count} frames but {assembled.video_packets} could be decoded and restyled")
    for note in notes:
        log.warning(note)
    return RunReport(
        input=str(input),
        output=str(output),
        model=model.label,
        frames=assembled.video_packets,
        chunks=len(tasks),
        chunks_reused=len(tasks) - len(todo),
        chunks_retried=engine.redone - retried_before,
        width=info.width,
        height=info.height,
        duration_s=round(info.duration_s, 3),
        workers=engine.workers,
        threads=runtime.threads,
        backend=choice.backend,
        precision=choice.precision,
        precision_reason=choice.reason,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        busy_s={
            "decode": round(sum(r.decode_s for r in results), 3),
            "infer": round(sum(r.infer_s for r in results), 3),
            "encode": round(sum(r.encode_s for r in results), 3),
        } | ({"smooth": round(sum(r.smooth_s for r in results), 3)} if settings.deflicker else {}),
        deflicker=settings.deflicker,
        chunk_starts=[c.first_frame for c in chunks],
        notes=notes,
    )


def plan(input: str | Path, settings: Settings | None = None, workers: int | None = None, model_kind: str = "styles") -> list[Chunk]:
    """The chunks ``run`` cuts ``input`` into with these settings on this machine (or ``workers`` workers)."""
    settings = settings or load_settings()
    info = probe(Path(input), settings)
    if workers is None:
        _, workers = choose_layout(settings, info.width * info.height, model_kind)
    return _chunks(info, settings, workers or 1)


def _chunks(info: VideoInfo, settings: Settings, workers: int) -> list[Chunk]:
    """The one place the settings become a plan: what run scores and what plan() reports must agree."""
    return plan_chunks(info, settings.chunk_seconds, workers, lead_frames=warmup_frames(settings.deflicker))


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


def _work_key(info: VideoInfo, input_id: str | None, model: ModelSpec, encode: EncodeSpec, deflicker: float) -> str:
    """One key per (input, model, encoding, smoothing): segments made with other settings are never reused."""
    if input_id is None:
        stat = Path(info.path).stat()
        input_id = f"{Path(info.path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    smoothing = f"|deflicker={deflicker}" if deflicker else ""  # keys made before the deflicker stay valid
    return hashlib.sha256(f"{input_id}|{model.fingerprint()}|{encode}{smoothing}".encode()).hexdigest()[:16]


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
