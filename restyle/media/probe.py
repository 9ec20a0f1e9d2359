"""Probe a video: the facts the plan needs, checked against the configured limits.

The video stream's packets are read once (demux only, no decoding) so that the frame
count and every frame's timestamp are known exactly, even for variable frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from restyle.config import Settings
from restyle.errors import InputError
from restyle.media.source import open_input


@dataclass(frozen=True)
class StreamFacts:
    """A non-video stream that is copied to the output as it is."""

    index: int
    kind: str  # "audio", "subtitle", ...
    codec: str  # FFmpeg's codec name ("mp3"), never a decoder's ("mp3float")
    start_s: float | None = None  # when its first packet is presented; the output keeps it relative to the video


@dataclass(frozen=True)
class VideoInfo:
    """What restyle knows about an input video."""

    path: str
    size_bytes: int
    container: str
    video_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    average_rate: Fraction
    rotation: int  # degrees, as the display matrix says; kept on the output
    frame_pts: list[int] = field(repr=False)  # every frame's pts, in presentation order
    keyframe_pts: list[int] = field(repr=False)
    duration_pts: int  # pts of the end of the last frame
    other_streams: list[StreamFacts]
    sample_aspect_ratio: Fraction | None = None  # of a pixel; anamorphic video is not 1:1, and stays so
    timecode: str | None = None  # a start timecode ("10:00:00:00"), kept on outputs that hold one
    chapters: int = 0

    @property
    def start_s(self) -> float:
        return float(self.frame_pts[0] * self.time_base)

    @property
    def frame_count(self) -> int:
        return len(self.frame_pts)

    @property
    def duration_s(self) -> float:
        return float((self.duration_pts - self.frame_pts[0]) * self.time_base)

    @property
    def audio_streams(self) -> list[StreamFacts]:
        return [s for s in self.other_streams if s.kind == "audio"]

    @property
    def is_variable_rate(self) -> bool:
        steps = {b - a for a, b in zip(self.frame_pts, self.frame_pts[1:], strict=False)}
        return len(steps) > 1 and (max(steps) - min(steps)) > 1  # 1 tick of rounding is still constant


def probe(path: str | Path, settings: Settings) -> VideoInfo:
    """Read the facts of ``path``; raise InputError with a reason a person can act on."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if path.is_dir():
        raise InputError(f"input is a folder, not a video: {path}")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"input is empty (0 bytes): {path}")
    if size > settings.max_input_bytes:
        raise InputError(
            f"input is {size} bytes, over the limit of {settings.max_input_bytes} (RESTYLE_MAX_INPUT_BYTES)"
        )
    try:
        container = open_input(path)
    except av.FFmpegError as exc:
        raise InputError(f"cannot read {path} as a video: {_reason(exc)}") from None
    with container:
        if container.format.name.endswith("_pipe") or container.format.name == "image2":
            kind = container.format.name.removesuffix("_pipe").upper()
            raise InputError(f"{path} is a single picture ({kind}), not a video; for pictures give a folder of them")
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise InputError(f"{path} has no video stream (it has: {kinds})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:
            raise InputError(f"{path}: its video stream is in a codec FFmpeg cannot decode (or its header is damaged)")
        width, height = ctx.width, ctx.height
        _check_limits(path, stream, width, height, settings)
        sounds = [s for s in container.streams.audio]
        frame_pts, keyframe_pts, end_pts, starts = _scan_packets(path, container, stream, sounds, settings)
        if not frame_pts:
            raise InputError(f"{path} has a video stream but no frames could be read from it")
        _check_duration(path, float((end_pts - frame_pts[0]) * stream.time_base), settings)
        if stream.frames and len(frame_pts) < stream.frames * 0.98:
            raise InputError(
                f"{path} looks truncated: its header promises {stream.frames} frames, only {len(frame_pts)} can be read"
            )
        rotation = _rotation(container, stream)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        kept = [s for s in container.streams if s.index != stream.index and s.type in ("audio", "subtitle")]
        others = [
            StreamFacts(index=s.index, kind=s.type, codec=codec_name(s), start_s=starts.get(s.index)) for s in kept
        ]
        sar = stream.sample_aspect_ratio
        timecode = stream.metadata.get("timecode") or next(
            (s.metadata["timecode"] for s in container.streams if "timecode" in s.metadata), None
        )
        return VideoInfo(
            path=str(path),
            size_bytes=size,
            container=container.format.name,
            video_index=stream.index,
            codec=codec_name(stream),
            width=width,
            height=height,
            pix_fmt=ctx.pix_fmt or "unknown",
            time_base=stream.time_base,
            average_rate=Fraction(rate),
            rotation=rotation,
            frame_pts=frame_pts,
            keyframe_pts=keyframe_pts,
            duration_pts=end_pts,
            other_streams=others,
            sample_aspect_ratio=Fraction(sar) if sar else None,
            timecode=timecode,
            chapters=len(container.chapters()),
        )


def _check_limits(path: Path, stream: av.video.stream.VideoStream, width: int, height: int, settings: Settings) -> None:
    if width <= 0 or height <= 0:
        raise InputError(
            f"{path}: the video stream has no usable picture size (a corrupt header, or a size FFmpeg refuses)"
        )
    if width * height > settings.max_pixels:
        raise InputError(
            f"{path} is {width}x{height}, over the limit of {settings.max_pixels} pixels a frame (RESTYLE_MAX_PIXELS)"
        )
    if stream.duration is not None and stream.time_base is not None:
        _check_duration(path, float(stream.duration * stream.time_base), settings)


def _check_duration(path: Path, seconds: float, settings: Settings) -> None:
    if seconds > settings.max_duration_s:
        raise InputError(
            f"{path} lasts {seconds:.0f} s, over the limit of {settings.max_duration_s:.0f} s (RESTYLE_MAX_DURATION_S)"
        )


def _scan_packets(
    path: Path, container: av.container.InputContainer, stream, sounds: list, settings: Settings
) -> tuple[list[int], list[int], int, dict[int, float]]:
    """Every frame's pts (sorted), the keyframes' pts, the end of the last frame, and when each sound starts.

    Stops as soon as the frames are over the limit: a file of millions of tiny frames
    costs the time and memory of the limit, not of the file.
    """
    pts: list[int] = []
    keys: list[int] = []
    durations: dict[int, int] = {}
    starts: dict[int, float] = {}
    try:
        for packet in container.demux([stream, *sounds]):
            if packet.size == 0:  # the flush packet at the end
                continue
            if packet.stream.index != stream.index:
                if packet.stream.index not in starts and packet.pts is not None:
                    starts[packet.stream.index] = float(packet.pts * packet.time_base)
                continue
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None:
                raise InputError(
                    f"{path}: video packets carry no timestamps; remux it first (ffmpeg -i IN -c copy OUT.mp4)"
                )
            if len(pts) >= settings.max_frames:
                raise InputError(
                    f"{path} has more than {settings.max_frames} frames, over the limit (RESTYLE_MAX_FRAMES)"
                )
            pts.append(t)
            durations[t] = packet.duration or 0
            if packet.is_keyframe:
                keys.append(t)
    except av.FFmpegError as exc:
        raise InputError(f"{path} is damaged and cannot be read to the end: {_reason(exc)}") from None
    pts.sort()
    if len(set(pts)) != len(pts):
        raise InputError(
            f"{path}: several video frames share one timestamp; remux it first (ffmpeg -i IN -c copy OUT.mp4)"
        )
    if not pts:
        return [], [], 0, starts
    last = durations.get(pts[-1]) or (pts[-1] - pts[-2] if len(pts) > 1 else _one_frame(stream))
    keys.sort()
    if not keys or keys[0] != pts[0]:
        keys.insert(0, pts[0])  # decoding starts at the first packet whatever its flag says
    return pts, keys, pts[-1] + last, starts


def _one_frame(stream) -> int:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return max(1, round(1 / (rate * stream.time_base)))


def _rotation(container: av.container.InputContainer, stream) -> int:
    """The display rotation in degrees, read from the first decoded frame's side data."""
    try:
        container.seek(0, stream=stream)
        for frame in container.decode(stream):
            return int(round(frame.rotation or 0)) % 360
    except av.FFmpegError:
        return 0
    return 0


def first_packet_times(container: av.container.InputContainer, streams: list) -> dict[int, float]:
    """When each stream's first packet is presented, in seconds (AAC priming makes it negative).

    ``container`` must be freshly opened: a seek to the start can land after the first packets.
    """
    starts: dict[int, float] = {}
    if not streams:
        return starts
    try:
        for n, packet in enumerate(container.demux(streams)):
            if packet.pts is not None and packet.stream.index not in starts:
                starts[packet.stream.index] = float(packet.pts * packet.time_base)
            if len(starts) == len(streams) or n > 2000:
                break
    except av.FFmpegError:
        pass
    return starts


def codec_name(stream: av.stream.Stream) -> str:
    """The codec's own name (``mp3``), not the decoder's that FFmpeg picked (``mp3float``)."""
    ctx = stream.codec_context
    if ctx is None:
        return "unknown"
    return ctx.codec.canonical_name if ctx.codec is not None else ctx.name


def _reason(exc: av.FFmpegError) -> str:
    return getattr(exc, "strerror", None) or str(exc)
