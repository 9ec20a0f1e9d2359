"""Model-only throughput of the worker layouts a 2-core machine can use: processes x threads, interleaved.

    ONEDNN_MAX_CPU_ISA=AVX2 python bench/layouts.py --rounds 3     # as an AVX2-only CPU runs it

Frames in memory (a 640x360 clip), the runtime `restyle run` picks by default here (or
``--precision``), each layout once per round, median of the rounds. What restyle does by
default is one single-threaded process per core (restyle/engines/sizing.py, default_layout).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import decode_all, machine, model_only

from restyle.config import Settings
from restyle.engines.sizing import choose_layout
from restyle.handlers import JobSpec
from restyle.machine import ISA_ENV, isa_cap
from restyle.media.sample import make_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", help="auto (what restyle run picks), f32, int8, bf16")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    layouts = sorted({(cores, 1), (1, cores)} | ({(2, cores // 2)} if cores >= 4 else set()))
    spec = JobSpec(style="7")
    runtime, _ = choose_layout(Settings(precision=args.precision), 640 * 360)
    choice = runtime.choose("multistyle26")
    print(f"# layouts, {machine()}, {ISA_ENV}={isa_cap() or 'unset'}, load {os.getloadavg()[0]:.2f}")
    print(f"# runtime: {choice.backend} {choice.precision} ({choice.reason})")
    with tempfile.TemporaryDirectory() as tmp:
        frames = decode_all(make_clip(Path(tmp) / "clip.mp4", width=640, height=360, rate=25, seconds=2, audio=False))
    fps: dict[tuple[int, int], list[float]] = {layout: [] for layout in layouts}
    for r in range(args.rounds):
        for processes, threads in layouts:
            fps[(processes, threads)].append(
                model_only(spec, frames, processes, threads, backend=choice.backend, precision=choice.precision)[0]
            )
        print(f"  round {r + 1}: " + ", ".join(f"{p}x{t} {v[-1]:.2f} fps" for (p, t), v in fps.items()), flush=True)
    print(
        "median: "
        + ", ".join(f"{p} processes x {t} threads {statistics.median(v):.2f} fps" for (p, t), v in fps.items())
    )
    print(f"# load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
