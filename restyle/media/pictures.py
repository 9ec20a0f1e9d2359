"""What restyle opens as a picture, on every floor: a short list of raster formats, never what PIL can guess.

PIL opens some forty formats by their content. Among them are PostScript (EPS, which PIL renders
by running Ghostscript, with no time limit) and ICO or ICNS (which hold a PNG of any size behind a
256x256 header). A picture restyle is given (a style picture, a batch's image, a photo) is opened
only as one of :data:`IMAGE_FORMATS`; anything else is refused as "not a picture restyle reads".
The pipeline's image reader (:mod:`restyle.pipeline.images`) and the service's picture check use the
same list; this floor holds it so that the handlers, which sit below the pipeline, can too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from restyle.errors import InputError

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # PIL's names; what restyle reads as a picture


@contextmanager
def open_picture(source: str | Path | IO[bytes], name: str) -> Iterator:
    """The picture at ``source``, opened only as one of :data:`IMAGE_FORMATS` (a PIL image, closed after);
    InputError with the reason for anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(source, formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise InputError(f"{name} is not a picture restyle reads ({', '.join(IMAGE_FORMATS)})") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read picture {name}: {exc}") from None
    with image:
        yield image
