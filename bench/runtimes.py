"""onnxruntime against OpenVINO (float32 and bfloat16) on the same frames: speed and agreement.

    pip install -e ".[openvino]" && python bench/runtimes.py

Model only (frames in memory), two processes of one thread each, 640x360 frames of
FFmpeg's test pattern; agreement is the PSNR of each runtime's frames against
onnxruntime float32's, for several styles.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import decode_all, machine, model_only_fps, psnr

from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of
from restyle.media.sample import make_clip

RUNTIMES = {
    "onnxruntime f32": {"backend": "onnxruntime"},
    "openvino f32": {"backend": "openvino"},
    "openvino bf16": {"backend": "openvino", "precision": "bf16"},
}


def main() -> None:
    print(f"# runtimes, {date.today()}, {machine()}")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        frames = decode_all(make_clip(Path(tmp) / "c.mp4", width=640, height=360, seconds=4, audio=False))
    for name, options in RUNTIMES.items():
        print(
            f"{name}: {model_only_fps(JobSpec(style=str('7')), frames[:60], 2, 1, **options):.2f} fps "
            "(2 processes x 1 thread)"
        )
    for style in ("0", "7", "12", "19", "25"):
        reference = load(JobSpec(style=str(style)), Runtime("cpu", 2, backend="onnxruntime"))
        row = []
        for name, options in list(RUNTIMES.items())[1:]:
            other = load(JobSpec(style=str(style)), Runtime("cpu", 2, **options))
            score = np.mean(
                [
                    psnr(
                        reference.predict(f[None], params_of(JobSpec(style=str(style)))),
                        other.predict(f[None], params_of(JobSpec(style=str(style)))),
                    )
                    for f in frames[::20]
                ]
            )
            row.append(f"{name} {score:.1f} dB")
        print(f"style {style:>2}: " + ", ".join(row))


if __name__ == "__main__":
    main()
