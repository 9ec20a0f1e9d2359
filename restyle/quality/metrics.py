"""Picture measures, a leaf (numpy and OpenCV only): SSIM, PSNR, BT.601 luma and the warping error.

The runtime's fidelity bar and ``restyle quality`` both use them; nothing here imports restyle.
"""

from __future__ import annotations

import cv2
import numpy as np


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of (..., 3) uint8 RGB, as float32 on 0..255."""
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def warping_error(frame: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference (0..1 scale) over the masked pixels."""
    if not mask.any():
        return 0.0
    diff = (frame.astype(np.float32) - warped.astype(np.float32)) / 255.0
    return float(np.mean(np.sum(diff**2, axis=2)[mask]) / frame.shape[2])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), averaged over channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())
