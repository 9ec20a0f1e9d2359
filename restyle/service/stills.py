"""A finished job's stills for the dashboard: a strip of before/after pairs along the video.

``before-N``/``after-N`` are taken at :data:`STRIP` (shares of the video's length); the middle pair is also
kept as plain ``before``/``after``, the names the API has always served. Records jobs have no after.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import av

from restyle.service import keys
from restyle.service.context import Context

log = logging.getLogger("restyle.worker")

STRIP = (0.1, 0.3, 0.5, 0.7, 0.9)  # where along the video each pair is taken
MIDDLE = STRIP.index(0.5)
STILL_NAMES = frozenset(
    {"before", "after"} | {f"{side}-{n}" for side in ("before", "after") for n in range(len(STRIP))}
)


def make_stills(context: Context, job_id: str, source: Path, target: Path | None) -> None:
    """Store the strip of stills of ``source`` (before) and ``target`` (after; None for a records job)."""
    for side, path in (("before", source), ("after", target)):
        if path is None:
            continue
        try:
            pictures = _frames_at(path, STRIP)
        except Exception as exc:  # noqa: BLE001 - stills are a nicety; the job is done without them
            log.warning("stills %s for %s not made: %s", side, job_id, exc)
            continue
        for n, image in enumerate(pictures):
            names = (f"{side}-{n}", side) if n == MIDDLE else (f"{side}-{n}",)
            with tempfile.NamedTemporaryFile(suffix=".jpg") as still:
                image.save(still.name, quality=85)
                for name in names:
                    context.system.put_file(Path(still.name), keys.still(job_id, name))


def _frames_at(path: Path, shares: tuple[float, ...]) -> list:
    """The frames at ``shares`` of the video's length, as pictures no larger than 640 px."""
    pictures = []
    with av.open(str(path), metadata_errors="replace") as container:
        stream = container.streams.video[0]
        start, length = stream.start_time or 0, stream.duration or 0
        for share in shares:
            at = start + int(length * share)
            container.seek(at, stream=stream)  # lands on the keyframe before; decode on to the wanted frame
            frame = next(f for f in container.decode(stream) if f.pts is None or f.pts >= at)
            image = frame.to_image()
            image.thumbnail((640, 640))
            pictures.append(image)
    return pictures
