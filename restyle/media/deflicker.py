"""Deflicker: temporal consistency at inference time, with no training.

Each frame is stylised on its own, so textures jump from one frame to the next. Here
every stylised frame is pulled towards the previous *output* carried along the
*input's* motion (optical flow), wherever that motion is reliable (forward-backward
check and a photometric check on the input):

    d_t   = m_t * (warp(out_{t-1}) - styled_t)
    out_t = styled_t + s * low(d_t) + s * HIGH_SHARE * (d_t - low(d_t))

with ``s`` the strength (0..1), ``m_t`` the confidence and ``low`` a Gaussian blur.
Along a motion trajectory this is an exponential moving average; where the flow breaks
(occlusions, cuts, new content) the frame is left as the model made it. The change is
split in two bands, after the gradient-domain idea of Bonneel et al. 2015 (blind video
temporal consistency): the colour blotches that flicker most are carried over at the
full strength, while the fine texture of the current frame is mostly kept, so the picture keeps
its style (SSIM to the per-frame stylisation) and does not smear.

The state is one frame, so a chunk rebuilds it from a few frames before its first
(``warmup_frames``): their influence after ``n`` frames is ``s**n``, and a chunk that
starts mid-video continues the previous chunk's output with no visible seam.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from restyle.media.flow import FlowEstimator, gray, reliable, resize_flow, warp

FLOW_SCALE = 0.5  # flow on a half-size picture: the motion is smooth, and it costs a quarter
PHOTOMETRIC_TOLERANCE = 20.0  # input luma (0..255) that may differ after warping before trust fades
LOW_SIGMA = 4.0  # pixels: the blur that splits the two bands (style textures are finer than this)
HIGH_SHARE = 0.375  # the fine band is carried over at this share of the strength
DEFAULT_STRENGTH = 0.8
MAX_WARMUP = 16


def warmup_frames(strength: float, residue: float = 0.2) -> int:
    """Frames a chunk scores before its first so that what is left of a cold start is at most ``residue``.

    At strength 0.8 that is 8 frames, after which a chunk's first frame was measured
    49.6-54.5 dB from an unbroken run's (pan and zoom clips): far below what the encoder changes.
    """
    if strength <= 0:
        return 0
    if strength >= 1:
        return MAX_WARMUP
    return min(MAX_WARMUP, max(1, math.ceil(math.log(residue) / math.log(strength))))


def _low_band(image: np.ndarray) -> np.ndarray:
    """A Gaussian blur of LOW_SIGMA, done at half size (a quarter of the work; the result is smooth anyway)."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // 2), max(1, height // 2)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), LOW_SIGMA / 2)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


class Deflicker:
    """Smooths one stream of frames; make one per chunk (its state is the previous frame)."""

    def __init__(self, strength: float):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"deflicker strength must be between 0 and 1, got {strength}")
        self.strength = strength
        self._flow = FlowEstimator("dis")
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (input luma, half size; output, float)

    def __call__(self, frames: np.ndarray, styled: np.ndarray) -> np.ndarray:
        """``frames`` the (N, H, W, 3) inputs in order, ``styled`` the model's outputs; returns the smoothed outputs."""
        return np.stack([self.step(frame, out) for frame, out in zip(frames, styled, strict=False)])

    def step(self, frame: np.ndarray, styled: np.ndarray) -> np.ndarray:
        """One frame: its input and the model's output for it."""
        luma = gray(frame, FLOW_SCALE)
        result = styled.astype(np.float32)
        if self._previous is not None and self.strength > 0:
            prev_luma, prev_out = self._previous
            height, width = frame.shape[:2]
            back = self._flow(luma, prev_luma)  # where each pixel of this frame was in the previous one
            trusted = reliable(back, self._flow(prev_luma, luma)).astype(np.float32)
            # Trust fades where the warped input does not match (lighting change, flow error).
            mismatch = np.abs(luma.astype(np.float32) - warp(prev_luma, back).astype(np.float32))
            trusted *= np.exp(-((mismatch / PHOTOMETRIC_TOLERANCE) ** 2))
            confidence = cv2.resize(trusted, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
            change = (warp(prev_out, resize_flow(back, width, height)) - result) * confidence
            # low + HIGH_SHARE * (change - low), in one pass
            result += cv2.addWeighted(
                _low_band(change), self.strength * (1 - HIGH_SHARE), change, self.strength * HIGH_SHARE, 0
            )
        self._previous = (luma, result)
        return cv2.convertScaleAbs(np.maximum(result, 0.0, out=result.copy()))  # rounds and saturates to uint8
