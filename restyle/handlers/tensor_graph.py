"""What the ``tensors`` handler reads from an ONNX file before it runs it: its image input, its outputs, its labels.

Everything here works on the graph alone (no session): the door checks a file with it, and the
loaded model takes its layout, size, class names and default preprocessing from it.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from restyle.errors import ModelError
from restyle.handlers.onnx_image import _dims

Dim = int | str

# The input types restyle can feed: floats, or the 0..255 pixels themselves.
INPUT_TYPES = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.DOUBLE: "float64",
    TensorProto.UINT8: "uint8",
}
NOT_NUMBERS = {TensorProto.UNDEFINED, TensorProto.STRING}
# ONNX metadata keys that name a model's classes, as exporters write them: a generic "labels" or "classes",
# PaddleClas's "character" (one per line), Ultralytics' "names" (a dict literal, on classification exports).
LABEL_KEYS = ("labels", "classes", "class_names", "character", "names")
LABEL_FILES = ("{stem}.labels.txt", "labels.txt")  # beside the model file: one name per line
# Output names and operators that say what an output is when no labels do.
CLASS_WORDS = ("prob", "logit", "class", "score", "label", "pred")
EMBEDDING_WORDS = ("embed", "feature", "feat", "vector", "descriptor")
CLASS_OPS = {"Softmax", "LogSoftmax", "Sigmoid"}
EMBEDDING_OPS = {"LpNormalization"}


@dataclass(frozen=True)
class ImageInput:
    """The model's one image input: its name, layout (NCHW or NHWC), size (None: dynamic), batch and type."""

    name: str
    layout: str
    width: int | None
    height: int | None
    batch: int | None  # None: any batch size
    dtype: str


@dataclass(frozen=True)
class TensorOutput:
    """One output: its name, its per-frame shape (without the batch), and what its name or operator hints."""

    name: str
    shape: tuple[Dim, ...]
    hint: str | None  # "classes", "embedding" or None

    @property
    def size(self) -> int | None:
        """The per-frame vector's length when the graph fixes it."""
        sizes = [d for d in self.shape if not (isinstance(d, int) and d == 1)]
        if not sizes:
            return 1
        return sizes[0] if len(sizes) == 1 and isinstance(sizes[0], int) and sizes[0] > 0 else None


