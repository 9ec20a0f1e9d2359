"""Files through Ray's object store: a Ray node needs no disk it shares with the driver.

The driver puts a file's bytes into Ray's object store in pieces (``PIECE_BYTES`` each)
and hands actors a :class:`ShippedFile`: the file's SHA-256, size and the pieces'
references. On a node, an actor reads it two ways:

* ``reader()``: a seekable file object that fetches the pieces it is asked for. A
  chunk's decoder reads the container's header and its own stretch of the video: a node
  moves the pieces its chunks need, not the whole input. The process keeps the pieces it
  read last (``PIECES_KEPT_BYTES``), so the header's piece and a stretch shared by two
  chunks come once to an actor that runs both.
* ``local()``: a whole copy in the node's file cache, named by the SHA-256 (weights of a
  registered model, a style picture): made once per node, under a lock, whatever the
  number of actors or chunks, and found there again by later jobs and restarted actors.

Ray keeps the pieces while someone holds their references: the driver's ``Shipper``
(its recent files), the tasks that carry them, and the actors built with them.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restyle.errors import InputError, RestyleError

PIECE_BYTES = 1 << 20
PIECES_KEPT_BYTES = 32 << 20  # per process, least recently read first out
_fetched = 0  # bytes this process got from the object store through ShippedFile, for the run report
_fetched_lock = threading.Lock()


def bytes_fetched() -> int:
    """Bytes this process has fetched through shipped files so far."""
    return _fetched


def _count(nbytes: int) -> None:
    global _fetched
    with _fetched_lock:
        _fetched += nbytes


@dataclass(frozen=True)
class ShippedFile:
    """A driver's file, readable on any node of its Ray cluster."""

    label: str  # the file's name on the driver, for messages
    sha256: str
    size: int
    pieces: tuple[Any, ...]  # ray.ObjectRef of each PIECE_BYTES piece, in order
    suffix: str = ""  # kept on the node's copy, for libraries that look at it

    @property
    def name(self) -> str:
        return self.label

    def reader(self) -> PieceReader:
        return PieceReader(self)

    def local(self) -> Path:
        """The node's copy, fetched into its cache the first time any actor on it asks."""
        from restyle.config import load_settings

        settings = load_settings()  # the node's own: RESTYLE_NODE_CACHE there
        folder = Path(settings.node_cache)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RestyleError(f"cannot use the node cache {folder}: {exc.strerror}") from None
        path = folder / f"{self.sha256}{self.suffix}"
        if _whole(path, self.size):
            os.utime(path)  # recently used: kept when the cache is trimmed
            return path
        with open(folder / f"{self.sha256}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one actor of the node fetches; the others wait, then find it
            if not _whole(path, self.size):
                partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
                digest = hashlib.sha256()
                with open(partial, "wb") as out:
                    for ref in self.pieces:
                        piece = _get(ref, self.label)
                        digest.update(piece)
                        out.write(piece)
                if digest.hexdigest() != self.sha256:
                    partial.unlink(missing_ok=True)
                    raise RestyleError(f"{self.label} arrived damaged on this node (its SHA-256 differs)")
                os.replace(partial, path)
                _trim(folder, settings.node_cache_bytes, keep=path)
        return path


def _trim(folder: Path, limit: int, keep: Path) -> None:
    """Remove the least recently used files until the cache holds at most ``limit`` bytes (``keep`` stays)."""
    files = []
    for entry in folder.iterdir():
        if entry.suffix not in (".lock", ".partial") and entry != keep:
            try:
                stat = entry.stat()
            except OSError:
                continue
            files.append((stat.st_mtime, stat.st_size, entry))
    total = sum(size for _, size, _ in files) + keep.stat().st_size
    for _, size, entry in sorted(files):
        if total <= limit:
            return
        entry.unlink(missing_ok=True)  # an actor reading it keeps its open file; the next one fetches again
        total -= size


class PieceReader(io.RawIOBase):
    """A seekable, read-only file over a shipped file's pieces, fetched as they are read."""

    def __init__(self, shipped: ShippedFile):
        super().__init__()
        self.shipped = shipped
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.shipped.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._position < self.shipped.size:
            index, offset = divmod(self._position, PIECE_BYTES)
            piece = self._piece(index)
            take = min(len(view) - written, len(piece) - offset)
            view[written : written + take] = piece[offset : offset + take]
            written += take
            self._position += take
        return written

    def _piece(self, index: int) -> bytes:
        key = (self.shipped.sha256, index)
        with _kept_lock:
            if key in _kept:
                _kept.move_to_end(key)
                return _kept[key]
        piece = _get(self.shipped.pieces[index], self.shipped.label)
        with _kept_lock:
            _kept[key] = piece
            while sum(len(p) for p in _kept.values()) > PIECES_KEPT_BYTES:
                _kept.popitem(last=False)
        return piece


_kept: OrderedDict[tuple[str, int], bytes] = OrderedDict()  # the pieces this process read last
_kept_lock = threading.Lock()


def _get(ref: Any, label: str) -> bytes:
    import ray

    try:
        piece = ray.get(ref)
    except ray.exceptions.RayError as exc:
        # Lost with the driver's node, or freed: the job cannot read its file any more (the driver retries it).
        raise RestyleError(
            f"{label} could not be fetched from the cluster's object store: {type(exc).__name__}"
        ) from None
    _count(len(piece))
    return piece


def _whole(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


class Shipper:
    """The driver's side: files put into the object store once, by their path, size and time."""

    def __init__(self, kept: int = 8):
        self._kept = kept
        self._shipped: OrderedDict[tuple[str, int, int], ShippedFile] = OrderedDict()
        self._lock = threading.Lock()

    def ship(self, path: Path) -> ShippedFile:
        import ray

        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        with self._lock:
            if key in self._shipped:
                self._shipped.move_to_end(key)
                return self._shipped[key]
        digest, pieces = hashlib.sha256(), []
        with path.open("rb") as file:
            for piece in iter(lambda: file.read(PIECE_BYTES), b""):
                digest.update(piece)
                pieces.append(ray.put(piece))
        shipped = ShippedFile(path.name, digest.hexdigest(), stat.st_size, tuple(pieces), path.suffix[:16])
        with self._lock:
            self._shipped[key] = shipped
            while len(self._shipped) > self._kept:  # references still in tasks or actors keep their pieces alive
                self._shipped.popitem(last=False)
        return shipped
