"""Files a worker reads, wherever it runs: a reference that opens the same bytes on any machine.

The pipeline names the files a chunk needs (its input video, the style picture) by
reference, never by a path on its own machine, and the engine makes the reference: a
worker of the local pool shares this machine's disk (:class:`LocalFile`); a Ray actor on
another machine may not, so the Ray engine ships the bytes through Ray's object store
(``restyle.engines.shipping``). An input on S3 is read by its presigned :class:`Link`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from restyle.errors import RestyleError

if TYPE_CHECKING:
    from restyle.jobspec import JobSpec


class FileRef(Protocol):
    """A file a worker can read, on whatever machine the worker is."""

    @property
    def name(self) -> str:
        """What messages call it (no secrets: never a signed link)."""
        ...

    def reader(self) -> str | BinaryIO:
        """What :func:`restyle.media.source.open_input` opens: a local path, a link, or a seekable file object."""
        ...

    def local(self) -> Path:
        """A whole copy on this machine's disk (the file itself where it is local), for a library that takes paths."""
        ...


@dataclass(frozen=True)
class LocalFile:
    """A file on a disk the worker shares with whoever made the reference."""

    path: str

    @property
    def name(self) -> str:
        return self.path

    def reader(self) -> str:
        return self.path

    def local(self) -> Path:
        return Path(self.path)


@dataclass(frozen=True)
class Link:
    """An input the worker reads over HTTP(S): a presigned object-store link, good for a while."""

    url: str

    @property
    def name(self) -> str:
        return "the input (presigned link)"

    def reader(self) -> str:
        return self.url

    def local(self) -> Path:
        raise RestyleError("a linked input is read as a stream; it has no local copy")


def localized(spec: JobSpec, files: dict[str, FileRef]) -> JobSpec:
    """``spec`` with each field that names a file (``files``: field -> reference) set to that file's copy here."""
    if not files:
        return spec
    return spec.model_copy(update={name: str(ref.local()) for name, ref in files.items()})


def partial_path(path: Path) -> Path:
    """A temporary name beside ``path`` that no other writer has, to rename to ``path`` when the file is whole.

    Its own per writer (process id and a random part): two writers of one file at once (a chunk given out again
    while its first worker still runs it) each write their own and rename it, and the last rename wins with a
    whole file. A shared name let the first rename take the second's file from under it (issue 26)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")


def write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it appears whole or not at all (a temporary name, then a rename)."""
    partial = partial_path(path)
    partial.write_bytes(data)
    os.replace(partial, path)
