"""Images in mini-batches: many per engine task, same-size frames in one model call, each image ending alone.

A worker reads each image of its task by the reference its engine made (on a Ray node that does
not see this disk, its bytes come shipped), groups the frames that share a size into one
``predict`` call, and gives back, per image, its output (the restyled image's bytes, or a records
model's record) or the reason it could not be read. The scheduler writes the outputs, so the
output folder never has to be reachable from a worker, and a bad image costs only itself: the
task never raises for one (an engine treats a raising task as a broken worker).

The content decides what an image is: only the formats in :data:`IMAGE_FORMATS` are opened
(never PostScript, which PIL hands to Ghostscript), and a picture over
:data:`MAX_IMAGE_PIXELS` is refused from its header, before its pixels are decoded.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from restyle.errors import InputError
from restyle.files import FileRef, localized
from restyle.handlers.base import Model, get_handler, params_of
from restyle.jobspec import JobSpec
from restyle.media.pictures import IMAGE_FORMATS  # one list on every floor (the handlers read pictures too)
from restyle.pipeline.chunk import with_strength

IMAGES_PER_TASK = 16  # enough that a task's overhead hides behind 16 inferences, few enough to spread the work
MAX_IMAGE_PIXELS = 40_000_000  # a decompression bomb is refused from its header, before its pixels are decoded
WRITABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}  # others are written as .png


@dataclass(frozen=True)
class ImageItem:
    source: FileRef
    target: str  # the output's name on the scheduler's side (the worker uses only its suffix)


@dataclass(frozen=True)
class ImageBatch:
    """One engine task: a few images, one JobSpec."""

    items: tuple[ImageItem, ...]
    spec: JobSpec
    files: dict[str, FileRef]  # the spec's fields that name files (style_image)
    pixels = 0  # each image has its own size: unknown until it is read

    @property
    def units(self) -> int:
        """The pictures it makes (an engine's deadline for it is made from the measured seconds per picture)."""
        return len(self.items)

    @property
    def label(self) -> str:
        first = Path(self.items[0].target).name if self.items else ""
        return f"{len(self.items)} pictures from {first}"

    @property
    def fidelity_cases(self) -> tuple[str, ...] | None:
        """The fidelity table's cases its job runs (a style's): a worker chooses its precision for them."""
        return get_handler(self.spec.model).fidelity_cases(self.spec)


@dataclass(frozen=True)
class ImageOutcome:
    target: str
    data: bytes = b""  # a pictures model's output, encoded as the target's suffix says
    record: dict[str, Any] | None = None  # a records model's output
    reason: str = ""  # why it failed, for a person ("" when it succeeded)
    size: tuple[int, int] = (0, 0)  # the input's width and height


@dataclass(frozen=True)
class ImageBatchResult:
    outcomes: tuple[ImageOutcome, ...]
    frames: int = 0  # images scored (the engine's progress)
    seconds: float = 0.0
    node: str = ""
    runtime: str = ""
    bytes_in: int = 0

    def ran_on(self, node: str, runtime: str, bytes_in: int) -> ImageBatchResult:
        return dataclasses.replace(self, node=node, runtime=runtime, bytes_in=bytes_in)


def in_batches(items: list[ImageItem], spec: JobSpec, files: dict[str, FileRef]) -> list[ImageBatch]:
    step = IMAGES_PER_TASK
    return [ImageBatch(tuple(items[i : i + step]), spec, files) for i in range(0, len(items), step)]


def score_images(task: ImageBatch, model: Model, batch_size: int, on_frames: Callable[[int], None]) -> ImageBatchResult:
    """The engine's task function for images: read each, score same-size ones together, encode each."""
    clock = time.perf_counter()
    spec = localized(task.spec, task.files)
    params = params_of(spec)
    outcomes: dict[str, ImageOutcome] = {}
    by_size: dict[tuple[int, ...], list[tuple[ImageItem, np.ndarray]]] = defaultdict(list)
    for item in task.items:
        try:
            rgb = read_rgb(item.source.reader(), Path(item.source.name).name)
        except InputError as exc:
            outcomes[item.target] = ImageOutcome(item.target, reason=str(exc))
            continue
        by_size[rgb.shape].append((item, rgb))
    step = max(1, batch_size)
    for group in by_size.values():
        for start in range(0, len(group), step):
            part = group[start : start + step]
            frames = np.stack([rgb for _, rgb in part])
            out = with_strength(frames, model.predict(frames, params), spec.strength)
            for (item, rgb), scored in zip(part, out, strict=True):
                size = (rgb.shape[1], rgb.shape[0])
                if isinstance(scored, dict):
                    outcomes[item.target] = ImageOutcome(item.target, record=scored, size=size)
                else:
                    outcomes[item.target] = ImageOutcome(item.target, data=encode(scored, item.target), size=size)
            on_frames(len(part))
    ordered = tuple(outcomes[item.target] for item in task.items)
    done = sum(1 for outcome in ordered if not outcome.reason)
    return ImageBatchResult(ordered, frames=done, seconds=time.perf_counter() - clock)


def is_image(source: str | IO[bytes]) -> bool:
    """Whether the content is a picture restyle reads (by its bytes, never its name)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source, formats=IMAGE_FORMATS):
            return True
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False


def read_rgb(source: str | IO[bytes], name: str) -> np.ndarray:
    """An image's pixels as (H, W, 3) uint8 RGB, turned upright by its EXIF; InputError with the reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(source, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"{name} is {width}x{height}: over the limit of {MAX_IMAGE_PIXELS // 1_000_000} Mpixel"
                )
            upright = ImageOps.exif_transpose(image, in_place=True) or image  # in place: no copy of an upright one
            return np.asarray(upright if upright.mode == "RGB" else upright.convert("RGB"))
    except UnidentifiedImageError:
        raise InputError(f"{name} is not a picture restyle reads ({', '.join(IMAGE_FORMATS)})") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image {name}: {exc}") from None


def encode(rgb: np.ndarray, target: str) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=Image.registered_extensions()[Path(target).suffix.lower()], quality=95)
    return out.getvalue()
