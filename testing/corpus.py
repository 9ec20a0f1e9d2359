"""Hostile and unusual inputs, made here: every case a service meets sooner or later.

Each case is a file and what restyle must make of it: ``ok`` (a correct output: every
frame, the sound kept) or ``fails`` with words the reason must hold. Made with PyAV and
Pillow from FFmpeg's test sources and a packaged photo; small and quick to make.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from restyle.media.sample import make_clip, packaged_photo

CORPUS_MAX_FRAMES = 2000
# Where reference-following inputs point: nothing may ever connect there (tests/media/test_source.py listens).
REMOTE_ENTRY = "http://127.0.0.1:9/secret.ts"  # the limit the corpus's service runs with: `many_frames` is over it


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # the name it is uploaded under
    make: Callable[[Path], None]
    fails: str | None = None  # a word the reason must hold; None: it must succeed
    frames: int | None = None  # for successes: the output's frame count (-1: fewer than the input's, with a note)


def _small(path: Path, **options) -> Path:
    return make_clip(path, **({"width": 96, "height": 54, "rate": 25, "seconds": 1.0} | options))


def _faststart(path: Path) -> None:
    """A clip whose index (moov) comes first, so a truncated copy still promises every frame."""
    source = _small(path.with_suffix(".src.mp4"), seconds=2.0)
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        _remux(out, [(src, list(src.streams))])
    source.unlink()


def _remux(out: av.container.OutputContainer, sources: list[tuple[av.container.InputContainer, list]]) -> None:
    """Copy the given streams of each source into ``out``, packet for packet."""
    # Every stream is added before the first packet: the header is written with the first mux.
    mappings = [{s.index: out.add_stream_from_template(s) for s in streams} for _, streams in sources]
    for (container, streams), mapping in zip(sources, mappings, strict=False):
        for packet in container.demux(*streams):
            if packet.dts is not None:
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)


def _truncated(share: float) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        _faststart(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * share)])

    return make


def _corrupted(path: Path) -> None:
    """Bytes overwritten with noise in the middle of the media data: damaged packets, intact index."""
    _faststart(path)
    data = bytearray(path.read_bytes())
    start = data.find(b"mdat")
    rng = random.Random(7)
    for offset in range(start + (len(data) - start) // 3, len(data) - 2000, 3000):
        data[offset : offset + 200] = rng.randbytes(200)
    path.write_bytes(bytes(data))


def _ten_hours(path: Path) -> None:
    """A 1 s clip whose video timing table (stts) spreads its 25 frames over 10 hours."""
    _small(path)
    data = bytearray(path.read_bytes())
    at = data.find(b"stts")  # the first track's: the video (make_clip adds it first)
    entries = struct.unpack_from(">I", data, at + 8)[0]
    for n in range(entries):
        count, delta = struct.unpack_from(">II", data, at + 12 + 8 * n)
        struct.pack_into(">I", data, at + 16 + 8 * n, delta * 36000)
    path.write_bytes(bytes(data))


def _huge_header(side: int) -> Callable[[Path], None]:
    """A 16x16 raw-video AVI whose headers (avih, strf) are rewritten to claim ``side`` x ``side``."""

    def make(path: Path) -> None:
        with av.open(str(path), "w", format="avi") as out:
            stream = out.add_stream("rawvideo", rate=25)
            stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr24"
            for n in range(5):
                frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), n * 40, np.uint8), format="bgr24")
                frame.pts, frame.time_base = n, Fraction(1, 25)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        data = bytearray(path.read_bytes())
        struct.pack_into("<II", data, data.find(b"avih") + 8 + 32, side, side)  # dwWidth, dwHeight
        struct.pack_into("<ii", data, data.find(b"strf") + 8 + 4, side, side)  # biWidth, biHeight
        path.write_bytes(bytes(data))

    return make


def _many_frames(path: Path) -> None:
    """Tiny frames, more of them than the limit: 16x16 at 250 fps."""
    make_clip(path, width=16, height=16, rate=250, seconds=(CORPUS_MAX_FRAMES + 500) / 250, audio=False)


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000, layout="stereo")
        with av.open("sine=frequency=440:sample_rate=48000:duration=1", format="lavfi") as tone:
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
            for frame in tone.decode(audio=0):
                for converted in resampler.resample(frame):
                    out.mux(stream.encode(converted))
        out.mux(stream.encode(None))


def _no_streams(path: Path) -> None:
    """A container FFmpeg opens that holds no stream at all (an ffmetadata file)."""
    path.write_text(";FFMETADATA1\ntitle=nothing in here\n")


def _jpeg(path: Path) -> None:
    from PIL import Image

    Image.open(packaged_photo()).convert("RGB").resize((160, 188)).save(path, format="JPEG")


def _alpha(path: Path) -> None:
    """PNG frames with an alpha channel in a QuickTime file (as screen recorders and editors make)."""
    with av.open(str(path), "w", format="mov") as out:
        stream = out.add_stream("png", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "rgba"
        for n in range(25):
            rgba = np.zeros((36, 64, 4), np.uint8)
            rgba[..., 0], rgba[..., 1], rgba[..., 3] = n * 10, 128, np.linspace(0, 255, 64, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
            frame.pts, frame.time_base = n, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _tracks(path: Path) -> None:
    """H.264, two audio tracks and a subtitle track, in Matroska."""
    video = _small(path.with_suffix(".v.mp4"), seconds=2.0)
    subs = path.with_suffix(".srt")
    subs.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n2\n00:00:01,000 --> 00:00:02,000\nworld\n")
    with (
        av.open(str(video)) as first,
        av.open(str(video)) as second,
        av.open(str(subs)) as text,
        av.open(str(path), "w", format="matroska") as out,
    ):
        _remux(
            out,
            [
                (first, [first.streams.video[0], first.streams.audio[0]]),
                (second, [second.streams.audio[0]]),
                (text, [text.streams[0]]),
            ],
        )
    video.unlink()
    subs.unlink()


def _dot(path: Path) -> None:
    """A 1x1 video (FFmpeg's test pattern has no picture that small): one pixel changing colour, with sound."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1, 1, "yuv444p"
        for n in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((1, 1, 3), n * 10, np.uint8), format="rgb24").reformat(
                format="yuv444p"
            )
            frame.pts, frame.time_base = n, Fraction(1, 25)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _playlist(path: Path) -> None:
    """An HLS playlist whose entries are a video beside it, a file outside and a URL: followed, each would be read."""
    _small(path.with_name("segment.mp4"))
    path.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nsegment.mp4\n#EXTINF:1.0,\nfile:///etc/passwd\n"
        f"#EXTINF:1.0,\n{REMOTE_ENTRY}\n#EXT-X-ENDLIST\n"
    )


