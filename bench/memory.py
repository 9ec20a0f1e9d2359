"""What one worker costs in memory: its base, and the bytes each pixel of a frame adds, per runtime.

    python bench/memory.py            # 640x360, 1280x720, 1920x1080 on each runtime
    python bench/memory.py --quick    # 640x360 and 1280x720 only

Each figure is the peak RSS of a fresh process that loads the model and restyles two
frames of that size (the way a worker does); a straight line through them gives the
base and the bytes per pixel that restyle/engines/sizing.py uses to size workers and to refuse
frames a worker's memory cannot hold.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

RUNTIMES = {
    "onnxruntime f32": {"backend": "onnxruntime", "precision": "f32"},
    "openvino f32": {"backend": "openvino", "precision": "f32"},
    "openvino bf16": {"backend": "openvino", "precision": "bf16"},
}
MODELS = {"styles": "7", "style-image": "picture"}


def _peak(args: tuple[str, str, dict, int, int, Path]) -> int:
    model, style, runtime, width, height, picture = args
    from restyle.handlers import JobSpec, Runtime, load, params_of

    spec = JobSpec(style=str(style)) if model == "styles" else JobSpec(model="style-image", style_image=str(picture))
    loaded = load(spec, Runtime("cpu", 1, **runtime))
    frame = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    for _ in range(2):
        loaded.predict(frame, params_of(spec))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [(640, 360), (1280, 720)] + ([] if args.quick else [(1920, 1080)])
    print(f"# worker memory, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")
    print(f"# command: python bench/memory.py {' '.join(sys.argv[1:])}")
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(tmp) / "p.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(picture)
        context = multiprocessing.get_context("spawn")
        print("| model | runtime | " + " | ".join(f"{w}x{h} MiB" for w, h in sizes) + " | base MiB | bytes/pixel |")
        print("| --- | --- | " + " | ".join("---" for _ in sizes) + " | --- | --- |")
        for model, style in MODELS.items():
            for name, runtime in RUNTIMES.items():
                peaks = []
                for w, h in sizes:
                    with context.Pool(1) as pool:  # a fresh process per figure: peaks never carry over
                        peaks.append(pool.apply(_peak, ((model, style, runtime, w, h, picture),)))
                pixels = np.array([w * h for w, h in sizes], float)
                slope, base = np.polyfit(pixels, np.array(peaks, float), 1)
                print(
                    f"| {model} | {name} | "
                    + " | ".join(f"{p / 2**20:.0f}" for p in peaks)
                    + f" | {base / 2**20:.0f} | {slope:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
