"""Decode one chunk's frames as RGB arrays, streaming: no frame ever touches the disk."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import BinaryIO

import av
import numpy as np

from restyle.errors import InputError
from restyle.media.chunks import Chunk
from restyle.media.source import open_input

log = logging.getLogger("restyle")

MAX_DAMAGED_SHARE = 0.25  # of a chunk's packets; past it the chunk is not worth restyling


def decode_chunk(
    source: str | BinaryIO,
    video_index: int,
    chunk: Chunk,
    name: str | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(pts, duration, rgb)`` for every frame of ``chunk`` of ``source`` (what ``open_input``
    opens; ``name`` says it in messages), in presentation order.

    Decoding starts at the chunk's keyframe; frames before ``lead_pts`` (the start,
    or the start of the lead-in) belong to the chunk before and are dropped. A frame's
    duration runs to the next frame's pts (the last one to the chunk's end), so variable
    frame rate survives the round trip.

    A damaged packet is skipped, as FFmpeg's own tools do: the frames after it keep their
    timestamps, the frame before it is shown longer, and the pipeline notes the frames
    that are missing. A chunk with more than MAX_DAMAGED_SHARE damaged packets fails.
    """
    path = name or str(source)
    with open_input(source) as container:
        stream = container.streams[video_index]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 1  # workers run in parallel; one core each
        try:
            pending: tuple[int, np.ndarray] | None = None
            packets = damaged = 0

            def damage(what: str) -> None:
                nonlocal damaged
                damaged += 1
                if damaged > max(2, MAX_DAMAGED_SHARE * chunk.frame_count):
                    raise InputError(
                        f"{path} is damaged around frame {chunk.first_frame + packets}: {damaged} times {what}"
                    )
                log.warning("%s: near frame %d, %s; skipped", path, chunk.first_frame + packets, what)

            for packet in _packets_from(container, stream, chunk):
                packets += 1
                try:
                    frames = stream.decode(packet)
                except av.InvalidDataError:
                    damage("a packet could not be decoded")
                    continue
                ours = [f for f in frames if f.pts is not None and f.pts >= chunk.lead_pts]
                for frame in ours:  # the decoder gives frames in presentation order
                    if frame.pts >= chunk.end_pts:
                        break
                    if pending is not None and frame.pts <= pending[0]:
                        damage("a frame's timestamp went back in time")  # a damaged timing table
                        continue
                    rgb = frame.to_ndarray(format="rgb24")
                    if pending is not None:
                        yield pending[0], frame.pts - pending[0], pending[1]
                    pending = (frame.pts, rgb)
                if any(f.pts >= chunk.end_pts for f in ours):
                    break
            if pending is not None:
                yield pending[0], chunk.end_pts - pending[0], pending[1]
        except av.FFmpegError as exc:
            raise InputError(f"{path}: cannot decode frames {chunk.first_frame}+: {exc}") from None


def _packets_from(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, chunk: Chunk
) -> Iterator[av.Packet]:
    """The video packets from one at or before the chunk's keyframe on.

    The first chunk reads from the start: no seek. Seeking is exact in MP4 and Matroska
    (they have an index) but a search in MPEG-TS and other streams made for broadcast,
    which can land past the target: then it seeks again further back, and at last reads
    from the start.
    """
    if chunk.first_frame == 0 and chunk.lead_pts == chunk.seek_pts:
        yield from container.demux(stream)
        return
    one_second = max(1, round(1 / stream.time_base)) if stream.time_base else 1
    for back in (0, one_second, 10 * one_second, None):
        if back is None:
            container.seek(0, backward=True)  # the start, in AV_TIME_BASE units
        else:
            container.seek(chunk.seek_pts - back, stream=stream, backward=True)
        packets = container.demux(stream)
        first = next((p for p in packets if p.pts is not None or p.dts is not None), None)
        if first is None:
            return
        landed = first.pts if first.pts is not None else first.dts
        if back is None or landed <= chunk.seek_pts:
            yield first
            yield from packets
            return
