"""Multipart forms read with each file part held to its own limit while it streams.

The guard (:mod:`.guard`) bounds a whole body by its route's allowance: for the job form, the
video's limit plus the picture's. That alone let one part take the other's share: with a 1 MiB
video limit and a 20 MiB picture limit, a 20 MB video part was spooled whole and refused only
afterwards (issue 26). Here Starlette's streaming parser (python-multipart underneath) counts each
file part's bytes as they are parsed, against the limit of the field that carries it, and stops at
the first byte over: that byte is never written, so no spooled part ever holds more than its
limit. A file in a field that takes none is refused at its headers, before any of its bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

from fastapi import HTTPException, Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from restyle.errors import Invalid, TooLarge


@dataclass(frozen=True)
class PartLimit:
    """The most one file part may hold, what it is (for a person), and the setting that allows more."""

    size: int
    what: str
    setting: str


class LimitedParser(MultiPartParser):
    """Starlette's multipart parser with a byte limit per file field, counted as the part streams."""

    def __init__(self, headers: Headers, stream: AsyncIterator[bytes], limits: Mapping[str, PartLimit], **kwargs):
        super().__init__(headers, stream, **kwargs)
        self.limits, self.size = limits, 0

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        self.size = 0
        part = self._current_part
        if part.file is not None and part.field_name not in self.limits:
            takers = " and ".join(repr(name) for name in self.limits) or "no field"
            raise Invalid(f"only {takers} take files, not {part.field_name[:40]!r}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current_part
        if part.file is not None:  # counted before it is queued for writing: a byte over is never written
            self.size += end - start
            limit = self.limits[part.field_name]
            if self.size > limit.size:
                raise TooLarge(
                    f"the form's part {part.field_name!r} ({limit.what}) is over its limit "
                    f"of {limit.size} bytes ({limit.setting})"
                )
        super().on_part_data(data, start, end)


@asynccontextmanager
async def limited_form(
    request: Request, limits: Mapping[str, PartLimit], max_files: int, max_fields: int
) -> AsyncIterator[FormData]:
    """The request's form, its file parts each held to ``limits`` (by field name) as they stream; the spooled
    files are closed when the block ends. A body that is not multipart is read as Starlette reads it."""
    content_type, _ = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        async with request.form(max_files=max_files, max_fields=max_fields) as form:
            yield form
        return
    try:
        async with aclosing(request.stream()) as stream:
            form = await LimitedParser(
                request.headers, stream, limits, max_files=max_files, max_fields=max_fields
            ).parse()
    except MultiPartException as exc:  # what Starlette's own form reading answers
        raise HTTPException(400, exc.message) from None
    try:
        yield form
    finally:
        await form.close()
