"""The fidelity bar a faster precision must pass, and the measured table that says who passes.

A reduced precision (bf16) is allowed by default only where a person would not tell its
output from float32's. Pixel-exact measures punish the wrong thing here: several styles
draw their brush strokes anew at every frame, so any numeric change moves the strokes
(PSNR drops to ~33 dB) while the picture is the same. The bar therefore has two parts,
both on the *final* output (after x264, what a user gets), against the float32 run:

* **luma SSIM >= LUMA_SSIM_BAR**: the structure a person sees (edges, strokes, shapes);
* **flat-region PSNR >= FLAT_PSNR_BAR dB**: on the pixels where float32's output is flat
  (local luma deviation under FLAT_STD), where banding or a colour cast would show.
  Texture is excluded there on purpose: moved strokes are not an error.

bench/fidelity.py measures every style of the 26-style network and a style picture and
writes restyle/runtime/fidelity.json; :func:`verdict` reads it. A network the table does not
cover (a user's ONNX, any style picture) is checked on its first frame at load time
(:func:`compare_outputs`, the same bar on the raw model output, stricter since no
encoder noise hides differences), or runs at float32.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from restyle.quality.metrics import luma, ssim

LUMA_SSIM_BAR = 0.90
FLAT_PSNR_BAR = 36.0
FLAT_STD = 3.0  # luma standard deviation (0..255) in a 7x7 window under which a region counts as flat
MIN_FLAT_SHARE = 0.01  # less flat area than this: the flat-region test does not apply
TABLE = Path(__file__).with_name("fidelity.json")
# int8 runs only where it is at least this much faster than what would run otherwise (f32, or bf16 on a CPU with native
# bf16) on the CPU's int8 class (the table's "speed", measured by bench/layers.py --write): where it is not, its
# difference buys nothing.
INT8_MIN_SPEEDUP = 1.1


@dataclass(frozen=True)
class Verdict:
    passed: bool
    luma_ssim: float
    flat_psnr_db: float | None  # None: no flat region to judge

    @property
    def summary(self) -> str:
        flat = "no flat region" if self.flat_psnr_db is None else f"flat-region PSNR {self.flat_psnr_db:.1f} dB"
        return f"luma SSIM {self.luma_ssim:.3f} (bar {LUMA_SSIM_BAR}), {flat} (bar {FLAT_PSNR_BAR:g})"


def judge(reference: np.ndarray, candidate: np.ndarray) -> Verdict:
    """The bar for ``candidate`` against ``reference``: (H, W, 3) or (N, H, W, 3) uint8 RGB."""
    reference, candidate = reference.reshape(-1, *reference.shape[-3:]), candidate.reshape(-1, *candidate.shape[-3:])
    ssims, errors, flat_pixels = [], 0.0, 0
    for ref, cand in zip(reference, candidate, strict=False):
        y = luma(ref)
        ssims.append(ssim(y, luma(cand)))
        mean = cv2.blur(y, (7, 7))
        std = np.sqrt(np.maximum(cv2.blur(y * y, (7, 7)) - mean * mean, 0))
        flat = std < FLAT_STD
        diff = ref[flat].astype(np.float64) - cand[flat].astype(np.float64)
        errors += float(np.sum(diff**2))
        flat_pixels += diff.size
    luma_ssim = float(np.mean(ssims))
    flat_psnr = None
    if flat_pixels >= MIN_FLAT_SHARE * reference[..., :3].size:
        flat_psnr = float("inf") if errors == 0 else float(10 * np.log10(255.0**2 * flat_pixels / errors))
    passed = luma_ssim >= LUMA_SSIM_BAR and (flat_psnr is None or flat_psnr >= FLAT_PSNR_BAR)
    return Verdict(passed, luma_ssim, flat_psnr)


def compare_outputs(exact: np.ndarray, fast: np.ndarray, pixels: bool) -> Verdict:
    """The load-time check: a network's raw outputs at f32 and bf16 on the same first frame.

    ``pixels``: the outputs are uint8 NHWC pictures already. Otherwise they are floats in
    the network's own layout and range; they are brought to uint8 pictures on the f32
    output's range. An output that is not a picture (records, a vector) is judged by
    its relative error alone (SSIM stands in as 1 - relative RMS error).
    """
    if pixels:
        return judge(exact, fast)
    if exact.ndim == 4 and 3 in (exact.shape[1], exact.shape[-1]):
        if exact.shape[-1] != 3:
            exact, fast = exact.transpose(0, 2, 3, 1), fast.transpose(0, 2, 3, 1)
        low, high = float(exact.min()), float(exact.max())
        scale = 255.0 / (high - low) if high > low else 1.0

        def to_pixels(x: np.ndarray) -> np.ndarray:
            return np.clip((x - low) * scale + 0.5, 0, 255).astype(np.uint8)

        return judge(to_pixels(exact), to_pixels(fast))
    rms = float(
        np.sqrt(np.mean((exact.astype(np.float64) - fast) ** 2))
        / (np.sqrt(np.mean(exact.astype(np.float64) ** 2)) or 1.0)
    )
    return Verdict(1 - rms >= LUMA_SSIM_BAR, 1 - rms, None)


@functools.cache
def table() -> dict:
    """The measured table (restyle/runtime/fidelity.json): {} when it is missing."""
    try:
        return json.loads(TABLE.read_text())
    except (OSError, ValueError):
        return {}


def verdict(
    network: str, precision: str = "bf16", cases: tuple[str, ...] | None = None, isa: str | None = None
) -> Verdict | None:
    """What the table says of ``network`` at ``precision``; None where it does not cover it.

    ``cases``: the table's cases a job runs (``("style 3", "style 12")`` for a blend): it passes only if every
    one does, and its figures are their worst; None: the whole network (every case must pass).
    ``isa``: the CPU's int8 class (``Machine.int8_class``), for a precision whose rows are measured per class
    (int8: ``by_isa``); a class nobody measured is not covered.

    A network whose output depends on more than its weights (the style-picture transform:
    every picture gives another style vector) is marked ``check_at_load`` and gets the
    first-frame check instead.
    """
    entry = table().get("networks", {}).get(network, {})
    if entry.get("check_at_load") or precision not in entry:
        return None
    rows = entry[precision]
    if "by_isa" in rows:
        rows = rows["by_isa"].get(isa or "") or {}
        if "cases" not in rows:  # a class nobody measured (its part may hold only a note, or speed figures)
            return None
    if cases is None:
        worst = rows["worst"]
        return Verdict(bool(rows["passed"]), worst["luma_ssim"], worst.get("flat_psnr_db"))
    found = [rows.get("cases", {}).get(case) for case in cases]
    if not found or any(row is None for row in found):
        return None
    flats = [row["flat_psnr_db"] for row in found if row.get("flat_psnr_db") is not None]
    return Verdict(
        all(row["passed"] for row in found), min(row["luma_ssim"] for row in found), min(flats) if flats else None
    )


def int8_speedup(network: str, isa: str | None, over: str = "f32") -> float | None:
    """``over``'s CPU time a frame (f32, or bf16 on a CPU with native bf16) over int8's for ``network`` on the int8
    class ``isa``, as bench/layers.py measured both there (as restyle compiles them); None where nobody did."""
    part = table().get("networks", {}).get(network, {}).get("int8", {}).get("by_isa", {}).get(isa or "") or {}
    speed = part.get("speed") or {}
    if not speed.get(f"{over}_cpu_ms") or not speed.get("int8_cpu_ms"):
        return None
    return speed[f"{over}_cpu_ms"] / speed["int8_cpu_ms"]
