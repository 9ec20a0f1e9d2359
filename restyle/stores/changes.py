"""What changed under a prefix since the last look, so that a poller does not re-list what it handled.

In a local folder store a folder's modification time changes whenever a name in it is added, removed
or renamed (a copy landing, an upload renamed into place, a retention sweep's delete): a folder whose
time is the one seen at the last look is not listed again, only its subfolders are looked into. A
folder changed within the last ``recent_s`` seconds is listed again at the next look (a file-system
clock tick could hide a second change). Rewriting a file's bytes in place (same name) changes no
folder: a full look (:meth:`Changes.everything`, every ``inbox_rescan_seconds`` in the trigger) sees it.

An S3-compatible store has no folder times: every look lists everything, in pages. There, events
(SeaweedFS filer webhooks, S3 notifications) make jobs at once and the listing is the fallback: the
trigger looks only every ``inbox_rescan_seconds`` while events come (see ``Trigger.scan``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from restyle.errors import StoreError
from restyle.stores.objects import ObjectInfo, ObjectStore


@dataclass
class _Seen:
    mtime_ns: int
    subfolders: list[str] = field(default_factory=list)


class Changes:
    """The objects under ``prefix`` of ``store`` in folders that changed since the last :meth:`look`."""

    def __init__(self, store: ObjectStore, prefix: str, recent_s: float = 2.0):
        self.store, self.prefix, self.recent_s = store, prefix, recent_s
        self._folders: dict[str, _Seen] = {}  # folder path -> what it was at the last look
        self._again: set[str] = set()  # folders to list at the next look whatever their time

    def look(self) -> Iterator[ObjectInfo]:
        """Every object in a folder that changed since the last look (everything, the first time)."""
        if not self.store.is_local:
            yield from self.store.walk(self.prefix)
            return
        yield from self._folder(f"{self.store.root}/{self.prefix.strip('/')}".rstrip("/"))

    def everything(self) -> None:
        """Forget what was seen: the next look lists every object."""
        self._folders.clear()

    def again(self, key: str) -> None:
        """List the folder of ``key`` again at the next look (an object looked at again later)."""
        self._again.add(f"{self.store.root}/{key}".rsplit("/", 1)[0])

    def _folder(self, folder: str) -> Iterator[ObjectInfo]:
        try:
            stat = os.stat(folder)
        except FileNotFoundError:
            self._forget(folder)
            return
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc}") from None
        seen = self._folders.get(folder)
        if seen is not None and seen.mtime_ns == stat.st_mtime_ns and folder not in self._again:
            for sub in seen.subfolders:
                yield from self._folder(sub)
            return
        self._again.discard(folder)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            self._forget(folder)
            return
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc}") from None
        subfolders = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
        if stat.st_mtime < time.time() - self.recent_s:  # the time read before listing: a change since shows
            self._folders[folder] = _Seen(stat.st_mtime_ns, subfolders)
        else:
            self._folders.pop(folder, None)
        root = len(self.store.root) + 1
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and not entry.name.endswith(".partial"):
                found = entry.stat(follow_symlinks=False)
                etag = f"{found.st_size}-{int(found.st_mtime * 1e6)}"  # as ObjectStore makes a local file's
                yield ObjectInfo(entry.path[root:], found.st_size, etag, found.st_mtime)
        for sub in subfolders:
            yield from self._folder(sub)

    def _forget(self, folder: str) -> None:
        for path in [path for path in self._folders if path == folder or path.startswith(folder + "/")]:
            del self._folders[path]
