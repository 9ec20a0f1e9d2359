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
from restyle.media.source import open_input

# Output suffix -> (muxer, its options). The muxer is given by name: the partial file's name says nothing.
CONTAINERS: dict[str, tuple[str, dict[str, str]]] = {
    ".mp4": ("mp4", {}),
    ".m4v": ("mp4", {}),
    ".mov": ("mov", {}),
    ".mkv": ("matroska", {}),
    ".webm": ("webm", {}),
    ".ts": ("mpegts", {}),
    ".mts": ("mpegts", {"mpegts_m2ts_mode": "1"}),
    ".m2ts": ("mpegts", {"mpegts_m2ts_mode": "1"}),
}

# What each muxer holds by stream copy (FFmpeg's muxers refuse the rest at the header), by codec name.
_MP4_AUDIO = {"aac", "mp3", "mp2", "ac3", "eac3", "opus", "flac", "alac", "dts", "truehd"}
_MOV_AUDIO = _MP4_AUDIO | {
    "pcm_s16le",
    "pcm_s16be",
    "pcm_s24le",
    "pcm_s24be",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_u8",
    "pcm_mulaw",
    "pcm_alaw",
}
_TS_AUDIO = {"aac", "aac_latm", "mp3", "mp2", "ac3", "eac3", "opus", "dts", "truehd", "pcm_bluray"}
_TAKES: dict[str, dict[str, set[str] | None]] = {
    "mp4": {"video": {"h264", "hevc", "vp9", "av1"}, "audio": _MP4_AUDIO, "subtitle": {"mov_text"}},
    "mov": {"video": {"h264", "hevc", "vp9", "av1", "prores"}, "audio": _MOV_AUDIO, "subtitle": {"mov_text"}},
    "matroska": {
        "video": None,
        "audio": None,
        "subtitle": {"subrip", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle"},
    },
    "webm": {"video": {"vp8", "vp9", "av1"}, "audio": {"opus", "vorbis"}, "subtitle": {"webvtt"}},
    "mpegts": {
        "video": {"h264", "hevc", "mpeg2video"},
        "audio": _TS_AUDIO,
        "subtitle": {"dvb_subtitle", "dvb_teletext"},
    },
}
# The encoder for the restyled video when the configured one's codec does not fit the container.
_ENCODER_FOR = {"webm": "libvpx-vp9"}
_NO_CHAPTERS = {"mpegts"}
_NO_TIMECODE = {"mpegts", "webm"}
# Container tags that describe the encoding of this file, not the film: never copied.
_OWN_TAGS = {
    "encoder",
    "major_brand",
    "minor_version",
    "compatible_brands",
    "duration",
    "handler_name",
    "vendor_id",
    "encoder-eng",
    "creation_tool",
}


@dataclass(frozen=True)
class OutputPlan:
    """How an output will be written: decided, and refused if it must be, before any frame is restyled."""

    muxer: str
    options: dict[str, str]
    encoder: str  # the video encoder the segments use
    notes: list[str]


@dataclass(frozen=True)
class AssembleResult:
    video_packets: int
    copied_streams: list[int]  # input stream indexes copied as they are


def container_for(output: Path) -> tuple[str, dict[str, str]]:
    """The muxer (and its options) for an output path, by its extension."""
    try:
        return CONTAINERS[output.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(CONTAINERS))
        raise OutputError(f"cannot write a video as {output.name!r}: use one of {known}") from None


def output_suffix(name: str) -> str:
    """The output suffix for an input called ``name``: its own container where restyle writes it, else .mp4."""
    suffix = Path(name).suffix.lower()
    return {".m4v": ".mp4"}.get(suffix, suffix) if suffix in CONTAINERS else ".mp4"


def plan_output(info: VideoInfo, output: Path, encoder: str) -> OutputPlan:
    """Check that ``output``'s container holds everything of ``info`` that is copied; pick the video encoder.

    A stream or chapters the container cannot hold is refused with a reason (exit 2),
    never dropped: the output has all the input had, or is not written.
    """
    muxer, options = container_for(output)
    takes = _TAKES[muxer]
    notes = []
    if takes["video"] is not None and _encoded_codec(encoder) not in takes["video"]:
        wanted = _ENCODER_FOR.get(muxer)
        if wanted is None:
            raise OutputError(f"the {muxer} container cannot hold {encoder} video; write a .mp4 or .mkv instead")
        notes.append(f"{output.suffix} holds no {_encoded_codec(encoder)} video: the output is encoded with {wanted}")
        encoder = wanted
    for facts in info.other_streams:
        allowed = takes.get(facts.kind, set())
        if allowed is not None and facts.codec not in allowed:
            better = ".mkv" if muxer != "matroska" else ".mp4"
            raise OutputError(
                f"the {muxer} container cannot hold the input's {facts.codec} {facts.kind} (stream {facts.index}) "
                f"without re-encoding it; write a {better} instead"
            )
    if info.chapters and muxer in _NO_CHAPTERS:
        raise OutputError(
            f"the {muxer} container cannot hold the input's {info.chapters} chapters; write a .mkv or .mp4 instead"
        )
    if info.timecode and muxer in _NO_TIMECODE:
        notes.append(
            f"the {muxer} container holds no timecode track: the input's start timecode {info.timecode} is not kept"
        )
    return OutputPlan(muxer, options, encoder, notes)


def _encoded_codec(encoder: str) -> str:
    try:
        return av.codec.Codec(encoder, "w").canonical_name
    except (ValueError, av.FFmpegError):
        return encoder


def assemble(info: VideoInfo, segments: Sequence[tuple[Chunk, Path]], output: Path, plan: OutputPlan) -> AssembleResult:
    """Write ``output``: the segments' video, then every audio/subtitle stream of the input copied."""
    with open_input(info.path) as source:
        try:  # a full disk may show only when the container closes: its index is written last
            with av.open(str(output), "w", format=plan.muxer, options=plan.options) as out:
                return _join(info, segments, source, out)
        except (OSError, av.FFmpegError) as exc:
            raise OutputError(f"cannot write {output}: {getattr(exc, 'strerror', None) or exc}") from None


def _join(
    info: VideoInfo,
    segments: Sequence[tuple[Chunk, Path]],
    source: av.container.InputContainer,
    out: av.container.OutputContainer,
) -> AssembleResult:
    out.metadata.update({k: v for k, v in source.metadata.items() if k.lower() not in _OWN_TAGS})
    with av.open(str(segments[0][1])) as first:
        video_out = out.add_stream_from_template(first.streams.video[0])
    video_out.time_base = info.time_base
    # The stream's declared rate (Matroska's DefaultDuration; readers guess 1000 fps without it) and pixel shape
    # come from the codec context when the header is written.
    video_out.codec_context.framerate = info.average_rate
    if info.sample_aspect_ratio:
        video_out.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
    if info.rotation:
        video_out.set_display_rotation(info.rotation)
    _keep_tags(source.streams[info.video_index], video_out)
    if info.timecode and out.format.name not in _NO_TIMECODE:
        video_out.metadata["timecode"] = info.timecode  # mp4/mov write a timecode track from it
    copied: dict[int, av.stream.Stream] = {}
    for facts in info.other_streams:
        stream = source.streams[facts.index]
        copied[facts.index] = out.add_stream_from_template(stream)
        _keep_tags(stream, copied[facts.index])
    chapters = source.chapters()
    if chapters and out.format.name not in _NO_CHAPTERS:
        out.set_chapters(chapters)
    packets = heapq.merge(
        _segment_packets(info, segments, video_out),
        _source_packets(source, copied),
        key=lambda item: item[0],
    )
    count = 0
    for _, packet in packets:
        out.mux(packet)
        count += packet.stream is video_out
    return AssembleResult(video_packets=count, copied_streams=sorted(copied))


def _keep_tags(source: av.stream.Stream, target: av.stream.Stream) -> None:
    """A stream's language, title and dispositions (default, forced, commentary...), as the input had them."""
    for key in ("language", "title"):
        if source.metadata.get(key):
            target.metadata[key] = source.metadata[key]
    target.disposition = source.disposition


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


def _source_packets(
    source: av.container.InputContainer, copied: dict[int, av.stream.Stream]
) -> Iterator[tuple[float, av.Packet]]:
    if not copied:
        return
    streams = [source.streams[i] for i in copied]
    for packet in source.demux(streams):
        if packet.size == 0 or packet.dts is None:
            continue
        time_base: Fraction = packet.time_base
        packet.stream = copied[packet.stream.index]
        yield float(packet.dts * time_base), packet