def image_input(graph: onnx.ModelProto, name: str) -> ImageInput:
    """The graph's single image input (NCHW or NHWC, 3 channels); ModelError saying what is wrong otherwise."""
    initializers = {init.name for init in graph.graph.initializer}
    inputs = [i for i in graph.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        described = ", ".join(f"{i.name} {_shown(i)}" for i in inputs) or "none"
        raise ModelError(f"{name} is not an image model: it needs one image input, it has {len(inputs)} ({described})")
    value = inputs[0]
    if not value.type.HasField("tensor_type"):
        raise ModelError(f"{name}'s input {value.name} is not a tensor: an image model takes one (N, H, W, 3) tensor")
    dims = _dims(value)
    kind = value.type.tensor_type.elem_type
    if len(dims) != 4:
        raise ModelError(
            f"{name}'s input {value.name} is {_shown(value)}, not an image: restyle feeds (batch, 3, height, width) "
            "or (batch, height, width, 3)"
        )
    if kind not in INPUT_TYPES:
        raise ModelError(
            f"{name}'s input {value.name} is of type {TensorProto.DataType.Name(kind)}; "
            "restyle feeds images as float32, float16, float64 or uint8"
        )
    if dims[1] == 3 or (not isinstance(dims[1], int) and dims[3] != 3):
        layout, (height, width) = "NCHW", dims[2:4]
    elif dims[3] == 3:
        layout, (height, width) = "NHWC", dims[1:3]
    else:
        raise ModelError(
            f"{name}'s input {value.name} is {_shown(value)}: no side of 3 channels (NCHW or NHWC); "
            "restyle feeds RGB pictures"
        )
    fixed = [side if isinstance(side, int) and side > 0 else None for side in (width, height, dims[0])]
    return ImageInput(value.name, layout, fixed[0], fixed[1], fixed[2], INPUT_TYPES[kind])


def tensor_outputs(graph: onnx.ModelProto, name: str) -> list[TensorOutput]:
    """The graph's outputs, each a numeric tensor with a vector per frame; ModelError naming the first that is not."""
    producers = {out: node.op_type for node in graph.graph.node for out in node.output}
    found = []
    for value in graph.graph.output:
        if not value.type.HasField("tensor_type"):
            kind = value.type.WhichOneof("value") or "nothing"
            raise ModelError(
                f"{name}'s output {value.name} is a {kind.replace('_type', '')}, not a tensor: "
                "restyle records numeric tensors (a scikit-learn export? drop its ZipMap)"
            )
        if value.type.tensor_type.elem_type in NOT_NUMBERS:
            kind = TensorProto.DataType.Name(value.type.tensor_type.elem_type)
            raise ModelError(f"{name}'s output {value.name} holds {kind}, not numbers")
        dims = _dims(value)
        per_frame = tuple(dims[1:])
        big = [d for d in per_frame if not (isinstance(d, int) and d == 1)]
        if len(big) > 1:
            raise ModelError(
                f"{name}'s output {value.name} is {_shown(value)}: a {len(per_frame)}-D tensor per frame, not a vector "
                "(pictures? use --model onnx:FILE; a YOLO detector? --model yolo:FILE)"
            )
        found.append(TensorOutput(value.name, per_frame, _hint(value.name, producers.get(value.name))))
    if not found:
        raise ModelError(f"{name} has no outputs")
    return found


def _shown(value: onnx.ValueInfoProto) -> list[Dim]:
    """A shape for a message: symbols that exporters spell as whole formulas become '?'."""
    return [d if isinstance(d, int) or len(d) <= 16 else "?" for d in _dims(value)]


def _hint(output: str, op: str | None) -> str | None:
    lowered = output.lower()
    if op in CLASS_OPS or any(word in lowered for word in CLASS_WORDS):
        return "classes"
    if op in EMBEDDING_OPS or any(word in lowered for word in EMBEDDING_WORDS):
        return "embedding"
    return None


def metadata(graph: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in graph.metadata_props}


def labels_in(props: Mapping[str, str], name: str = "the model") -> tuple[str, ...] | None:
    """The class names the model's metadata gives, if any (see LABEL_KEYS)."""
    if props.get("names") and props.get("task", "classify") != "classify":
        return None  # an Ultralytics detector's names: its classes are boxes', not this output's
    for key in LABEL_KEYS:
        if props.get(key, "").strip():
            return parse_labels(props[key], f"{name}'s metadata {key!r}")
    return None


def labels_beside(path: Path) -> tuple[str, ...] | None:
    """The class names in a labels file beside the model (``NAME.labels.txt`` or ``labels.txt``), if one is there."""
    for pattern in LABEL_FILES:
        candidate = path.with_name(pattern.format(stem=path.stem))
        if candidate.is_file():
            try:
                return parse_labels(candidate.read_text(encoding="utf-8"), candidate.name)
            except (OSError, UnicodeDecodeError) as exc:
                raise ModelError(f"cannot read the labels in {candidate.name}: {exc}") from None
    return None


def parse_labels(text: str | list | tuple, where: str) -> tuple[str, ...]:
    """Names from a JSON list, a JSON or Python dict of index -> name, one name per line, or a comma-separated line."""
    value: object = text
    if isinstance(text, str):
        stripped = text.strip()
        value = None
        if stripped[:1] in "[{":
            for parse in (json.loads, ast.literal_eval):
                try:
                    value = parse(stripped)
                    break
                except (ValueError, SyntaxError):
                    continue
        if value is None:
            lines = [line.strip() for line in stripped.splitlines() if line.strip()]
            value = lines if len(lines) > 1 else [part.strip() for part in stripped.split(",")]
    if isinstance(value, dict):
        try:
            value = [value[key] for key in sorted(value, key=int)]
        except (ValueError, TypeError):
            raise ModelError(f"{where}: class names by index must have whole-number keys") from None
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, (str, int)) for v in value):
        raise ModelError(f"{where}: class names must be a list of names, one per class")
    return tuple(str(v) for v in value)
