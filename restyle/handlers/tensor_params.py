"""The ``tensors`` handler's per-call parameters, checked at the door, and the preprocessing presets they name."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from restyle.errors import ModelError
from restyle.handlers.tensor_graph import ImageInput, parse_labels


@dataclass(frozen=True)
class Normalization:
    """How 0..255 RGB pixels become the model's numbers: ``(value * scale - mean) / std``, channels in order."""

    channels: str = "rgb"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


PRESETS = {
    "imagenet": Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    "unit": Normalization(),
    "tf": Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "caffe": Normalization("bgr", 1.0, (104.0, 117.0, 123.0)),
    "raw": Normalization(scale=1.0),
}
DEFAULT_SIZE = 224  # what a model of any input size is fed unless told
MAX_SIDE = 4096
MAX_TOP_K = 1000
EMBEDDING_ABOVE = 1000  # an unnamed output longer than this is taken for an embedding (output auto)
SOFTMAX = ("auto", "true", "false")
NORMALIZATION_KEYS = {"preprocess", "channels", "scale", "mean", "std"}  # what a model's metadata may say
OUTPUTS = ("auto", "classes", "embedding")


@dataclass(frozen=True)
class TensorParams:
    """The per-call parameters, checked. None: the model's own default (its metadata's, or the preset's)."""

    preprocess: str | None = None
    channels: str | None = None
    scale: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: str = "stretch"
    size: tuple[int, int] | None = None  # (width, height)
    output: str = "auto"
    top_k: int = 5
    softmax: str = "auto"
    normalize: bool = True
    labels: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None

    def normalization(self, default: Normalization) -> Normalization:
        base = PRESETS[self.preprocess] if self.preprocess else default
        fields = {"channels": self.channels, "scale": self.scale, "mean": self.mean, "std": self.std}
        return replace(base, **{key: value for key, value in fields.items() if value is not None})


def tensor_params(raw: Mapping[str, Any]) -> TensorParams:
    """``JobSpec.params`` checked into :class:`TensorParams`; ModelError naming the first bad one."""
    known = set(TensorParams.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelError(f"the tensors model takes no parameter {unknown[0]!r}; it takes {', '.join(sorted(known))}")
    fields: dict[str, Any] = {}
    if "preprocess" in raw:
        fields["preprocess"] = _choice(raw, "preprocess", tuple(PRESETS))
    if "channels" in raw:
        fields["channels"] = _choice(raw, "channels", ("rgb", "bgr"))
    if "scale" in raw:
        fields["scale"] = _number(raw["scale"], "scale", positive=True)
    for key in ("mean", "std"):
        if key in raw:
            fields[key] = _triple(raw[key], key, positive=key == "std")
    if "resize" in raw:
        fields["resize"] = _choice(raw, "resize", ("stretch", "crop"))
    if "size" in raw:
        fields["size"] = _size(raw["size"])
    if "output" in raw:
        fields["output"] = _choice(raw, "output", OUTPUTS)
    if "top_k" in raw:
        top_k = raw["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ModelError(f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {top_k!r}")
        fields["top_k"] = top_k
    if "softmax" in raw:
        value = raw["softmax"]  # --param softmax=true arrives as JSON's true
        fields["softmax"] = _choice({"softmax": _text(value)}, "softmax", SOFTMAX)
    if "normalize" in raw:
        if not isinstance(raw["normalize"], bool):
            raise ModelError(f"normalize must be true or false, got {raw['normalize']!r}")
        fields["normalize"] = raw["normalize"]
    if "labels" in raw:
        fields["labels"] = parse_labels(raw["labels"], "the labels parameter")
    if "outputs" in raw:
        names = raw["outputs"]
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ModelError(f"outputs must name one or more of the model's outputs, got {raw['outputs']!r}")
        fields["outputs"] = tuple(names)
    return TensorParams(**fields)


def _choice(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = raw[key]
    if value not in allowed:
        raise ModelError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _text(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


def _number(value: Any, key: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ModelError(f"{key} must be a number, got {value!r}")
    if positive and value <= 0:
        raise ModelError(f"{key} must be above 0, got {value!r}")
    return float(value)


def _triple(value: Any, key: str, positive: bool) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(values, list | tuple) or len(values) != 3:
        raise ModelError(f"{key} must be a number or three (one per channel), got {value!r}")
    first, second, third = (_number(v, key, positive) for v in values)
    return first, second, third


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, str) and "x" in value:
        value = value.lower().split("x")
        try:
            value = [int(side) for side in value]
        except ValueError:
            value = None
    sides = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(sides, list | tuple)
        or len(sides) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SIDE for s in sides)
    ):
        raise ModelError(f"size must be a side or [width, height], 1 to {MAX_SIDE} pixels; got {value!r}")
    return sides[0], sides[1]


def default_normalization(props: Mapping[str, str], image: ImageInput, name: str) -> Normalization:
    """The model's own preprocessing: its metadata's ``preprocess``, else by what made it or what it takes."""
    said = props.get("preprocess", "").strip()
    if said:
        if said in PRESETS:
            return PRESETS[said]
        try:
            fields = json.loads(said)
            if not isinstance(fields, dict) or set(fields) - NORMALIZATION_KEYS:
                raise ModelError(f"it takes an object of {', '.join(sorted(NORMALIZATION_KEYS))}")
            return tensor_params({"preprocess": "imagenet", **fields}).normalization(PRESETS["imagenet"])
        except (ValueError, ModelError) as exc:
            raise ModelError(
                f"{name}'s metadata 'preprocess' is not a preset or a JSON object of them: {exc}"
            ) from None
    if image.dtype == "uint8":
        return PRESETS["raw"]
    if props.get("author", "").startswith("Ultralytics"):
        return PRESETS["unit"]
    return PRESETS["imagenet"]


def metadata_size(props: Mapping[str, str]) -> tuple[int, int] | None:
    """A dynamic model's size from its metadata's ``imgsz`` ([h, w], as Ultralytics writes it), if it has one."""
    try:
        sides = json.loads(props.get("imgsz", "null"))
        return (int(sides[1]), int(sides[0])) if sides else None
    except (ValueError, TypeError, IndexError, KeyError):
        return None
