"""Peak PSS of a worker's process tree, per runtime and precision, deflicker off and on, at four frame sizes.

    nice -n 19 python bench/worker_memory.py                       # every path this machine can take
    nice -n 19 python bench/worker_memory.py --sizes 640x360 1280x720 --paths "openvino f32"
    ONEDNN_MAX_CPU_ISA=AVX2 nice -n 19 python bench/worker_memory.py   # an AVX2-only CPU, imitated

Each figure is one ``restyle run`` of a 3-frame clip with one single-threaded worker (a fresh
process tree), the job that costs most per pixel (a blend of two styles, strength 0.5, so the
original is mixed back in), its tree's proportional set size (shared pages split among their
users, the measure tests/service/test_worker_memory.py holds workers to) sampled every 20 ms
from /proc. Beside it, the budget restyle/engines/sizing.py states for that job (``worker_bytes``),
and a line through the figures: the base and the bytes per pixel the budget's table should hold.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from restyle.engines.sizing import worker_bytes
from restyle.handlers import get_handler
from restyle.machine import ISA_ENV, here
from restyle.media.sample import make_clip
from restyle.runtime import Runtime

SIZES = [(640, 360), (1280, 720), (1920, 1080), (4096, 2304)]
# (model, backend, precision); bf16 where the CPU has it natively
PATHS = {
    "styles onnxruntime f32": ("styles", "onnxruntime", "f32"),
    "styles openvino f32": ("styles", "openvino", "f32"),
    "styles openvino int8": ("styles", "openvino", "int8"),
    "styles openvino bf16": ("styles", "openvino", "bf16"),
    "style-image onnxruntime f32": ("style-image", "onnxruntime", "f32"),
    "style-image openvino f32": ("style-image", "openvino", "f32"),
    "style-image openvino int8": ("style-image", "openvino", "int8"),
    "style-image openvino bf16": ("style-image", "openvino", "bf16"),
}


def tree_pss(pid: int) -> int:
    """Bytes of PSS of ``pid`` and its descendants."""
    members, total = [pid], 0
    for member in members:
        try:
            children = Path(f"/proc/{member}/task/{member}/children").read_text().split()
            members += [int(c) for c in children]
            with open(f"/proc/{member}/smaps_rollup") as rollup:
                total += sum(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Pss:"))
        except OSError:
            pass
    return total


def peak_pss(command: list[str]) -> tuple[int, float]:
    """Run ``command``; (its tree's peak PSS, seconds). A failed run raises with its last lines."""
    started, peak = time.monotonic(), 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        while process.poll() is None:
            peak = max(peak, tree_pss(process.pid))
            time.sleep(0.02)
        out = process.stdout.read().decode(errors="replace") if process.stdout else ""
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out[-2000:]}")
    return peak, time.monotonic() - started


def command(clip: Path, out: Path, picture: Path, model: str, backend: str, precision: str, deflicker: bool):
    job = ["--style", "3:0.5,12:0.5"] if model == "styles" else ["--style-image", str(picture)]
    return [
        sys.executable,
        "-m",
        "restyle.cli",
        "run",
        str(clip),
        "-o",
        str(out),
        *job,
        "--strength",
        "0.5",
        "--workers",
        "1",
        "--threads",
        "1",
        "--backend",
        backend,
        "--precision",
        precision,
        "--chunk-seconds",
        "4",
        "-q",
        *(["--deflicker", "1"] if deflicker else []),
    ]


def budget(model: str, backend: str, precision: str, pixels: int, deflicker: bool) -> int:
    runtime = Runtime("cpu", 1, 1, backend, precision)
    return worker_bytes(runtime, pixels, get_handler(model).network, deflicker=deflicker)


def takes(backend: str, precision: str) -> str | None:
    """Why this machine cannot take a path, or None."""
    facts = here()
    if backend == "openvino" and not facts.has_openvino:
        return "OpenVINO is not installed"
    if precision == "bf16" and not facts.bf16:
        return "no native bf16 on this CPU (OpenVINO would run f32 and call it bf16)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=[f"{w}x{h}" for w, h in SIZES])
    parser.add_argument("--paths", nargs="*", default=list(PATHS))
    parser.add_argument("--deflicker", nargs="*", default=["off", "on"], choices=["off", "on"])
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    print(f"# worker memory (peak PSS of the tree), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")
    flags = sorted(f for f in here().flags if f.startswith(("avx", "amx")))
    print(f"# CPU flags seen by restyle: {' '.join(flags)}; {ISA_ENV}={os.environ.get(ISA_ENV, '(unset)')}")
    print(f"# command: python bench/worker_memory.py {' '.join(sys.argv[1:])}")
    print("| path | deflicker | " + " | ".join(f"{w}x{h} GiB (budget)" for w, h in sizes) + " | base MiB | B/px |")
    print("| --- | --- | " + " | ".join("---" for _ in sizes) + " | --- | --- |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        picture = folder / "p.png"
        from PIL import Image

        Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(picture)
        clips = {
            (w, h): make_clip(folder / f"{w}x{h}.mp4", width=w, height=h, rate=25, seconds=0.12, audio=False)
            for w, h in sizes
        }
        for name in args.paths:
            model, backend, precision = PATHS[name]
            if why := takes(backend, precision):
                print(f"| {name} | - | not here: {why} |", flush=True)
                continue
            for deflicker in (d == "on" for d in args.deflicker):
                peaks, cells = [], []
                for w, h in sizes:
                    out = folder / f"out-{w}x{h}.mp4"
                    run = command(clips[(w, h)], out, picture, model, backend, precision, deflicker)
                    peak, _ = peak_pss(run)
                    peaks.append(peak)
                    stated = budget(model, backend, precision, w * h, deflicker)
                    mark = "" if peak <= stated else " **over**"
                    cells.append(f"{peak / 2**30:.2f} ({stated / 2**30:.2f}){mark}")
                if len(sizes) > 1:
                    pixels = np.array([w * h for w, h in sizes], float)
                    slope, base = np.polyfit(pixels, np.array(peaks, float), 1)
                    fit = f" | {base / 2**20:.0f} | {slope:.0f} |"
                else:
                    fit = " | - | - |"
                print(f"| {name} | {'on' if deflicker else 'off'} | " + " | ".join(cells) + fit, flush=True)


if __name__ == "__main__":
    main()
