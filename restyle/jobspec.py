"""What a job does: one record, the same from every door.

The CLI, the library, the API (JSON and multipart), the dashboard's form and an inbox
sidecar (``VIDEO.json`` beside a dropped video) all build a :class:`JobSpec`; it is stored
with the job and hashed whole (with the bytes of every file it names) for the work key,
so segments made for one spec are never reused for another. How the service is deployed
(stores, engine, limits, workers) is not here: that is :class:`restyle.config.Settings`.

    JobSpec(model="styles", style="7", strength=0.8)
    JobSpec(model="style-image", style_image="wave.jpg")
    JobSpec(model="onnx", model_file="esrgan.onnx")           # image -> image, any output size
    JobSpec(model="yolo", model_file="det.onnx")              # records: one JSON line per frame
    JobSpec(model="moderation")                               # a model an admin registered (service)
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Containers a job may ask for; "auto" keeps the input's family where it can (and .jsonl for records).
Container = Literal["auto", "mp4", "mov", "mkv", "ts", "webm", "jsonl"]
# x264's (and x265's) presets; VP9 maps the fast ones to its realtime mode. Anything else would fail in every worker.
Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"]


class OutputOptions(BaseModel):
    """What the output file is: container and video quality (records jobs ignore the quality)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    container: Container = Field("auto", description="auto: the input's family (mp4 for most), .jsonl for records")
    codec: str | None = Field(None, description="video encoder; None: the deployment's default (libx264)")
    crf: int | None = Field(None, ge=0, le=51, description="quality, lower is better; None: the deployment's default")
    preset: Preset | None = Field(None, description="encoder preset; None: the deployment's default")


class JobSpec(BaseModel):
    """The model and its per-call parameters, post-processing, and the output.

    ``model`` names a handler (``styles``, ``style-image``, ``onnx``, ``yolo``, or one a
    package registers under the ``restyle.handlers`` entry point group) or, in the service,
    a model an admin registered by name (resolved to its handler and stored file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field("styles", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                       description="a handler name or a registered model's name")
    model_file: str | None = Field(None, max_length=1000, description="the weights file for onnx, yolo and file-based handlers")
    style: str | None = Field(None, max_length=400, description='styles: one of 0-25, or a blend "3:0.5,12:0.5"')
    style_image: str | None = Field(None, max_length=1000, description="style-image: the painting (a path; in the service a saved picture's name)")
    params: dict[str, Any] = Field(default_factory=dict, description="other per-call parameters of the handler (e.g. value_range, confidence)")
    strength: float = Field(1.0, ge=0, le=1, allow_inf_nan=False, description="1 is full effect; less mixes the original frame back in")
    deflicker: float = Field(0.0, ge=0, le=1, allow_inf_nan=False, description="temporal smoothing strength; 0 off, 0.8 the usual")
    output: OutputOptions = Field(default_factory=OutputOptions)

    @field_validator("params")
    @classmethod
    def _finite(cls, params: dict[str, Any]) -> dict[str, Any]:
        for name, value in params.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"parameter {name} must be a finite number, got {value}")
        return params

    @property
    def label(self) -> str:
        """Short and readable: ``styles:7``, ``style-image:wave.jpg``, ``onnx:esrgan.onnx``, ``moderation``."""
        if self.model == "styles":
            return f"styles:{self.style or '0'}"
        if self.style_image:
            return f"{self.model}:{Path(self.style_image).name}"
        if self.model_file:
            return f"{self.model}:{Path(self.model_file).name}"
        return self.model

    def fingerprint(self) -> str:
        """Changes whenever the output would: the whole spec, and the bytes of every file it names."""
        digest = hashlib.sha256(self.model_dump_json().encode())
        for name in (self.model_file, self.style_image):
            if name and Path(name).is_file():
                with open(name, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()[:16]
