"""Decode one chunk's frames as RGB arrays, streaming: no frame ever touches the disk."""
from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np

from restyle.errors import InputError
from restyle.media.chunks import Chunk


def decode_chunk(path: str, video_index: int, chunk: Chunk) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(pts, duration, rgb)`` for every frame of ``chunk``, in presentation order.

    Decoding starts at the chunk's keyframe; frames before ``lead_pts`` (the start,
    or the start of the lead-in) belong to the chunk before and are dropped. A frame's duration runs to the next frame's pts (the
    last one to the chunk's end), so variable frame rate survives the round trip.
    """
    with av.open(path) as container:
        stream = container.streams[video_index]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 1  # workers run in parallel; one core each
        try:
            container.seek(chunk.seek_pts, stream=stream, backward=True)
            pending: tuple[int, np.ndarray] | None = None
            for frame in container.decode(stream):
                pts = frame.pts
                if pts is None or pts < chunk.lead_pts:
                    continue
                if pts >= chunk.end_pts:
                    break
                rgb = frame.to_ndarray(format="rgb24")
                if pending is not None:
                    yield pending[0], pts - pending[0], pending[1]
                pending = (pts, rgb)
            if pending is not None:
                yield pending[0], chunk.end_pts - pending[0], pending[1]
        except av.FFmpegError as exc:
            raise InputError(f"{path}: cannot decode frames {chunk.first_frame}+: {exc}") from None

