"""An object's bytes as a browser's player wants them: HTTP Range requests (206 Partial Content, Accept-Ranges)
and a Content-Disposition of ``inline`` (play here) or ``attachment`` (download).

A folder store's file goes through Starlette's FileResponse, which answers ranges itself; an object in an
S3-compatible store is read range by range (a ranged GET each), never whole in memory.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import quote

from fastapi.responses import FileResponse, Response, StreamingResponse

from restyle.stores.objects import ObjectStore

Disposition = Literal["inline", "attachment"]
PIECE = 1 << 20  # what one ranged read of a store-backed object fetches
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def media_type(key: str) -> str:
    # records write JSON Lines; a batch's outputs are pictures and videos of any kind, beside its Parquet manifest
    if key.endswith(".jsonl"):
        return "application/x-ndjson"
    return mimetypes.guess_type(PurePosixPath(key).name)[0] or "application/octet-stream"


def serve(store: ObjectStore, key: str, range_header: str | None, disposition: Disposition) -> Response:
    """``key`` of ``store`` whole (200) or the one byte range asked for (206); 416 for a range past its end."""
    name = PurePosixPath(key).name
    if store.is_local:
        return FileResponse(
            store.path(key), media_type=media_type(key), filename=name, content_disposition_type=disposition
        )
    size = store.info(key).size
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"{disposition}; filename*=utf-8''{quote(name)}",
    }
    wanted = byte_range(range_header, size)
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(_pieces(store, key, 0, size), media_type=media_type(key), headers=headers)
    if wanted == ():
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted
    headers |= {"Content-Range": f"bytes {start}-{end - 1}/{size}", "Content-Length": str(end - start)}
    return StreamingResponse(_pieces(store, key, start, end), 206, media_type=media_type(key), headers=headers)


def byte_range(header: str | None, size: int) -> tuple[int, int] | tuple[()] | None:
    """The one range of a ``Range`` header as (start, end exclusive); None to send it whole (no header, or one
    this does not take: several ranges, another unit); () when it cannot be satisfied."""
    found = _RANGE.match((header or "").strip())
    if not found or found.group(1) == found.group(2) == "":
        return None
    first, last = found.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        return ()
    return start, end


def _pieces(store: ObjectStore, key: str, start: int, end: int) -> Iterator[bytes]:
    for at in range(start, end, PIECE):
        yield store.get_range(key, at, min(end, at + PIECE))
