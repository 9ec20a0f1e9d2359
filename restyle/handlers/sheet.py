"""A contact sheet: every built-in style on one picture, labelled with its index."""

from __future__ import annotations

import os

import av
import numpy as np
from PIL import Image, ImageDraw

from restyle.handlers.styles import MultiStyle, StylesParams, read_style_image
from restyle.jobspec import NUM_STYLES
from restyle.runtime import Runtime

TILE = 256
COLUMNS = 7


def contact_sheet(picture: str | None = None) -> Image.Image:
    """Render all 26 styles on ``picture`` (default: a frame of FFmpeg's testsrc2 pattern)."""
    image = read_style_image(picture) if picture else test_pattern()
    image.thumbnail((TILE, TILE), Image.LANCZOS)
    styled = style_tiles(image, Runtime("auto", threads=os.cpu_count() or 1))
    tiles = [("original", image)] + [(str(i), tile) for i, tile in enumerate(styled)]
    width, height = image.size
    rows = -(-len(tiles) // COLUMNS)
    pad, label = 6, 16
    sheet = Image.new("RGB", (COLUMNS * (width + pad) + pad, rows * (height + label + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (name, tile) in enumerate(tiles):
        row, column = divmod(n, COLUMNS)
        x, y = pad + column * (width + pad), pad + row * (height + label + pad)
        sheet.paste(tile, (x, y + label))
        draw.text((x + 2, y + 2), name, fill="black")
    return sheet


def style_tiles(image: Image.Image, runtime: Runtime) -> list[Image.Image]:
    """``image`` in each of the built-in styles, in order: one network, every style (the weights are per call)."""
    frame = np.asarray(image.convert("RGB"))[None]
    network = MultiStyle(runtime)
    return [Image.fromarray(network.predict(frame, StylesParams(str(i)))[0]) for i in range(NUM_STYLES)]


def test_pattern() -> Image.Image:
    with av.open("testsrc2=size=384x256:rate=1:duration=1", format="lavfi") as source:
        return next(source.decode(video=0)).to_image()
