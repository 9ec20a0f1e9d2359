"""Thumbnails of the 26 built-in styles for the dashboard's gallery.

Rendered once, with the styles handler itself (one loaded network, every style per call),
on the same test pattern as ``restyle styles --sheet``, and kept in the system store
(``keys.thumbnail``) so that every API process and every restart reuses them.
"""

from __future__ import annotations

import io
import logging
import threading

from restyle.errors import RestyleError
from restyle.handlers.base import built_in_styles_handler, get_handler
from restyle.service import keys
from restyle.service.context import Context

SIZE = 128


class Gallery:
    """The thumbnails of one service, kept in memory once read: one per app (``app.state``), none per process."""

    def __init__(self, context: Context):
        self.context = context
        self._memory: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def thumbnail(self, style: int) -> bytes:
        """The JPEG thumbnail of ``style``; the first call renders all of them."""
        if style in self._memory:
            return self._memory[style]
        with self._lock:
            if style not in self._memory:
                try:
                    self._memory[style] = self.context.system.get_bytes(keys.thumbnail(style))
                except RestyleError:
                    for n, data in enumerate(render()):
                        self.context.system.put_bytes(data, keys.thumbnail(n))
                        self._memory[n] = data
        return self._memory[style]

    def warm(self) -> None:
        """Have the thumbnails ready before anyone asks: a page's 26 image requests would otherwise wait on the
        first rendering and, a browser opening few connections per server, hold up whatever the page does next."""
        try:
            self.thumbnail(0)
        except Exception as exc:  # noqa: BLE001 - the gallery is a nicety: pages render (without pictures) anyway
            logging.getLogger("restyle").warning("style thumbnails not made: %s", exc)


def style_count() -> int:
    """How many built-in styles the gallery shows: what their handler declares."""
    return get_handler(built_in_styles_handler()).built_in_styles


def render() -> list[bytes]:
    """All 26 thumbnails as JPEG bytes, on the test pattern of ``restyle styles --sheet`` (the same renderer)."""
    from PIL import Image

    from restyle.handlers.sheet import style_tiles, test_pattern
    from restyle.runtime import Runtime

    picture = test_pattern()
    picture.thumbnail((SIZE, SIZE), Image.LANCZOS)
    made = []
    for tile in style_tiles(picture, Runtime(device="cpu", threads=1)):
        out = io.BytesIO()
        tile.save(out, "JPEG", quality=85)
        made.append(out.getvalue())
    return made
