"""A folder of images: each one restyled into the output folder under the same name.

Workers read each image by the reference their engine made (on a Ray node that does not
see this disk, its bytes come shipped) and give the restyled image's bytes back; this
process writes them, so the output folder never has to be reachable from a worker.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from restyle.config import Settings
from restyle.engines.sizing import choose_layout
from restyle.errors import InputError, OutputError
from restyle.files import FileRef, localized, write_whole
from restyle.handlers.base import Handler, Model, OutputKind, params_of
from restyle.jobspec import JobSpec
from restyle.pipeline.chunk import with_strength
from restyle.pipeline.report import RunReport, runtime_figures
from restyle.pipeline.workers import Engines, engine_for, shared_files

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
BUDGET_PIXELS = 1280 * 720  # sizes vary by file: workers' memory is budgeted for 720p


@dataclass(frozen=True)
class ImageTask:
    source: FileRef
    target: str  # the output's path on the scheduler's machine (the worker uses only its suffix)
    spec: JobSpec
    files: dict[str, FileRef]  # the spec's fields that name files (style_image)
    pixels = 0  # each image has its own size: unknown until it is read


@dataclass(frozen=True)
class ImageResult:
    target: str
    data: bytes  # the restyled image, encoded as its suffix says
    frames: int = 1
    node: str = ""
    runtime: str = ""
    bytes_in: int = 0

    def ran_on(self, node: str, runtime: str, bytes_in: int) -> ImageResult:
        return dataclasses.replace(self, node=node, runtime=runtime, bytes_in=bytes_in)


def score_image(task: ImageTask, model: Model, batch_size: int, on_frames: Callable[[int], None]) -> ImageResult:
    """Restyle one image file; the engine's task function for folders."""
    spec = localized(task.spec, task.files)
    try:
        with Image.open(task.source.reader()) as image:
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image {task.source.name}: {exc}") from None
    frames = rgb[None]
    out = Image.fromarray(with_strength(frames, model.predict(frames, params_of(spec)), spec.strength)[0])
    encoded = io.BytesIO()
    out.save(encoded, format=Image.registered_extensions()[Path(task.target).suffix.lower()], quality=95)
    on_frames(1)
    return ImageResult(task.target, encoded.getvalue())


def run_folder(
    source: Path,
    target: Path,
    spec: JobSpec,
    handler: Handler,
    *,
    settings: Settings,
    engine: Engines | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Restyle every image in ``source`` into ``target`` under the same name."""
    started = time.perf_counter()
    files = _images(source, target, spec, handler)
    runtime, workers = choose_layout(settings, BUDGET_PIXELS, handler.network)
    done = [0]

    def progress(frames: int) -> None:
        done[0] += frames
        if on_progress:
            on_progress(done[0], len(files))

    with engine_for(settings, min(workers, len(files)) if workers else 0, engine) as engine:
        pictures = shared_files(spec, handler, engine)
        tasks = [ImageTask(engine.share(f), str(target / f.name), spec, pictures) for f in files]
        results = []
        for result in engine.map(score_image, handler.load_spec(spec), runtime, tasks, progress):
            write_whole(Path(result.target), result.data)
            results.append(dataclasses.replace(result, data=b""))
        total = time.perf_counter() - started
        return RunReport(
            input=str(source),
            output=str(target),
            model=handler.label(spec),
            frames=len(results),
            chunks=len(results),
            chunks_reused=0,
            chunks_retried=0,
            width=None,
            height=None,
            duration_s=None,
            workers=engine.workers,
            threads=runtime.threads,
            **runtime_figures(results, runtime.choose(handler.network)),
            seconds={"score": round(total, 3), "total": round(total, 3)},
        )


def _images(source: Path, target: Path, spec: JobSpec, handler: Handler) -> list[Path]:
    """The images in ``source``, after refusing what a folder cannot do and making ``target``."""
    if spec.deflicker:
        raise InputError(f"{source} is a folder of images: --deflicker smooths frames over time, so it needs a video")
    if handler.output == OutputKind.RECORDS:
        raise InputError(f"{source} is a folder of images; records models run on videos")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if target.exists() and not target.is_dir():
        raise OutputError(f"output {target} is a file; for a folder of images give a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {target}: {exc}") from None
    return files
