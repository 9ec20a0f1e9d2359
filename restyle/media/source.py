"""Open a user's media: the one door every input goes through.

A user's file is hostile until checked. Some of FFmpeg's demuxers follow references:
an HLS or DASH playlist, a concat script or an image-sequence pattern makes FFmpeg
open other files and URLs, whatever the user could name (``/etc/...``, an internal
server). So an input is opened only

* with a demuxer from ``ALLOWED_FORMATS`` (containers that hold their media inside
  them), chosen from the file's *content*, never its name (FFmpeg's probe would count
  the extension too, and the image2 demuxer reads a name as a pattern);
* through the protocols in ``LOCAL_PROTOCOLS`` (``file`` only), or for a presigned link
  that the service itself made, ``REMOTE_PROTOCOLS``.

FFmpeg enforces both lists itself (``format_whitelist``, ``protocol_whitelist``), so a
demuxer that tried to open another file or URL would be refused there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import av

from restyle.errors import InputError

# Containers that hold their media inside them (no references to other files), and
# single pictures (so that a photo given as a video gets a reason, not a puzzle).
VIDEO_FORMATS = (
    "mov",
    "matroska",
    "mpegts",
    "avi",
    "flv",
    "mpeg",
    "asf",
    "ogg",
    "ivf",
    "mxf",
    "nut",
    "gif",
    "yuv4mpegpipe",
    "dv",
    "h264",
    "hevc",
    "m4v",
    "mjpeg",
    "rm",
    "wtv",
    "obu",
)
AUDIO_FORMATS = ("mp3", "wav", "aac", "flac", "ac3", "eac3", "w64", "aiff", "caf")  # refused later: no video
PICTURE_FORMATS = (
    "jpeg_pipe",
    "png_pipe",
    "webp_pipe",
    "bmp_pipe",
    "tiff_pipe",
    "gif_pipe",
    "qoi_pipe",
    "jpegxl_pipe",
    "dpx_pipe",
    "exr_pipe",
    "pam_pipe",
    "pbm_pipe",
    "pgm_pipe",
    "ppm_pipe",
    "psd_pipe",
    "svg_pipe",
)
ALLOWED_FORMATS = VIDEO_FORMATS + AUDIO_FORMATS + PICTURE_FORMATS
LOCAL_PROTOCOLS = "file"
REMOTE_PROTOCOLS = "http,https,tcp,tls"  # only for links the service presigned (decode_chunk: probe takes files only)

# What a reference-following input starts with, for a reason a person understands.
_REFERENCES = (
    (b"#EXTM3U", "an HLS playlist (.m3u8)"),
    (b"ffconcat", "an FFmpeg concat script"),
    (b"<?xml", "an XML document (a DASH manifest or playlist?)"),
    (b"<MPD", "a DASH manifest (.mpd)"),
    (b"#EXTINF", "a playlist"),
    (b"[playlist]", "a playlist (.pls)"),
)


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def open_input(source: str | Path | BinaryIO, **options: object) -> av.container.InputContainer:
    """Open ``source`` (a local path, an http(s) link the service presigned, or a seekable binary
    file object, e.g. bytes shipped to a worker on another machine) for reading.

    Raise InputError when it is not a format restyle reads; ``av.FFmpegError`` for the
    rest (the caller words it, as only it knows what it was doing).
    """
    if hasattr(source, "read"):
        fmt = detect_format_of(source, "the input")  # type: ignore[arg-type]
        source.seek(0)  # type: ignore[union-attr]
        return av.open(
            source,
            format=fmt,
            metadata_errors="replace",
            options={"format_whitelist": ",".join(ALLOWED_FORMATS), "protocol_whitelist": LOCAL_PROTOCOLS},
            **options,
        )
    remote = is_url(source)
    name = str(source)
    fmt = None if remote else detect_format(Path(name))
    return av.open(
        name,
        format=fmt,
        metadata_errors="replace",  # tags in broken UTF-8 must not stop us
        options={
            "format_whitelist": ",".join(ALLOWED_FORMATS),
            "protocol_whitelist": REMOTE_PROTOCOLS if remote else LOCAL_PROTOCOLS,
        },
        **options,
    )


def detect_format(path: Path) -> str:
    """The demuxer for ``path``, from its first bytes alone (no name, no protocol: a file object)."""
    try:
        with path.open("rb") as file:
            return detect_format_of(file, str(path))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def detect_format_of(file: BinaryIO, path: str) -> str:
    """The demuxer for the bytes of ``file`` (read from its start); ``path`` names it in messages."""
    try:
        head = file.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
        for signature, what in _REFERENCES:
            if head.startswith(signature):
                raise InputError(
                    f"{path} is {what}: it refers to other files, and restyle reads only self-contained videos"
                )
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return "png_pipe"  # FFmpeg's probe says apng (a video) for any PNG: a picture is a picture
        file.seek(0)
        with av.open(file, metadata_errors="replace", options={"format_whitelist": ",".join(ALLOWED_FORMATS)}) as probe:
            return probe.format.name.split(",")[0]
    except av.FFmpegError as exc:
        if getattr(exc, "errno", None) == 22:  # EINVAL: the probe's best guess is not an allowed format
            raise InputError(
                f"cannot read {path} as a video: it is not in a container restyle reads "
                "(MP4/MOV, Matroska/WebM, MPEG-TS, AVI, ...)"
            ) from None
        raise InputError(f"cannot read {path} as a video: {getattr(exc, 'strerror', None) or exc}") from None
