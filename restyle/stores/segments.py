"""Where finished chunk segments live: a chunk whose segment is here is done.

A folder for ``restyle run --work-dir``; the system object store for the service, so
that any worker on any machine can pick up a job where a lost one left it.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from restyle.stores.objects import ObjectStore


class SegmentStore(Protocol):
    def has(self, name: str) -> bool:
        """Is the segment ``name`` (e.g. ``key/chunk_...mp4``) finished and stored?"""
        ...

    def local_path(self, name: str) -> Path:
        """Where a worker on this machine writes the segment."""
        ...

    def keep(self, name: str) -> None:
        """The segment at ``local_path(name)`` is finished: make it durable."""
        ...

    def fetch(self, name: str) -> Path:
        """A local copy of a stored segment, for assembling."""
        ...

    def discard(self) -> None:
        """Drop every segment (the job is delivered and the work area was temporary)."""
        ...


class FolderSegments:
    """Segments in a local folder: written in place, so keeping one costs nothing."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def local_path(self, name: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def keep(self, name: str) -> None:
        pass

    def fetch(self, name: str) -> Path:
        return self.folder / name

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ObjectSegments:
    """Segments under ``prefix`` in an object store, with a local cache for writing and assembling."""

    def __init__(self, store: ObjectStore, prefix: str):
        self.store = store
        self.prefix = prefix.strip("/")
        self._cache = Path(tempfile.mkdtemp(prefix="restyle-segments-"))

    def has(self, name: str) -> bool:
        return self.store.exists(f"{self.prefix}/{name}")

    def local_path(self, name: str) -> Path:
        path = self._cache / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def keep(self, name: str) -> None:
        self.store.put_file(self._cache / name, f"{self.prefix}/{name}")

    def fetch(self, name: str) -> Path:
        path = self.local_path(name)
        if not path.is_file():
            self.store.get_file(f"{self.prefix}/{name}", path)
        return path

    def discard(self) -> None:
        self.store.delete(self.prefix, recursive=True)
        self.close()

    def close(self) -> None:
        shutil.rmtree(self._cache, ignore_errors=True)
