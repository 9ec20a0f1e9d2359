"""Throughput, memory and fidelity of `restyle run` against the model alone and the seed pipeline.

    python bench/throughput.py            # all of it (about 15 minutes on 2 cores)
    python bench/throughput.py --quick    # shorter clips

Prints, per clip size: the model-only limit (frames in memory, best process x thread
layout), restyle end to end (wall clock of the whole command), their ratio, the seed
pipeline re-created (JPEG files, batch-1 inference, re-stitch at 30 fps, audio
re-encoded) and our speed-up over it; then peak RSS on a short and a long clip, and
the fidelity of our frames (PSNR against the model's output on the same decoded frames)
and of the audio (packets identical).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import audio_packets, decode_all, machine, model_only_fps, psnr, run_measured  # noqa: E402

from restyle.media.sample import make_clip  # noqa: E402
from restyle.handlers import ModelSpec, Runtime, load_model  # noqa: E402

SPEC = ModelSpec.styles("7")
RESTYLE = [sys.executable, "-m", "restyle.cli"]


def seed_pipeline(clip: Path, output: Path, work: Path) -> float:
    """The seed's way: ffmpeg to JPEG files, one file at a time through the model, JPEG out, re-stitch at 30 fps."""
    started = time.perf_counter()
    frames_in, frames_out = work / "in", work / "out"
    frames_in.mkdir()
    frames_out.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-q:v", "2", str(frames_in / "%06d.jpg")], check=True)
    model = load_model(SPEC, Runtime("cpu", threads=os.cpu_count() or 1))
    for path in sorted(frames_in.iterdir()):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(model.predict(rgb[None])[0]).save(frames_out / path.name, quality=95)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-framerate", "30", "-i", str(frames_out / "%06d.jpg"), "-i", str(clip),
         "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(output)],
        check=True,
    )
    return time.perf_counter() - started