def _ffconcat(path: Path) -> None:
    _small(path.with_name("part.mp4"))
    path.write_text(f"ffconcat version 1.0\nfile part.mp4\nfile /etc/passwd\nfile {REMOTE_ENTRY}\n")


def _dash(path: Path) -> None:
    path.write_text(
        '<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
        'mediaPresentationDuration="PT1S"><Period><AdaptationSet mimeType="video/mp4"><Representation '
        f'id="1" bandwidth="1000"><BaseURL>{REMOTE_ENTRY}</BaseURL></Representation></AdaptationSet></Period></MPD>\n'
    )


def _image_sequence(path: Path) -> None:
    """A PNG named like an image2 pattern (frame%03d.png), with frames 000-009 beside it that a pattern would read."""
    from PIL import Image

    for n in range(10):
        Image.new("RGB", (32, 32), (n * 20, 0, 0)).save(path.with_name(f"frame{n:03d}.png"))
    Image.new("RGB", (32, 32)).save(path, format="PNG")


def _raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


CASES: list[Case] = [
    Case("zero bytes", "zero.mp4", _raw(b""), fails="empty"),
    Case("random bytes named .mp4", "random.mp4", _raw(random.Random(1).randbytes(100_000)), fails="cannot read"),
    Case("a text file", "notes.mp4", _raw(b"this is not a video, it is a note\n" * 100), fails="cannot read"),
    Case("a JPEG named .mp4", "photo.mp4", _jpeg, fails="single picture"),
    Case("truncated at 10%", "cut10.mp4", _truncated(0.10), fails="truncated"),
    Case("truncated at 50%", "cut50.mp4", _truncated(0.50), fails="truncated"),
    Case("truncated at 90%", "cut90.mp4", _truncated(0.90), fails="truncated"),
    Case("corrupted packets mid-stream", "corrupt.mp4", _corrupted, frames=-1),  # fewer than 50, said in a note
    Case("audio only", "tone.mp4", _audio_only, fails="no video stream"),
    Case("no streams (an FFmpeg metadata file)", "empty-container.mp4", _no_streams, fails="not in a container"),
    # Inputs that refer to other files and URLs: refused by what they are, before anything they name is read.
    Case("HLS playlist", "playlist.m3u8", _playlist, fails="HLS playlist"),
    Case("HLS playlist named .mp4", "playlist.mp4", _playlist, fails="HLS playlist"),
    Case("ffconcat script", "list.ffconcat", _ffconcat, fails="concat script"),
    Case("DASH manifest", "manifest.mpd", _dash, fails="DASH manifest"),
    Case("image-sequence pattern", "frame%03d.png", _image_sequence, fails="single picture"),
    # FFmpeg itself refuses pictures this big ((w+128)*(h+128) must stay under INT_MAX/8): no size is read.
    Case("header claims 16384x16384", "huge.avi", _huge_header(16384), fails="no usable picture size"),
    Case("header claims 8192x8192", "big.avi", _huge_header(8192), fails="over the limit"),
    Case("header claims 10 hours", "long.mp4", _ten_hours, fails="over the limit"),
    Case("enormous frame count, tiny size", "many.mp4", _many_frames, fails="over the limit"),
    Case("variable frame rate", "vfr.mp4", lambda p: _small(p, rate=30, seconds=1.5, variable_rate=True), frames=33),
    Case("rotation", "rotated.mp4", lambda p: _small(p, rotation=90), frames=25),
    Case("10-bit", "10bit.mp4", lambda p: _small(p, pix_fmt="yuv420p10le"), frames=25),
    Case("yuv444", "444.mp4", lambda p: _small(p, pix_fmt="yuv444p"), frames=25),
    Case("alpha channel", "alpha.mov", _alpha, frames=25),
    Case("two audio tracks and a subtitle track", "tracks.mkv", _tracks, frames=50),
    Case("one frame", "one.mp4", lambda p: _small(p, seconds=0.04), frames=1),
    Case("1x1", "dot.mp4", _dot, frames=25),
    Case("odd size 97x55", "odd.mp4", lambda p: _small(p, width=97, height=55, pix_fmt="yuv444p"), frames=25),
]


