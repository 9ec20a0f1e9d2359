"""One job: probe -> plan -> score chunks on an engine -> assemble -> deliver.

A chunk is done when its segment is in the work directory; a run that finds a
segment reuses it, so a killed run picks up where it stopped. The output appears at
its path only when it is whole (written under a temporary name, then renamed).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from restyle.config import Settings, load_settings
from restyle.engines import Engine, LocalEngine
from restyle.errors import OutputError, WorkDirError
from restyle.media.assemble import assemble, container_for
from restyle.media.chunks import plan_chunks
from restyle.media.encode import EncodeSpec
from restyle.media.probe import VideoInfo, probe
from restyle.models.base import ModelSpec
from restyle.layout import choose_layout
from restyle.report import RunReport
from restyle.score import ChunkResult, ChunkTask, score_chunk

log = logging.getLogger("restyle")

Progress = Callable[[int, int], None]  # (frames done, frames in all)


def run(
    input: str | Path,
    output: str | Path,
    model: ModelSpec,
    *,
    settings: Settings | None = None,
    work_dir: str | Path | None = None,
    engine: Engine | None = None,
    on_progress: Progress | None = None,
) -> RunReport:
    """Restyle ``input`` (a video, or a folder of images) into ``output`` with ``model``."""
    settings = settings or load_settings()
    if Path(input).is_dir():
        from restyle.images import run_folder

        return run_folder(Path(input), Path(output), model, settings=settings, engine=engine, on_progress=on_progress)
    return _run_video(Path(input), Path(output), model, settings, work_dir, engine, on_progress)


def _run_video(input, output, model, settings, work_dir, engine, on_progress) -> RunReport:
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    check_output(input, output)
    muxer = container_for(output)
    model.check()
    info = probe(input, settings)
    seconds["probe"] = time.perf_counter() - started

    runtime, workers = choose_layout(settings, info.width * info.height)
    engine = engine or LocalEngine(workers)
    clock = time.perf_counter()
    chunks = plan_chunks(info, settings.chunk_seconds, engine.workers)
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
    temporary_work = work_dir is None
    job_dir = _job_dir(Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="restyle-")), info, model, encode)
    tasks = [ChunkTask(info.path, info.video_index, c, encode, str(job_dir / f"{c.name}.mp4")) for c in chunks]
    todo = [t for t in tasks if not Path(t.segment_path).is_file()]
    seconds["plan"] = time.perf_counter() - clock

    clock = time.perf_counter()
    done = sum(t.chunk.frame_count for t in tasks if t not in todo)
    progress = _counter(done, info.frame_count, on_progress)
    results: list[ChunkResult] = list(engine.map(score_chunk, model, runtime, todo, progress))
    seconds["score"] = time.perf_counter() - clock

    clock = time.perf_counter()
    partial = output.with_name(f".{output.name}.partial")
    try:
        assembled = assemble(info, [(t.chunk, Path(t.segment_path)) for t in tasks], partial, muxer)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    seconds["assemble"] = time.perf_counter() - clock
    if temporary_work:
        shutil.rmtree(job_dir.parent, ignore_errors=True)
    seconds["total"] = time.perf_counter() - started

    notes = list(assembled.dropped_streams)
    if encode.coded_size != (info.width, info.height):
        notes.append(f"{info.width}x{info.height} is odd-sized; {encode.pix_fmt} needs even sides, so the output is {encode.coded_size[0]}x{encode.coded_size[1]}")
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
        width=info.width,
        height=info.height,
        duration_s=round(info.duration_s, 3),
        workers=engine.workers,
        threads=runtime.threads,
        backend=runtime.backend_name,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        busy_s={
            "decode": round(sum(r.decode_s for r in results), 3),
            "infer": round(sum(r.infer_s for r in results), 3),
            "encode": round(sum(r.encode_s for r in results), 3),
        },
        notes=notes,
    )


def check_output(input: Path, output: Path) -> None:
    """Refuse, before any work, an output that cannot be written."""
    if output.is_dir():
        raise OutputError(f"output {output} is a folder; give a file name such as {output / 'styled.mp4'}")
    if output.exists() and input.exists() and output.resolve() == input.resolve():
        raise OutputError(f"output {output} is the input; write somewhere else")
    parent = output.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {output}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {output}: folder {parent} is not writable")


def _job_dir(work_dir: Path, info: VideoInfo, model: ModelSpec, encode: EncodeSpec) -> Path:
    """A folder per (input, model, encoding): segments from different settings never mix."""
    stat = Path(info.path).stat()
    key = hashlib.sha256(
        f"{Path(info.path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{model.fingerprint()}|{encode}".encode()
    ).hexdigest()[:16]
    job_dir = work_dir / key
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkDirError(f"cannot use work directory {work_dir}: {exc}") from None
    return job_dir


def _counter(done: int, total: int, on_progress: Progress | None) -> Callable[[int], None]:
    state = {"done": done}
    if on_progress:
        on_progress(done, total)

    def add(frames: int) -> None:
        state["done"] += frames
        if on_progress:
            on_progress(state["done"], total)

    return add
