"""Assemble: join a job's segments by stream copy and mux the input's audio back, bit-exact.

Nothing is re-encoded here. Video packets come from the segments with their timestamps
moved back to the input's; audio (and subtitle) packets come straight from the input.
The two are merged by time so the muxer never has to buffer a whole stream.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from restyle.errors import OutputError
from restyle.media.chunks import Chunk
from restyle.media.probe import VideoInfo

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


@dataclass(frozen=True)
class AssembleResult:
    video_packets: int
    copied_streams: list[int]  # input stream indexes copied as they are
    dropped_streams: list[str]  # streams the output container cannot hold, with why


def container_for(output: Path) -> str:
    """The muxer for an output path, by its extension."""
    try:
        return CONTAINERS[output.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(CONTAINERS))
        raise OutputError(f"cannot write a video as {output.name!r}: use one of {known}") from None


def assemble(info: VideoInfo, segments: Sequence[tuple[Chunk, Path]], output: Path, muxer: str) -> AssembleResult:
    """Write ``output``: the segments' video, then every audio/subtitle stream of the input copied."""
    with av.open(info.path, metadata_errors="replace") as source:
        try:  # a full disk may show only when the container closes: its index is written last
            with av.open(str(output), "w", format=muxer) as out:
                return _join(info, segments, source, out, muxer)
        except (OSError, av.FFmpegError) as exc:
            raise OutputError(f"cannot write {output}: {getattr(exc, 'strerror', None) or exc}") from None


def _join(info: VideoInfo, segments: Sequence[tuple[Chunk, Path]], source: av.container.InputContainer,
          out: av.container.OutputContainer, muxer: str) -> AssembleResult:
    with av.open(str(segments[0][1])) as first:
        video_out = out.add_stream_from_template(first.streams.video[0])
    video_out.time_base = info.time_base
    if info.rotation:
        video_out.set_display_rotation(info.rotation)
    copied: dict[int, av.stream.Stream] = {}
    dropped: list[str] = []
    for facts in info.other_streams:
        stream = source.streams[facts.index]
        if not _muxer_takes(muxer, stream):
            if facts.kind == "audio":
                raise OutputError(
                    f"the {muxer} container cannot hold the input's {stream.codec_context.name} audio "
                    "without re-encoding it; write a .mkv instead"
                )
            dropped.append(f"{facts.kind} stream {facts.index} ({facts.codec}): {muxer} cannot hold it")
            continue
        copied[facts.index] = out.add_stream_from_template(stream)
    packets = heapq.merge(
        _segment_packets(info, segments, video_out),
        _source_packets(source, copied),
        key=lambda item: item[0],
    )
    count = 0
    for _, packet in packets:
        out.mux(packet)
        count += packet.stream is video_out
    return AssembleResult(video_packets=count, copied_streams=sorted(copied), dropped_streams=dropped)


def _segment_packets(
    info: VideoInfo, segments: Sequence[tuple[Chunk, Path]], video_out: av.video.stream.VideoStream
) -> Iterator[tuple[float, av.Packet]]:
    last_dts: int | None = None
    for chunk, path in segments:
        with av.open(str(path)) as segment:
            stream = segment.streams.video[0]
            for packet in segment.demux(stream):
                if packet.size == 0:
                    continue
                scale = packet.time_base / info.time_base
                pts = chunk.start_pts + round(packet.pts * scale)
                dts = chunk.start_pts + round((packet.dts if packet.dts is not None else packet.pts) * scale)
                duration = round(packet.duration * scale) if packet.duration else 0
                packet.time_base = info.time_base
                packet.pts, packet.dts, packet.duration = pts, dts, duration
                if last_dts is not None and packet.dts <= last_dts:
                    # Variable frame rate can make x264's reordering delay differ between segments.
                    packet.dts = min(last_dts + 1, packet.pts)
                last_dts = packet.dts
                packet.stream = video_out
                yield float(packet.dts * info.time_base), packet


def _source_packets(source: av.container.InputContainer, copied: dict[int, av.stream.Stream]) -> Iterator[tuple[float, av.Packet]]:
    if not copied:
        return
    streams = [source.streams[i] for i in copied]
    for packet in source.demux(streams):
        if packet.size == 0 or packet.dts is None:
            continue
        time_base: Fraction = packet.time_base
        packet.stream = copied[packet.stream.index]
        yield float(packet.dts * time_base), packet


# What each container holds without re-encoding (FFmpeg's muxers refuse the rest at the header).
_MP4_AUDIO = {"aac", "mp3", "mp2", "ac3", "eac3", "opus", "flac", "alac"}
_MOV_AUDIO = _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8"}
_TAKES = {
    "mp4": {"audio": _MP4_AUDIO, "subtitle": {"mov_text"}},
    "mov": {"audio": _MOV_AUDIO, "subtitle": {"mov_text"}},
    "matroska": {"audio": None, "subtitle": {"subrip", "srt", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle"}},
}


def _muxer_takes(muxer: str, stream: av.stream.Stream) -> bool:
    codecs = _TAKES[muxer].get(stream.type, set())
    return codecs is None or stream.codec_context.name in codecs
