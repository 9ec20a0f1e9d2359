"""A stream copied to a temporary file with a byte limit: the one copy loop of the service's intake."""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from restyle.errors import Invalid, TooLarge

BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Spooled:
    path: Path
    size: int
    sha256: str  # "" when not asked for


@contextmanager
def spooled(
    stream: BinaryIO,
    limit: int,
    what: str,
    setting: str,
    name: str = "upload",
    digest: bool = True,
    prefix: str = "restyle-catalogue-",
) -> Iterator[Spooled]:
    """Copy ``stream`` to a temporary file called ``name``, counting: over ``limit`` bytes is TooLarge, nothing is
    Invalid. The file is removed when the block ends."""
    hasher, size = hashlib.sha256() if digest else None, 0
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        path = Path(folder) / (re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._")[:80] or "upload")
        with path.open("wb") as handle:
            while block := stream.read(BLOCK):
                size += len(block)
                if size > limit:
                    raise TooLarge(f"{what} over the limit of {limit} bytes ({setting})")
                if hasher is not None:
                    hasher.update(block)
                handle.write(block)
        if size == 0:
            raise Invalid(f"the {what} is empty")
        yield Spooled(path, size, hasher.hexdigest() if hasher is not None else "")