def best_model_only(frames: list[np.ndarray], label: str = "onnxruntime f32", **runtime: str) -> tuple[float, str]:
    cores = os.cpu_count() or 1
    layouts = {f"{p}x{cores // p}": (p, cores // p) for p in sorted({1, cores})}
    figures = {name: model_only_fps(SPEC, frames, *layout, **runtime) for name, layout in layouts.items()}
    for name, fps in figures.items():
        print(f"  model only, {label}, {name} (processes x threads): {fps:.2f} fps")
    name = max(figures, key=figures.get)
    return figures[name], name


def throughput(work: Path, width: int, height: int, rate: int, seconds: float) -> dict:
    clip = make_clip(work / f"clip_{height}p.mp4", width=width, height=height, rate=rate, seconds=seconds, keyframe_interval=2 * rate)
    frames = decode_all(clip)
    print(f"{width}x{height} {rate} fps, {len(frames)} frames, with audio")
    limit, layout = best_model_only(frames)
    output = work / f"restyled_{height}p.mp4"
    wall, rss = run_measured([*RESTYLE, "run", str(clip), "-o", str(output), "--style", "7", "--json"])
    ours = len(frames) / wall
    print(f"  restyle run end to end: {ours:.2f} fps ({wall:.1f} s wall, whole command, peak RSS {rss / 2**20:.0f} MiB)")
    print(f"  ratio to the model-only limit: {ours / limit:.3f}")
    seed_dir = work / f"seed_{height}p"
    seed_dir.mkdir()
    seed_wall = seed_pipeline(clip, seed_dir / "seed.mp4", seed_dir)
    seed = len(frames) / seed_wall
    print(f"  seed pipeline: {seed:.2f} fps ({seed_wall:.1f} s); restyle is {ours / seed:.2f}x faster")

    model = load_model(SPEC, Runtime("cpu", threads=os.cpu_count() or 1, backend="onnxruntime"))
    restyled = decode_all(output)
    step = max(1, len(frames) // 20)
    fidelity = float(np.mean([psnr(model.predict(f[None])[0], o) for f, o in zip(frames[::step], restyled[::step])]))
    seed_frames = decode_all(seed_dir / "seed.mp4")
    seed_fidelity = float(np.mean([psnr(model.predict(f[None])[0], o) for f, o in zip(frames[::step], seed_frames[::step])]))
    audio_same = audio_packets(output) == audio_packets(clip)
    print(f"  fidelity: ours {fidelity:.1f} dB, seed {seed_fidelity:.1f} dB (PSNR against the model's own output); audio packets identical: {audio_same}")
    fast = {}
    if importlib.util.find_spec("openvino"):
        fast_limit, _ = best_model_only(frames, "openvino bf16", backend="openvino", precision="bf16")
        fast_out = work / f"bf16_{height}p.mp4"
        fast_wall, _ = run_measured([*RESTYLE, "run", str(clip), "-o", str(fast_out), "--style", "7", "--precision", "bf16", "-q"])
        fast_fps = len(frames) / fast_wall
        fast_psnr = float(np.mean([psnr(model.predict(f[None])[0], o) for f, o in zip(frames[::step], decode_all(fast_out)[::step])]))
        print(f"  restyle run --precision bf16: {fast_fps:.2f} fps, ratio {fast_fps / fast_limit:.3f} to its model-only limit, "
              f"{fast_fps / seed:.2f}x the seed, {fast_psnr:.1f} dB against the float32 model")
        fast = {"bf16_model_only_fps": round(fast_limit, 2), "bf16_restyle_fps": round(fast_fps, 2),
                "bf16_speedup_over_seed": round(fast_fps / seed, 2), "bf16_psnr_db": round(fast_psnr, 1)}
    return fast | {
        "size": f"{width}x{height}", "frames": len(frames), "model_only_fps": round(limit, 2), "model_only_layout": layout,
        "restyle_fps": round(ours, 2), "ratio": round(ours / limit, 3), "seed_fps": round(seed, 2),
        "speedup_over_seed": round(ours / seed, 2), "psnr_db": round(fidelity, 1), "seed_psnr_db": round(seed_fidelity, 1),
        "audio_identical": audio_same, "peak_rss_mib": round(rss / 2**20),
    }


def memory(work: Path, seconds_list: list[float]) -> list[dict]:
    rows = []
    for seconds in seconds_list:
        clip = make_clip(work / f"mem_{seconds:.0f}s.mp4", width=640, height=360, rate=25, seconds=seconds, keyframe_interval=50)
        wall, rss = run_measured([*RESTYLE, "run", str(clip), "-o", str(work / f"mem_{seconds:.0f}s_out.mp4"), "-q"])
        print(f"peak RSS, 640x360 {seconds:.0f} s clip: {rss / 2**20:.0f} MiB (all processes; {wall:.0f} s wall)")
        rows.append({"seconds": seconds, "peak_rss_mib": round(rss / 2**20), "wall_s": round(wall, 1)})
    growth = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"] - 1
    print(f"peak RSS growth from {seconds_list[0]:.0f} s to {seconds_list[-1]:.0f} s: {growth * 100:+.1f}%")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short clips, for a smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        raise SystemExit("the seed pipeline needs the ffmpeg command: apt-get install -y ffmpeg")
    print(f"# restyle throughput, {date.today()}, {machine()}")
    with tempfile.TemporaryDirectory(prefix="restyle-bench-") as tmp:
        work = Path(tmp)
        scale = 0.25 if args.quick else 1.0
        # A minute at 640x360 (a second of start-up is then ~1.5% of the run), ten seconds at 1280x720.
        sizes = [throughput(work, 640, 360, 25, 60 * scale), throughput(work, 1280, 720, 30, 10 * scale)]
        mem = memory(work, [10, 120 * scale if not args.quick else 30])
    if args.json:
        Path(args.json).write_text(json.dumps({"throughput": sizes, "memory": mem}, indent=2))


if __name__ == "__main__":
    main()