def make_corpus(folder: Path) -> dict[str, Path]:
    """Every case's file in ``folder``, by case name."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for case in CASES:
        path = folder / case.file
        case.make(path)
        made[case.name] = path
    return made


# A batch as people have them: nested folders of pictures and videos, and the members that break batch tools.
BATCH_GOOD = {  # input -> what it is
    "a/one.jpg": "image",
    "b/one.jpg": "image",  # the same name in two folders
    "b/deep/çafé ünï.png": "image",  # a non-ASCII name, three folders down
    "b/grey.webp": "image",
    "b/clip.mp4": "video",  # 1 s, 25 fps, with sound
    "c/photo.mp4": "image",  # a JPEG named .mp4: the content decides
}
BATCH_BAD = {  # input -> a word its reason must hold
    "broken.jpg": "neither a picture",  # text named .jpg
    "empty.png": "empty",
    "half.jpg": "truncated",  # half a JPEG
    "random.mp4": "neither a picture",  # random bytes named .mp4
    "huge.png": "Mpixel",  # a PNG over the pixel limit (40 Mpixel), 40 KB on disk
}


def make_batch(root: Path) -> Path:
    """The batch above under ``root`` (plus a hidden file and a link, which a batch does not read)."""
    import os

    from PIL import Image

    photo = Image.open(packaged_photo()).convert("RGB")
    for name in ("a/one.jpg", "b/one.jpg", "b/deep/çafé ünï.png", "c/photo.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        photo.resize((200, 150)).save(root / name, format="PNG" if name.endswith(".png") else "JPEG")
    Image.fromarray(np.full((90, 160, 3), 128, np.uint8)).save(root / "b/grey.webp")
    _small(root / "b/clip.mp4")
    (root / "broken.jpg").write_text("this is a text file, not a picture")
    (root / "empty.png").write_bytes(b"")
    whole = (root / "a/one.jpg").read_bytes()
    (root / "half.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "random.mp4").write_bytes(random.Random(7).randbytes(5000))
    Image.new("L", (7000, 6000)).save(root / "huge.png")
    (root / ".hidden.jpg").write_bytes(whole)
    os.symlink(root / "a/one.jpg", root / "link.jpg")
    return root
