"""Thumbnails of the 26 built-in styles for the dashboard's gallery.

Rendered once, with the styles handler itself (one loaded network, every style per call),
on the same test pattern as ``restyle styles --sheet``, and kept in the system store
(``gallery/styles/<n>.jpg``) so that every API process and every restart reuses them.
"""
from __future__ import annotations

import io
import threading

from restyle.errors import RestyleError
from restyle.service.context import Context

NUM_STYLES = 26
SIZE = 128
_lock = threading.Lock()
_memory: dict[tuple[str, int], bytes] = {}


def key(style: int) -> str:
    return f"gallery/styles/{style}.jpg"


def thumbnail(context: Context, style: int) -> bytes:
    """The JPEG thumbnail of ``style``; the first call renders all of them."""
    cache = (context.settings.system, style)
    if cache in _memory:
        return _memory[cache]
    with _lock:
        if cache not in _memory:
            try:
                _memory[cache] = context.system.get_bytes(key(style))
            except RestyleError:
                for n, data in enumerate(render()):
                    context.system.put_bytes(data, key(n))
                    _memory[(context.settings.system, n)] = data
    return _memory[cache]


def warm(context: Context) -> None:
    """Have the thumbnails ready before anyone asks: a page's 26 image requests would otherwise wait on the
    first rendering and, a browser opening few connections per server, hold up whatever the page does next."""
    try:
        thumbnail(context, 0)
    except Exception as exc:  # noqa: BLE001 - the gallery is a nicety: pages render (without pictures) anyway
        import logging

        logging.getLogger("restyle").warning("style thumbnails not made: %s", exc)


def render() -> list[bytes]:
    """All 26 thumbnails as JPEG bytes."""
    import numpy as np
    from PIL import Image

    from restyle.handlers.base import LoadSpec, load_model
    from restyle.handlers.sheet import test_pattern as _test_pattern
    from restyle.jobspec import JobSpec
    from restyle.runtime import Runtime

    picture = _test_pattern()
    picture.thumbnail((SIZE, SIZE), Image.LANCZOS)
    frame = np.asarray(picture.convert("RGB"))[None]
    network = load_model(LoadSpec("styles"), Runtime(device="cpu", threads=1))
    made = []
    for style in range(NUM_STYLES):
        out = io.BytesIO()
        Image.fromarray(network.predict(frame, JobSpec(style=str(style)))[0]).save(out, "JPEG", quality=85)
        made.append(out.getvalue())
    return made
