"""The Model interface and the ModelSpec that names a model across process boundaries."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field

from restyle.errors import ModelError
from restyle.runtime import Runtime


class Model(Protocol):
    """Anything that restyles frames. Loaded once per worker and reused for every frame."""

    description: str

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` is (N, H, W, 3) uint8 RGB; returns the same shape and type."""
        ...


class ModelSpec(BaseModel, frozen=True):
    """Which model to run and with what parameters: small, picklable, JSON-able.

    Build one with :meth:`styles`, :meth:`with_style_image` or :meth:`onnx`, or parse the
    CLI's ``--model`` value with :meth:`parse`.
    """

    kind: Literal["styles", "style-image", "onnx"]
    style: str = "0"  # "7" or a blend "3:0.5,12:0.5" of the 26 styles
    style_image: str | None = None
    onnx_path: str | None = None
    value_range: float = Field(1.0, gt=0, description="onnx models: pixel values run 0..value_range (1 or 255)")
    strength: float = Field(1.0, ge=0, le=1, description="1 is full style; less mixes the original frame back in")

    @classmethod
    def styles(cls, style: str | int = "0", strength: float = 1.0) -> ModelSpec:
        return cls(kind="styles", style=str(style), strength=strength)

    @classmethod
    def with_style_image(cls, path: str | Path, strength: float = 1.0) -> ModelSpec:
        return cls(kind="style-image", style_image=str(Path(path).resolve()), strength=strength)

    @classmethod
    def onnx(cls, path: str | Path, value_range: float = 1.0, strength: float = 1.0) -> ModelSpec:
        return cls(kind="onnx", onnx_path=str(Path(path).resolve()), value_range=value_range, strength=strength)

    @property
    def label(self) -> str:
        """Short and readable: ``styles:7``, ``style-image:wave.jpg``, ``onnx:model.onnx``."""
        if self.kind == "styles":
            return f"styles:{self.style}"
        return f"{self.kind}:{Path(self.style_image or self.onnx_path or '').name}"

    def check(self) -> None:
        """Fail now, with a reason, rather than in every worker later."""
        if self.kind == "styles":
            from restyle.handlers.styles import style_weights

            style_weights(self.style)
        elif self.kind == "style-image":
            from restyle.handlers.styles import read_style_image

            read_style_image(self.style_image or "")
        else:
            path = Path(self.onnx_path or "")
            if not path.is_file():
                raise ModelError(f"ONNX model not found: {path}")

    def fingerprint(self) -> str:
        """Changes whenever the output would: parameters and the bytes of any file the model reads."""
        digest = hashlib.sha256(self.model_dump_json().encode())
        for name in (self.style_image, self.onnx_path):
            if name and Path(name).is_file():
                digest.update(Path(name).read_bytes())
        return digest.hexdigest()[:16]


def load_model(spec: ModelSpec, runtime: Runtime) -> Model:
    """Load the model ``spec`` names onto ``runtime``'s device."""
    if spec.kind == "onnx":
        from restyle.handlers.onnx_image import OnnxImageModel

        return OnnxImageModel(spec, runtime)
    from restyle.handlers.styles import ArbitraryStyle, MultiStyle

    return MultiStyle(spec, runtime) if spec.kind == "styles" else ArbitraryStyle(spec, runtime)


def blend(original: np.ndarray, restyled: np.ndarray, strength: float) -> np.ndarray:
    """Mix the original frames back in: ``strength`` 1 keeps only the restyled ones."""
    if strength >= 1.0:
        return restyled
    mixed = original.astype(np.float32) * (1.0 - strength) + restyled.astype(np.float32) * strength
    return (mixed + 0.5).astype(np.uint8)


def to_uint8(values: np.ndarray, value_range: float = 1.0) -> np.ndarray:
    """Model output (floats on 0..value_range) to uint8 pixels, rounded."""
    return (np.clip(values * (255.0 / value_range), 0.0, 255.0) + 0.5).astype(np.uint8)
