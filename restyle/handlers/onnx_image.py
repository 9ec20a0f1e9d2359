"""Any image->image ONNX model: NCHW float input and output, values on 0..1 (or 0..255)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from restyle.errors import ModelError
from restyle.handlers.base import ModelSpec, blend, to_uint8
from restyle.runtime import Runtime


class OnnxImageModel:
    """A user's model. A fixed input size is honoured by resizing frames to it and back."""

    def __init__(self, spec: ModelSpec, runtime: Runtime):
        path = Path(spec.onnx_path or "")
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path}")
        self._session = runtime.session(path, path.name)
        inputs = self._session.inputs
        if len(inputs) != 1 or len(inputs[0][1]) != 4:
            raise ModelError(f"{path.name} is not an image->image model: it needs one NCHW input, it has {len(inputs)} inputs")
        self._input, shape = inputs[0]
        if shape[1] not in (3, "3") and isinstance(shape[1], int):
            raise ModelError(f"{path.name} takes {shape[1]} channels; restyle feeds RGB (3 channels)")
        self._fixed_batch = isinstance(shape[0], int)
        self._fixed_size = (shape[3], shape[2]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
        self._range = spec.value_range
        self._strength = spec.strength
        self.description = f"{path.name} on {self._session.provider}"

    def predict(self, frames: np.ndarray) -> np.ndarray:
        if self._fixed_batch:
            restyled = np.concatenate([self._run(frames[i : i + 1]) for i in range(len(frames))])
        else:
            restyled = self._run(frames)
        return blend(frames, restyled, self._strength)

    def _run(self, frames: np.ndarray) -> np.ndarray:
        h, w = frames.shape[1:3]
        x = frames if self._fixed_size is None else np.stack([_resize(f, self._fixed_size) for f in frames])
        x = x.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(self._range / 255.0)
        try:
            out = self._session.run({self._input: np.ascontiguousarray(x)})[0]
        except Exception as exc:  # onnxruntime's errors are untyped
            raise ModelError(f"the model failed on a {w}x{h} frame: {exc}") from None
        if out.ndim != 4 or out.shape[1] != 3:
            raise ModelError(f"the model returned shape {out.shape}; restyle needs NCHW with 3 channels")
        images = to_uint8(out.transpose(0, 2, 3, 1), self._range)
        oh, ow = images.shape[1:3]
        if 0 <= oh - h < 8 and 0 <= ow - w < 8:
            images = images[:, :h, :w]  # networks that downsample return sizes rounded up to their stride
        else:
            images = np.stack([_resize(img, (w, h)) for img in images])
        return images


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC))
