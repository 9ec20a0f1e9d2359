"""Records out: JSON Lines, one line per frame, for models whose output is not a picture.

Each chunk writes its part (``<chunk>.jsonl``) the way a video chunk writes its segment:
under a temporary name, renamed when whole, so a part that exists is a finished chunk
and a resumed run reuses it. The job's output is the parts joined in order. A line::

    {"frame": 12, "pts": 6144, "time": 0.48, "boxes": [{"class": "FACE_FEMALE", "class_id": 1,
     "score": 0.79, "box": [168.4, 139.8, 359.0, 341.5]}]}

``box`` is [x1, y1, x2, y2] in the frame's pixels; ``time`` is the frame's presentation
time in seconds (pts x time base), the time a player seeks to.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from restyle.errors import OutputError, WorkDirError
from restyle.files import partial_path


class RecordsWriter:
    """One chunk's part: a JSON line per frame, in presentation order."""

    def __init__(self, path: Path, time_base: Fraction, first_frame: int):
        self.path = path
        self._tmp = partial_path(path)  # its own: another attempt at this chunk may write beside it
        self._time_base = time_base
        self._next_frame = first_frame
        self.frames = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - kept open across write() calls; closed by finish()/abort()
        except OSError as exc:
            raise WorkDirError(f"cannot write records part {path}: {exc.strerror}") from None

    def write(self, record: dict[str, Any], pts: int, duration: int) -> None:
        line = {"frame": self._next_frame, "pts": pts, "time": round(float(pts * self._time_base), 6), **record}
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._next_frame += 1
        self.frames += 1

    def close(self) -> None:
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def join_records(parts: Sequence[Path], output: Path) -> dict[str, Any]:
    """Write the parts, in order, into ``output``; return the summary the job shows."""
    frames = with_detections = 0
    counts: Counter[str] = Counter()
    top: Counter[str] = Counter()  # a classifier's (the tensors handler's) first label per frame
    try:
        with open(output, "w", encoding="utf-8") as out:
            for line in _lines(parts):
                record = json.loads(line)
                boxes = record.get("boxes") or []
                frames += 1
                with_detections += bool(boxes)
                counts.update(box.get("class", "?") for box in boxes)
                if record.get("top"):
                    top[str(record["top"][0].get("label"))] += 1
                out.write(line)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror}") from None
    summary = {"frames": frames, "frames_with_detections": with_detections, "detections": dict(counts.most_common())}
    return summary | ({"top_labels": dict(top.most_common())} if top else {})


def _lines(parts: Sequence[Path]) -> Iterator[str]:
    """Every line of every part, in order."""
    for part in parts:
        with open(part, encoding="utf-8") as lines:
            yield from lines
