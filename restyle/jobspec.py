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
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from restyle.errors import Invalid

# Containers a job may ask for; "auto" keeps the input's family where it can (and .jsonl for records).
Container = Literal["auto", "mp4", "mov", "mkv", "ts", "webm", "jsonl"]
# The encoders a job may ask for: those whose quality (crf) and speed (preset) restyle sets (restyle/media/encode.py).
Encoder = Literal["libx264", "libx265", "libvpx-vp9"]
# x264's (and x265's) presets; VP9 maps the fast ones to its realtime mode. Anything else would fail in every worker.
Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
]


NUM_STYLES = 26  # the 26-style network's styles, 0 to 25
MAX_STYLE_WEIGHT = 1000.0  # blend weights are normalised; beyond this a weight is a mistake (or 1e39, an attack)
MAX_PARAMS = 32  # per-call parameters a job may set
MAX_PARAM_TEXT = 1000  # characters in a parameter's text value
MAX_PARAM_DEPTH = 4  # lists and objects inside a parameter's value
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


MAX_JSON_DEPTH = 32  # lists and objects inside one another in any JSON a tenant sends (a JobSpec needs 4)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = {c: None for c in range(128) if chr(c) not in "[]{}"}


def json_depth(text: str | bytes) -> int:
    """How deep lists and objects nest in JSON ``text`` (0 for a scalar), found without parsing it: strings are cut
    out, then the brackets counted. Malformed text gets some figure; parsing it is what refuses it."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    brackets = _JSON_STRING.sub("", text).translate(_NOT_BRACKETS).encode("ascii", "ignore")
    if not brackets:
        return 0
    opens = np.isin(np.frombuffer(brackets, dtype=np.uint8), (ord("["), ord("{")))
    return int(np.cumsum(np.where(opens, 1, -1)).max())


def load_json(text: str | bytes, what: str = "the JSON", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for what a tenant sent, at every door (API bodies, form fields, events, inbox sidecars):
    nesting deeper than ``max_depth`` is refused before it is parsed (the parser recurses, and a deep enough text
    raises RecursionError, which no door expects). Raises :class:`~restyle.errors.Invalid` with the reason."""
    if json_depth(text) > max_depth:
        raise Invalid(f"{what} nests lists or objects deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"{what} is not JSON: {str(exc)[:200]}") from None


def check_text(value: str, what: str = "the value") -> str:
    """The rule every text field of every door keeps: not empty, not blank, no control characters.
    (An empty style used to mean 'the default' at one door and a job at another: now it is refused at all.)"""
    if not value.strip():
        raise ValueError(f"{what} must not be empty or blank")
    if _CONTROL.search(value):
        raise ValueError(f"{what} must not hold control characters")
    return value


def check_style(style: str) -> str:
    """A style is one of 0-25 or a blend ``"3:0.5,12:0.5"``: indexes 0-25, weights finite,
    0 to MAX_STYLE_WEIGHT, not all 0."""
    total = 0.0
    for part in style.split(","):
        index, colon, weight = part.strip().partition(":")
        if not (index.strip().isascii() and index.strip().isdigit()) or (colon and not weight.strip()):
            raise ValueError(
                f"bad style spec {style[:80]!r}: use one of 0-{NUM_STYLES - 1}, or a blend like 3:0.5,12:0.5"
            )
        if int(index) >= NUM_STYLES:
            raise ValueError(
                f"style {int(index)} is out of range: there are {NUM_STYLES} styles, 0 to {NUM_STYLES - 1}"
            )
        try:
            value = float(weight) if colon else 1.0
        except ValueError:
            raise ValueError(f"style weight {weight.strip()[:40]!r} is not a number") from None
        if not (0.0 <= value <= MAX_STYLE_WEIGHT):  # also false for nan
            raise ValueError(f"style weight {weight.strip()[:40]!r} must be a number from 0 to {MAX_STYLE_WEIGHT:g}")
        total += value
    if total <= 0:
        raise ValueError("a blend's weights must not all be 0")
    return style


def validation_reason(exc: ValidationError) -> str:
    """One line a person reads, the same at every door: each field and what is wrong with it."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
    )[:500]


def _check_param(name: str, value: Any, depth: int = 0) -> None:
    if depth > MAX_PARAM_DEPTH:
        raise ValueError(f"parameter {name} nests deeper than {MAX_PARAM_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"parameter {name} must be a finite number, got {value}")
    if isinstance(value, str):
        check_text(value, f"parameter {name}")
        if len(value) > MAX_PARAM_TEXT:
            raise ValueError(f"parameter {name} is over {MAX_PARAM_TEXT} characters")
    elif isinstance(value, (list, tuple)):
        if len(value) > MAX_PARAM_TEXT:
            raise ValueError(f"parameter {name} holds over {MAX_PARAM_TEXT} items")
        for item in value:
            _check_param(name, item, depth + 1)
    elif isinstance(value, dict):
        if len(value) > MAX_PARAMS:
            raise ValueError(f"parameter {name} holds over {MAX_PARAMS} entries")
        for key, item in value.items():
            _check_param(f"{name}.{str(key)[:40]}", item, depth + 1)
    elif value is None:
        raise ValueError(f"parameter {name} has no value (leave it out for the model's default)")


class OutputOptions(BaseModel):
    """What the output file is: container and video quality (records jobs ignore the quality)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    container: Container = Field("auto", description="auto: the input's family (mp4 for most), .jsonl for records")
    codec: Encoder | None = Field(
        None, description="video encoder (libx264, libx265 or libvpx-vp9); None: the deployment's default (libx264)"
    )
    crf: int | None = Field(None, ge=0, le=51, description="quality, lower is better; None: the deployment's default")
    preset: Preset | None = Field(None, description="encoder preset; None: the deployment's default")


class JobSpec(BaseModel):
    """The model and its per-call parameters, post-processing, and the output.

    ``model`` names a handler (``styles``, ``style-image``, ``onnx``, ``yolo``, ``tensors``, or one a
    package registers under the ``restyle.handlers`` entry point group) or, in the service,
    a model an admin registered by name (resolved to its handler and stored file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(
        "styles",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="a handler name or a registered model's name",
    )
    model_file: str | None = Field(
        None, max_length=1000, description="the weights file for onnx, yolo and file-based handlers"
    )
    style: str | None = Field(None, max_length=400, description='styles: one of 0-25, or a blend "3:0.5,12:0.5"')
    style_image: str | None = Field(
        None, max_length=1000, description="style-image: the painting (a path; in the service a saved picture's name)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="other per-call parameters of the handler (e.g. value_range, confidence)"
    )
    strength: float = Field(
        1.0, ge=0, le=1, allow_inf_nan=False, description="1 is full effect; less mixes the original frame back in"
    )
    deflicker: float = Field(
        0.0, ge=0, le=1, allow_inf_nan=False, description="temporal smoothing strength; 0 off, 0.8 the usual"
    )
    output: OutputOptions = Field(default_factory=OutputOptions)

    # One place for the rules every door keeps (CLI, API JSON and multipart, dashboard, inbox sidecar):
    # a broken value is refused with its reason here, before any job exists.
    @field_validator("model_file", "style", "style_image")
    @classmethod
    def _text(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else check_text(value, info.field_name)

    @field_validator("style")
    @classmethod
    def _style(cls, style: str | None) -> str | None:
        return None if style is None else check_style(style)

    @field_validator("params")
    @classmethod
    def _params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if len(params) > MAX_PARAMS:
            raise ValueError(f"at most {MAX_PARAMS} parameters, got {len(params)}")
        for name, value in params.items():
            if not _PARAM_NAME.match(name):
                raise ValueError(
                    f"a parameter's name is 1 to 64 letters, digits, '_', '.' or '-', "
                    f"starting with a letter or '_'; got {name[:40]!r}"
                )
            _check_param(name, value)
        return params

    def fingerprint(self, file_fields: Iterable[str] = ("model_file", "style_image")) -> str:
        """Changes whenever the output would: the whole spec, and the bytes of every file it names.

        ``file_fields``: the fields that name files (the handler's ``file_fields``; by default every such field here).
        """
        digest = hashlib.sha256(self.model_dump_json().encode())
        for name in (getattr(self, field) for field in file_fields):
            if name and Path(name).is_file():
                with open(name, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
        return digest.hexdigest()[:16]


class Allowance(BaseModel):
    """How many items of a batch may fail before it stops: a count (``"5"``) or a share (``"10%"``).

    The same text at every door (``--max-failures``, the API's ``max_failures``, an inbox list's
    sidecar). None: every item is tried, however many fail.
    """

    model_config = ConfigDict(frozen=True)

    count: int | None = Field(None, ge=0)
    percent: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)

    @classmethod
    def parse(cls, text: str | int | None) -> Allowance | None:
        if text is None:
            return None
        value = str(text).strip()
        try:
            if value.endswith("%"):
                return cls(percent=float(value[:-1]))
            return cls(count=int(value))
        except (ValueError, ValidationError):
            raise ValueError(
                f"max failures {value[:40]!r}: give a number of items (5) or a share of them (10%)"
            ) from None

    def exceeded(self, failed: int, total: int) -> bool:
        """True once ``failed`` items of ``total`` are more than the batch allows."""
        if self.count is not None:
            return failed > self.count
        return self.percent is not None and total > 0 and failed * 100 > self.percent * total

    def __str__(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.percent:g}%"
