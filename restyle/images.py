"""A folder of images: each one restyled into the output folder under the same name.

Workers read each image by the reference their engine made (on a Ray node that does not
see this disk, its bytes come shipped) and give the restyled image's bytes back; this
process writes them, so the output folder never has to be reachable from a worker.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from restyle.config import Settings
from restyle.engines import Engine, make_engine
from restyle.errors import InputError, OutputError
from restyle.files import FileRef, localized, write_whole
from restyle.layout import choose_layout, network_for
from restyle.handlers.base import Handler, Model
from restyle.jobspec import JobSpec
from restyle.report import RunReport

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImageTask:
    source: FileRef
    target: str  # the output's path on the scheduler's machine (the worker uses only its suffix)
    spec: JobSpec
    files: dict[str, FileRef]  # the spec's fields that name files (style_image)


def score_image(task: ImageTask, model: Model, batch_size: int, on_frames: Callable[[int], None]) -> tuple[str, bytes]:
    """Restyle one image file; the engine's task function for folders. Gives back (target, encoded image)."""
    spec = localized(task.spec, task.files)
    try:
        with Image.open(task.source.reader()) as image:
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image {task.source.name}: {exc}") from None
    out = Image.fromarray(model.predict(rgb[None], spec)[0])
    encoded = io.BytesIO()
    out.save(encoded, format=Image.registered_extensions()[Path(task.target).suffix.lower()], quality=95)
    on_frames(1)
    return task.target, encoded.getvalue()


def _write(target: Path, data: bytes) -> str:
    write_whole(target, data)
    return str(target)


def run_folder(
    source: Path,
    target: Path,
    spec: JobSpec,
    handler: Handler,
    *,
    settings: Settings,
    engine: Engine | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    started = time.perf_counter()
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if target.exists() and not target.is_dir():
        raise OutputError(f"output {target} is a file; for a folder of images give a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {target}: {exc}") from None
    runtime, workers = choose_layout(settings, 1280 * 720, handler.name)  # sizes vary by file: budget memory for 720p
    choice = runtime.choose(network_for(handler.name))
    own_engine = engine is None
    engine = engine or make_engine(settings, min(workers, len(files)) if workers else 0)
    done = [0]

    def progress(frames: int) -> None:
        done[0] += frames
        if on_progress:
            on_progress(done[0], len(files))

    pictures = {"style_image": engine.share(Path(spec.style_image))} if spec.style_image else {}
    tasks = [ImageTask(engine.share(f), str(target / f.name), spec, pictures) for f in files]
    try:
        written = [_write(Path(name), data)
                   for name, data in engine.map(score_image, handler.load_spec(spec), runtime, tasks, progress)]
    finally:
        if own_engine:
            engine.close()
    total = time.perf_counter() - started
    return RunReport(
        input=str(source),
        output=str(target),
        model=spec.label,
        frames=len(written),
        chunks=len(written),
        chunks_reused=0,
        chunks_retried=0,
        width=0,
        height=0,
        duration_s=0.0,
        workers=engine.workers,
        threads=runtime.threads,
        backend=choice.backend,
        precision=choice.precision,
        precision_reason=choice.reason,
        seconds={"score": round(total, 3), "total": round(total, 3)},
    )
