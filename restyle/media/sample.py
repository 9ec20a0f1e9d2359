"""Make sample clips with FFmpeg's own test sources (lavfi, through PyAV): no download, no CLI."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from restyle.errors import OutputError


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
    path = Path(path)
    rate = Fraction(rate)
    frames = round(seconds * rate)
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

        source = f"testsrc2=size={width}x{height}:rate={rate}:duration={float(frames / rate):.6f}"
        with av.open(source, format="lavfi") as lavfi:
            for n, frame in enumerate(lavfi.decode(video=0)):
                if variable_rate and n % 7 in (3, 5) and 0 < n < frames - 1:
                    continue  # uneven gaps: 1, 2 and 3 frame periods
                frame = frame.reformat(format=pix_fmt)
                frame.pts, frame.time_base = n, 1 / rate
                frame.pict_type = av.video.frame.PictureType.NONE  # lavfi marks every frame I; let x264 choose
                out.mux(video.encode(frame))
        out.mux(video.encode(None))

        if sound is not None:
            with av.open(f"sine=frequency=440:sample_rate=48000:duration={float(frames / rate):.6f}", format="lavfi") as tone:
                resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
                for frame in tone.decode(audio=0):
                    for converted in resampler.resample(frame):
                        out.mux(sound.encode(converted))
            out.mux(sound.encode(None))
    return path
