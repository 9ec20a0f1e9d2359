"""Optical flow between frames, warping along it, and where it can be trusted.

Both the deflicker (which carries the previous output along the input's motion) and
the quality measure (which checks how well the output follows that motion) need the
same three things, all from OpenCV:

* ``flow(a, b)``: for every pixel of ``a``, where it went in ``b`` (dx, dy), in pixels.
* ``warp(image, flow)``: ``image`` resampled along a flow, so ``warp(b, flow(a, b))``
  looks like ``a`` wherever the flow is right.
* ``reliable(forward, backward)``: the forward-backward check of Sundaram et al. 2010
  (as used by Ruder et al. 2016 and Lai et al. 2018): a pixel whose round trip does not
  come back near where it started is occluded, disoccluded or badly matched.
"""

from __future__ import annotations

import functools
from typing import Literal

import cv2
import numpy as np

Method = Literal["dis", "farneback"]
MIN_SIDE = 16  # the smallest picture flow is computed on

cv2.setNumThreads(1)  # engines run one worker per core; OpenCV's own pool would oversubscribe them


def gray(rgb: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A uint8 luma plane for flow, optionally downscaled (area filter) by ``scale``."""
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale == 1.0:
        return luma
    height, width = luma.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # FlowEstimator copes with tiny ones
    return cv2.resize(luma, size, interpolation=cv2.INTER_AREA)


class FlowEstimator:
    """Dense optical flow with one method, made once and reused (DIS keeps its buffers)."""

    def __init__(self, method: Method = "dis", preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST):
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(preset) if method == "dis" else None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from luma plane ``a`` to luma plane ``b``: (H, W, 2) float32, pixels of ``a``."""
        height, width = a.shape[:2]
        if min(height, width) < MIN_SIDE:  # DIS refuses pictures under 12 pixels: scale tiny ones up, the flow down
            grow = MIN_SIDE / min(height, width)
            size = (max(MIN_SIDE, round(width * grow)), max(MIN_SIDE, round(height * grow)))
            flow = self(
                cv2.resize(a, size, interpolation=cv2.INTER_LINEAR), cv2.resize(b, size, interpolation=cv2.INTER_LINEAR)
            )
            return resize_flow(flow, width, height)
        if self._dis is not None:
            return self._dis.calc(a, b, None)
        # Farneback with the parameters of OpenCV's sample: 3 levels, window 15, poly 5.
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """A flow computed on a smaller picture, brought to ``width`` x ``height`` (vectors scaled too)."""
    small_h, small_w = flow.shape[:2]
    if (small_w, small_h) == (width, height):
        return flow
    big = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    big[..., 0] *= width / small_w
    big[..., 1] *= height / small_h
    return big


@functools.lru_cache(maxsize=4)
def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def _maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _grid(*flow.shape[:2])
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``x + flow(x)`` (bilinear; outside the frame, the nearest edge)."""
    map_x, map_y = _maps(flow)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def reliable(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Where ``forward`` (a -> b) can be trusted, given ``backward`` (b -> a): a bool (H, W) mask.

    A pixel passes when following ``forward`` and then ``backward`` returns it close to
    where it started, relative to how far it moved, and when it lands inside ``b``.
    """
    map_x, map_y = _maps(forward)
    back = cv2.remap(backward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    total = forward + back
    round_trip = total[..., 0] ** 2 + total[..., 1] ** 2
    magnitude = forward[..., 0] ** 2 + forward[..., 1] ** 2 + back[..., 0] ** 2 + back[..., 1] ** 2
    height, width = forward.shape[:2]
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return (round_trip <= 0.01 * magnitude + 0.5) & inside
