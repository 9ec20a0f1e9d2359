"""What a batch is made of: its inputs (a folder walked, or a list of paths) and the output each one gets.

The walk is recursive and streams (``os.scandir``), in a stable order (names sorted per folder),
skipping hidden entries (a leading dot), symbolic links (a batch reads what is under its root,
nothing a link points elsewhere) and anything not a regular file; the output folder, when it is
inside the input folder, is never walked. The kind of an input (picture or video) is decided by
its content when it is read, never by its name; the name only picks the output's suffix.

Outputs mirror the inputs' tree. Two inputs can never write one output: a name is kept when its
suffix is one restyle writes, else the new suffix is appended (``clip.avi`` -> ``clip.avi.mp4``,
records ``a.jpg`` -> ``a.jpg.jsonl``), so different inputs give different names; and names that
differ only by case (``A.jpg``, ``a.jpg``), which one file system cannot hold apart, are caught
before any work (the later one fails with the reason).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from restyle.errors import InputError
from restyle.handlers.base import Handler, OutputKind
from restyle.jobspec import JobSpec
from restyle.media.assemble import output_suffix
from restyle.pipeline.images import WRITABLE_SUFFIXES
from restyle.pipeline.manifest import MANIFEST_JSONL, MANIFEST_PARQUET, PREDICTIONS_JSONL, PREDICTIONS_PARQUET

WORK_FOLDER = ".restyle-work"  # inside the output folder: videos' finished chunks, kept until the batch ends
RESERVED = {name.casefold() for name in (MANIFEST_JSONL, MANIFEST_PARQUET, PREDICTIONS_JSONL, PREDICTIONS_PARQUET)}


@dataclass(frozen=True)
class BatchItem:
    path: Path  # where this machine reads it
    input: str  # its name under the batch's root, as the manifest shows it ("/" between folders)
    size: int
    version: str  # its mtime in ns: a file rewritten since is another input


def walk(root: Path, skip: Path | None = None) -> Iterator[BatchItem]:
    """Every regular, non-hidden file under ``root``, depth first, names sorted; ``skip``'s subtree left out."""
    skipped = skip.resolve() if skip is not None else None
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            raise InputError(f"cannot list {folder}: {exc.strerror}") from None
        folders = []
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if skipped is None or Path(entry.path).resolve() != skipped:
                    folders.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                name = Path(entry.path).relative_to(root).as_posix()
                yield BatchItem(Path(entry.path), name, stat.st_size, str(stat.st_mtime_ns))
        stack.extend(reversed(folders))


def listed(list_file: Path) -> tuple[Path, list[BatchItem]]:
    """The paths' common folder, and the files a list names, one path per line (relative to the list's folder;
    blank lines and # comments skipped), each named in the manifest by its path under that folder."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list {list_file}: {exc}") from None
    paths = [(list_file.parent / line.strip()).resolve() for line in lines if line.strip() and not line.startswith("#")]
    if not paths:
        raise InputError(f"the list {list_file} names no files")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    items, seen = [], set()
    for path in paths:
        if path in seen:
            continue
        seen.add(path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise InputError(f"the list {list_file} names {path}, which cannot be read: {exc.strerror}") from None
        if not path.is_file():
            raise InputError(f"the list {list_file} names {path}, which is not a file")
        items.append(BatchItem(path, path.relative_to(root).as_posix(), stat.st_size, str(stat.st_mtime_ns)))
    return root, items


def mirrored_output(name: str, kind: str, handler: Handler, spec: JobSpec) -> str:
    """The output's name under the output root for input ``name`` of ``kind`` ("image" or "video")."""
    suffix = Path(name).suffix.lower()
    if handler.output == OutputKind.RECORDS:
        return name + ".jsonl"
    if kind == "image":
        return name if suffix in WRITABLE_SUFFIXES else name + ".png"
    wanted = output_suffix(name) if spec.output.container == "auto" else f".{spec.output.container}"
    return name if suffix == wanted else name + wanted


class Outputs:
    """The outputs claimed so far: a second input whose output would land on a taken name is refused."""

    def __init__(self) -> None:
        self._taken: dict[str, str] = {name: "the batch's manifest" for name in RESERVED}

    def claim(self, output: str, input: str) -> None:
        key = output.casefold()
        holder = self._taken.setdefault(key, input)
        if holder != input:
            raise InputError(f"its output {output} would overwrite {holder}'s (names that differ only by case)")
