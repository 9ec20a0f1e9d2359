"""The x264 settings that cost the least CPU for the quality of x264's veryfast at crf 18, on restyled frames.

    python bench/encoder.py            # styles 0 3 7 13 17 19, a photo pan and the test pattern, 640x360, 150 frames
    python bench/encoder.py --quick    # styles 3 7 17 19, the photo pan only, 100 frames

The frames are the model's own output (the 26-style network, the default runtime), so the
encoder sees what it sees in a real run: restyled texture, not camera noise. Each
configuration encodes the same frames on one thread, the way a worker does (rgb24 handed to
PyAV, swscale converts, x264 with asm=avx2); its CPU is the encoding thread's time, the
median of the repeats, interleaved. Quality is measured against the model's frames before
encoding, on every 5th frame: PSNR, luma SSIM, and PSNR on the flat regions alone (where
banding shows; restyle/fidelity.py's mask), and the bitrate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import decode_all, machine

from restyle.config import Settings
from restyle.engines.sizing import choose_layout
from restyle.handlers import JobSpec, load
from restyle.handlers.base import params_of
from restyle.media.sample import make_clip, make_motion_clip, packaged_photo
from restyle.quality import psnr
from restyle.runtime import fidelity

Candidate = tuple[str, int, str]  # preset, crf, extra x264-params
BASELINE: Candidate = ("veryfast", 18, "")
CANDIDATES: list[Candidate] = [
    BASELINE,
    ("veryfast", 19, ""),
    ("superfast", 18, ""),
    ("superfast", 19, ""),
    ("superfast", 18, "mbtree=1:rc-lookahead=10"),  # superfast with veryfast's macroblock tree (its look-ahead)
    ("veryfast", 18, "subme=1:partitions=i8x8,i4x4"),
    ("ultrafast", 18, ""),
]
RATE = 25


def encode(frames: list[np.ndarray], candidate: Candidate, path: Path) -> tuple[float, float]:
    """(CPU ms per frame of the encoding thread, Mbit/s) for ``frames`` with ``candidate``'s settings."""
    preset, crf, extra = candidate
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "threads": "1",
            "crf": str(crf),
            "preset": preset,
            "x264-params": ":".join(filter(None, ["asm=avx2", extra])),
        }
        stream.codec_context.thread_count = 1
        started = time.thread_time()
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        cpu = time.thread_time() - started
    return 1000 * cpu / len(frames), path.stat().st_size * 8 / 1e6 / (len(frames) / RATE)


def quality(frames: list[np.ndarray], path: Path) -> tuple[float, float, float]:
    """(PSNR, luma SSIM, flat-region PSNR) of the encoded file against the frames it was made from."""
    decoded = decode_all(path)
    reference, encoded = np.stack(frames[::5]), np.stack(decoded[::5])
    verdict = fidelity.judge(reference, encoded)
    return (
        float(np.mean([psnr(a, b) for a, b in zip(reference, encoded, strict=False)])),
        verdict.luma_ssim,
        verdict.flat_psnr_db or float("nan"),
    )


def label(candidate: Candidate) -> str:
    preset, crf, extra = candidate
    return f"{preset} crf {crf}" + (f" +{extra}" if extra else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# restyle encoder presets, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")
    print(f"# command: python bench/encoder.py {' '.join(sys.argv[1:])}")
    styles = ["3", "7", "17", "19"] if args.quick else ["0", "3", "7", "13", "17", "19"]
    frames_n = 100 if args.quick else 150
    runtime, _ = choose_layout(Settings(), 640 * 360)
    with tempfile.TemporaryDirectory(prefix="restyle-encoder-") as tmp:
        work = Path(tmp)
        clips = {
            "photo pan": make_motion_clip(
                work / "pan.mp4", packaged_photo(), width=640, height=360, rate=RATE, seconds=frames_n / RATE
            )
        }
        if not args.quick:
            clips["test pattern"] = make_clip(
                work / "pattern.mp4", width=640, height=360, rate=RATE, seconds=frames_n / RATE
            )
        flats: dict[Candidate, list[float]] = {c: [] for c in CANDIDATES}  # nan where a case has no flat region
        totals = {c: {"cpu": 0.0, "mbps": 0.0, "psnr": 0.0, "ssim": 0.0, "log_size": 0.0} for c in CANDIDATES}
        for clip_name, clip in clips.items():
            source = decode_all(clip)[:frames_n]
            for style in styles:
                spec = JobSpec(style=style)
                model = load(spec, runtime)
                frames = [model.predict(f[None], params_of(spec))[0] for f in source]
                cpu: dict[Candidate, list[float]] = {c: [] for c in CANDIDATES}
                rows = {}
                for _ in range(args.repeats):  # interleaved: the host's load hits every candidate alike
                    for i, candidate in enumerate(CANDIDATES):
                        path = work / f"candidate{i}.mp4"
                        ms, mbps = encode(frames, candidate, path)
                        cpu[candidate].append(ms)
                        rows[candidate] = (mbps, path)
                print(f"{clip_name}, style {style} ({len(frames)} frames, {runtime.choose('multistyle26').precision}):")
                for candidate in CANDIDATES:
                    mbps, path = rows[candidate]
                    db, structural, flat = quality(frames, path)
                    ms = statistics.median(cpu[candidate])
                    for key, value in zip(("cpu", "mbps", "psnr", "ssim"), (ms, mbps, db, structural), strict=False):
                        totals[candidate][key] += value
                    flats[candidate].append(flat)
                    totals[candidate]["log_size"] += float(np.log(mbps / rows[BASELINE][0]))
                    print(
                        f"  {label(candidate):45s} {ms:5.2f} CPU ms/frame  {mbps:5.2f} Mbit/s  "
                        f"PSNR {db:5.2f} dB  luma SSIM {structural:.4f}  flat PSNR {flat:5.2f} dB",
                        flush=True,
                    )
        cases = len(clips) * len(styles)
        base = totals[BASELINE]
        print(
            f"\nover {cases} clip x style cases, against {label(BASELINE)} "
            "(size: geometric mean of the ratios; quality: mean change):"
        )
        for candidate in CANDIDATES:
            t = totals[candidate]
            print(
                f"  {label(candidate):45s} CPU x{t['cpu'] / base['cpu']:.2f}, "
                f"size x{np.exp(t['log_size'] / cases):.2f}, "
                f"PSNR {(t['psnr'] - base['psnr']) / cases:+.2f} dB, SSIM {(t['ssim'] - base['ssim']) / cases:+.4f}, "
                f"flat PSNR {np.nanmean(np.subtract(flats[candidate], flats[BASELINE])):+.2f} dB"
            )


if __name__ == "__main__":
    main()
