"""Where the time outside the model goes, per frame, and what each lever saves (one thread each).

    python bench/levers.py            # 640x360 and 1280x720
    python bench/levers.py --quick    # 640x360 only, fewer frames

Figures are CPU milliseconds per frame (process time: what the step costs the cores, which a
shared machine's load does not inflate as it does wall time), each variant once per repeat,
interleaved, median printed. Variants:
  decode: PyAV's frame.to_ndarray("rgb24") (swscale, what restyle does) against OpenCV's I420 conversion
  encode: rgb24 frames handed to x264 (swscale converts; restyle) against an OpenCV yuv420p conversion, per preset
  model: OpenVINO bf16 with numpy float conversion around it, against uint8 in and out of its graph
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of

SEVEN = JobSpec(style="7")
from restyle.media.sample import make_motion_clip, packaged_photo

# The candidates: OpenCV's SIMD I420 conversions instead of swscale's. Measured here and not adopted
# (bench/RESULTS.md): they cost the same CPU as swscale's and would change the chroma filtering.
_BT601 = (2, 5, 6)  # AVCOL_SPC_UNSPECIFIED, BT470BG, SMPTE170M
_CHROMA = np.array([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32) * np.float32(224 / 255)


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """yuv420p BT.601 limited range through OpenCV; anything else through swscale."""
    if (
        frame.format.name == "yuv420p"
        and frame.width % 2 == 0
        and frame.height % 2 == 0
        and frame.colorspace in _BT601
        and frame.color_range != 2
    ):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's luma; chroma from each 2x2 block's mean colour (OpenCV's own point-samples)."""
    h, w = rgb.shape[:2]
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    half = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    uv = np.clip(half.reshape(-1, 3).astype(np.float32) @ _CHROMA.T + np.float32(128.5), 0, 255).astype(np.uint8)
    chroma = yuv[h:].reshape(2, -1)
    chroma[0], chroma[1] = uv[:, 0], uv[:, 1]
    return yuv


def timed(fn, items) -> float:
    started = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - started) / len(items) * 1000


def encode(frames: list[np.ndarray], preset: str, ours: bool, path: Path) -> float:
    h, w = frames[0].shape[:2]
    started = time.process_time()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"threads": "1", "crf": "18", "preset": preset, "x264-params": "asm=avx2"}
        stream.codec_context.thread_count = 1
        for i, rgb in enumerate(frames):
            frame = (
                av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
                if ours
                else av.VideoFrame.from_ndarray(rgb, format="rgb24")
            )
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return (time.process_time() - started) / len(frames) * 1000


class NumpyAround:
    """The old path: float32 NCHW made and read back in numpy around an OpenVINO bf16 graph."""

    def __init__(self):
        from restyle.handlers.styles import _model_file, style_weights
        from restyle.runtime.sessions import _OpenVinoSession

        self.session, self.weights = _OpenVinoSession(_model_file("multistyle26"), 1, "bf16"), style_weights("7")

    def predict(self, frames: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frames.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(1 / 255))
        out = self.session.run({"image": x, "style_weights": self.weights})[0]
        return (np.clip(out.transpose(0, 2, 3, 1) * 255.0, 0, 255) + 0.5).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# levers outside the model, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {machine()}")
    print(
        f"# command: python bench/levers.py {' '.join(sys.argv[1:])}; "
        f"CPU ms per frame, one thread, median of {args.repeats}"
    )
    sizes = [(640, 360)] + ([] if args.quick else [(1280, 720)])
    in_graph = load(SEVEN, Runtime("cpu", 1, backend="openvino", precision="bf16"))
    numpy_around = NumpyAround()
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            clip = make_motion_clip(
                Path(tmp) / f"m{h}.mp4",
                packaged_photo(),
                motion="pan",
                width=w,
                height=h,
                rate=25,
                seconds=1.0 if args.quick else 2.0,
            )
            with av.open(str(clip)) as container:
                decoded = list(container.decode(video=0))
            styled = [in_graph.predict(to_rgb(f)[None], params_of(SEVEN))[0] for f in decoded[:10]]
            runs: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for name, fn in {
                    "decode to RGB: swscale (to_ndarray rgb24; restyle)": lambda: timed(
                        lambda f: f.to_ndarray(format="rgb24"), decoded
                    ),
                    "decode to RGB: OpenCV I420 (candidate)": lambda: timed(to_rgb, decoded),
                    "model bf16, numpy float conversion around it": lambda: timed(
                        numpy_around.predict, [s[None] for s in styled[:5]]
                    ),
                    "model bf16, uint8 in and out of the graph (restyle)": lambda: timed(
                        in_graph.predict, [s[None] for s in styled[:5]]
                    ),
                    **{
                        f"encode x264 {p}: rgb24 to swscale (restyle)": (
                            lambda p=p: encode(styled, p, False, Path(tmp) / "e.mp4")
                        )
                        for p in ("veryfast", "superfast")
                    },
                    **{
                        f"encode x264 {p}: OpenCV yuv420p (candidate)": (
                            lambda p=p: encode(styled, p, True, Path(tmp) / "e.mp4")
                        )
                        for p in ("veryfast", "superfast")
                    },
                }.items():
                    runs.setdefault(name, []).append(fn())
            print(f"\n{w}x{h}\n| step | CPU ms/frame |\n| --- | --- |")
            for name, values in runs.items():
                print(f"| {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
