"""Where finished chunk segments live: a chunk whose segment is here is done.

A folder for ``restyle run --work-dir``; the system object store for the service, so
that any worker on any machine can pick up a job where a lost one left it.

A worker writes its segment where ``local_path`` says and calls ``keep``. A store that
workers on other machines cannot reach (a folder, or the embedded folder object store)
is not handed to them: they get :class:`CarriedSegments`, whose ``keep`` gives the bytes
back with the chunk's result, and whoever scheduled the chunk stores them (``put_bytes``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from restyle.files import write_whole
from restyle.stores.objects import ObjectStore


class SegmentStore(Protocol):
    reachable_anywhere: bool  # can a worker on another machine store into it directly (an S3 server)?

    def has(self, name: str) -> bool:
        """Is the segment ``name`` (e.g. ``key/chunk_...mp4``) finished and stored?"""
        ...

    def local_path(self, name: str) -> Path:
        """Where a worker on this machine writes the segment."""
        ...

    def keep(self, name: str) -> bytes | None:
        """The segment at ``local_path(name)`` is finished: make it durable (None), or give its bytes
        back for the scheduler to store with ``put_bytes`` (a store the worker cannot reach)."""
        ...

    def put_bytes(self, name: str, data: bytes) -> None:
        """Store a finished segment that a worker gave back."""
        ...

    def fetch(self, name: str) -> Path:
        """A local copy of a stored segment, for assembling."""
        ...

    def discard(self) -> None:
        """Drop every segment (the job is delivered and the work area was temporary)."""
        ...


class FolderSegments:
    """Segments in a local folder: written in place, so keeping one costs nothing."""

    reachable_anywhere = False

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

    def put_bytes(self, name: str, data: bytes) -> None:
        write_whole(self.local_path(name), data)  # whole or not at all: a segment here means done

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
        self._worker_copy = False  # a copy sent to a worker elsewhere: it keeps nothing on its disk

    @property
    def reachable_anywhere(self) -> bool:
        return not self.store.is_local

    def __getstate__(self) -> dict:
        return {"store": self.store, "prefix": self.prefix, "cache": str(self._cache)}

    def __setstate__(self, state: dict) -> None:
        self.store, self.prefix = state["store"], state["prefix"]
        self._cache, self._worker_copy = Path(state["cache"]), False
        if not self._cache.is_dir():  # a worker on another machine: a scratch folder of its own, emptied as it goes
            self._cache, self._worker_copy = Path(tempfile.mkdtemp(prefix="restyle-segments-")), True

    def has(self, name: str) -> bool:
        return self.store.exists(f"{self.prefix}/{name}")

    def local_path(self, name: str) -> Path:
        path = self._cache / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def keep(self, name: str) -> None:
        self.store.put_file(self._cache / name, f"{self.prefix}/{name}")
        if self._worker_copy:
            (self._cache / name).unlink(missing_ok=True)

    def put_bytes(self, name: str, data: bytes) -> None:
        self.store.put_bytes(data, f"{self.prefix}/{name}")

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


class CarriedSegments:
    """What a worker on another machine gets for a store it cannot reach: segments go back with the result.

    It writes into a scratch folder on its own machine; ``keep`` reads the finished segment,
    removes it and returns its bytes, which travel back with the chunk's result to the
    scheduler, who stores them (``put_bytes`` of the real store). Made on the worker's side
    lazily, so that it names no path of the scheduler's machine.
    """

    reachable_anywhere = False

    def __init__(self) -> None:
        self._folder: Path | None = None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._folder = None

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="restyle-carried-"))
        return self._folder

    def has(self, name: str) -> bool:
        return False

    def local_path(self, name: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def keep(self, name: str) -> bytes:
        path = self.folder / name
        try:
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    def put_bytes(self, name: str, data: bytes) -> None:
        raise TypeError("carried segments are stored by the scheduler's own store")

    def fetch(self, name: str) -> Path:
        raise TypeError("carried segments are fetched from the scheduler's own store")

    def discard(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
