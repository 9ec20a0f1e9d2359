"""Any ONNX model whose outputs are tensors: a record per frame, its top-k classes or its embedding.

The model takes one image (NCHW or NHWC, 3 channels, a fixed size or any) and gives, per frame,
a vector per output. A classifier's vector becomes its ``top_k`` classes with their scores (and
their names, where the model names its classes: in its metadata, a labels file beside it, or the
job's ``labels``); an embedding model's becomes ``{"embedding": [...]}``, L2-normalized unless
asked not to. Frames are resized to the model's input and normalized as ``preprocess`` says.

Per-call parameters (``JobSpec.params``), all optional:

* ``preprocess``: ``imagenet`` (RGB on 0..1, ImageNet mean and std; the default), ``unit`` (RGB on
  0..1), ``tf`` (RGB on -1..1), ``caffe`` (BGR on 0..255 less the ImageNet means), ``raw`` (RGB on
  0..255). A model may name its own in its metadata (key ``preprocess``: a name or a JSON object of
  the fields below); Ultralytics exports default to ``unit``, uint8 inputs to ``raw``.
* ``scale``, ``mean``, ``std``, ``channels`` (``rgb``/``bgr``): override the preset's; each pixel
  becomes ``(value * scale - mean) / std``, with mean and std in the model's channel order.
* ``resize``: ``stretch`` (default) or ``crop`` (the frame's centre, at the model's aspect);
  ``size``: for a model of any input size, the size to feed (default 224, or the metadata's ``imgsz``).
* ``output``: ``auto`` (default), ``classes`` or ``embedding``. Auto: classes when the model names
  them or its output says so (a Softmax, a name like ``probs``), an embedding when its name or
  operator says so, else classes up to 1000 values and an embedding beyond.
* ``top_k`` (5), ``softmax`` (``auto``: applied unless the scores are already on 0..1),
  ``normalize`` (true: embeddings of length 1), ``labels`` (a list, or names separated by commas),
  ``outputs`` (the names of the outputs to record; default all).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from restyle.errors import ModelError
from restyle.handlers.base import BaseHandler, LoadSpec, OutputKind, Records
from restyle.handlers.onnx_image import read_graph
from restyle.handlers.tensor_graph import (
    LABEL_KEYS,
    ImageInput,
    TensorOutput,
    image_input,
    labels_beside,
    labels_in,
    metadata,
    tensor_outputs,
)
from restyle.handlers.tensor_params import (
    DEFAULT_SIZE,
    EMBEDDING_ABOVE,
    TensorParams,
    default_normalization,
    metadata_size,
    tensor_params,
)
from restyle.jobspec import JobSpec
from restyle.runtime import Runtime, open_session


class TensorsHandler(BaseHandler):
    """Any ONNX image model with tensor outputs (classifiers, embedding models): records out."""

    name = "tensors"
    output = OutputKind.RECORDS
    file_fields = ("model_file",)
    registrable = True

    @classmethod
    def recognizes(cls, metadata: Mapping[str, str]) -> bool:
        """A file that names its classes the way classifiers do (an Ultralytics export: only a classifier's)."""
        if "names" in metadata:
            return metadata.get("task") == "classify"
        return any(metadata.get(key) for key in LABEL_KEYS)

    def check(self, spec: JobSpec) -> None:
        params = tensor_params(spec.params)
        graph = read_graph(spec.model_file)
        name = Path(spec.model_file or "").name
        image = image_input(graph, name)
        if params.size and image.width and params.size != (image.width, image.height):
            raise ModelError(f"{name} takes {image.width}x{image.height} pictures: it cannot be fed size {params.size}")
        outputs = _chosen(tensor_outputs(graph, name), params.outputs, name)
        default_normalization(metadata(graph), image, name)  # a model's own 'preprocess' must be readable too
        labels = params.labels or labels_in(metadata(graph), name)
        if labels:
            _labels_fit(labels, outputs, name)

    def params(self, spec: JobSpec) -> TensorParams:
        return tensor_params(spec.params)

    def load_spec(self, spec: JobSpec) -> LoadSpec:
        return LoadSpec(self.name, str(Path(spec.model_file or "").resolve()))

    def load(self, load: LoadSpec, runtime: Runtime) -> TensorsModel:
        return TensorsModel(Path(load.weights or ""), runtime)


def _chosen(outputs: list[TensorOutput], names: tuple[str, ...] | None, model: str) -> list[TensorOutput]:
    if not names:
        return outputs
    by_name = {out.name: out for out in outputs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ModelError(f"{model} has no output {missing[0]!r}; its outputs are {', '.join(by_name)}")
    return [by_name[n] for n in names]


def _labels_fit(labels: tuple[str, ...], outputs: list[TensorOutput], model: str) -> None:
    """Some output must be as long as the names are many (where the graph fixes its length)."""
    sizes = [out.size for out in outputs]
    if None not in sizes and len(labels) not in sizes:
        raise ModelError(f"{len(labels)} class names, but {model}'s outputs give {sizes} values per frame")


class TensorsModel:
    """One ONNX image model, loaded once; the preprocessing, top-k and output kind are per call."""

    output = OutputKind.RECORDS

    def __init__(self, path: Path, runtime: Runtime):
        graph = read_graph(str(path))
        self._name = path.name
        self.input: ImageInput = image_input(graph, path.name)
        self.outputs: list[TensorOutput] = tensor_outputs(graph, path.name)
        props = metadata(graph)
        self.labels = labels_in(props, path.name) or labels_beside(path)
        self.normalization = default_normalization(props, self.input, path.name)
        self.default_size = metadata_size(props) or (DEFAULT_SIZE, DEFAULT_SIZE)
        self._session = open_session(runtime, path, path.name)
        size = f"{self.input.width}x{self.input.height}" if self.input.width else "any size"
        self.description = f"{path.name} ({self.input.layout} {size}) on {self._session.provider}"

    def predict(self, frames: np.ndarray, params: TensorParams) -> Records:
        x = self._prepare(frames, params)
        results = self._run(x)
        chosen = [out.name for out in _chosen(self.outputs, params.outputs, self._name)]
        labels = params.labels or self.labels
        parts: dict[str, list[dict]] = {}
        for out, values in zip(self.outputs, results, strict=True):
            if out.name in chosen:
                parts[out.name] = self._parts(out, values[: len(frames)], params, labels)
        if len(chosen) == 1:
            return parts[chosen[0]]
        return [{"outputs": {name: parts[name][i] for name in chosen}} for i in range(len(frames))]

    def _prepare(self, frames: np.ndarray, params: TensorParams) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB frames as the model's input: resized, normalized, in its layout and type."""
        size = (self.input.width, self.input.height) if self.input.width else params.size or self.default_size
        norm = params.normalization(self.normalization)
        x = np.stack([_resized(frame, size, params.resize) for frame in frames]).astype(np.float32)
        if norm.channels == "bgr":
            x = x[..., ::-1]
        x = (x * np.float32(norm.scale) - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
        if self.input.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        if self.input.dtype == "uint8":
            x = np.clip(np.rint(x), 0, 255)
        return np.ascontiguousarray(x.astype(self.input.dtype))

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for the whole batch; a model of a fixed batch size gets it in slices (the last one padded)."""
        step = self.input.batch
        if step is None:
            return self._session.run({self.input.name: x})
        slices = []
        for start in range(0, len(x), step):
            part = x[start : start + step]
            if len(part) < step:
                part = np.concatenate([part, np.repeat(part[-1:], step - len(part), axis=0)])
            slices.append(self._session.run({self.input.name: part}))
        return [np.concatenate([s[i] for s in slices]) for i in range(len(slices[0]))]

    def _parts(
        self, out: TensorOutput, values: np.ndarray, params: TensorParams, labels: tuple[str, ...] | None
    ) -> list[dict]:
        """Each frame's record for one output: its top classes, its embedding, or its one value."""
        vectors = values.reshape(len(values), -1).astype(np.float64)
        size = vectors.shape[1]
        if not np.isfinite(vectors).all():  # JSON has no NaN; and a model that gives it is fed the wrong numbers
            raise ModelError(f"{self._name} gave NaN or infinite values on its output {out.name}: check its preprocess")
        if size == 1 and params.output == "auto":
            return [{"value": _short(v[0])} for v in vectors]
        named = labels if labels and len(labels) == size else None
        if labels and named is None and len(self.outputs) == 1:
            raise ModelError(f"{len(labels)} class names, but {self._name} gives {size} values per frame")
        kind = params.output
        if kind == "auto" and named:
            kind = "classes"
        elif kind == "auto":
            kind = out.hint or ("embedding" if size > EMBEDDING_ABOVE else "classes")
        if kind == "embedding":
            return [{"embedding": _embedding(v, params.normalize)} for v in vectors]
        return [{"top": _top(v, params, named)} for v in vectors]


def _resized(frame: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``frame`` at ``size`` (w, h): stretched, or its centre cut to the size's aspect first (``crop``)."""
    h, w = frame.shape[:2]
    if (w, h) == size:
        return frame
    if mode == "crop":
        scale = max(size[0] / w, size[1] / h)
        cw, ch = min(w, round(size[0] / scale)), min(h, round(size[1] / scale))
        left, top = (w - cw) // 2, (h - ch) // 2
        frame, (w, h) = frame[top : top + ch, left : left + cw], (cw, ch)
    shrinking = size[0] < w or size[1] < h
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _top(scores: np.ndarray, params: TensorParams, labels: tuple[str, ...] | None) -> list[dict]:
    """The ``top_k`` classes, best first; softmax applied to logits (``auto``: unless every score is on 0..1)."""
    probabilities = params.softmax == "false" or (params.softmax == "auto" and scores.min() >= 0 and scores.max() <= 1)
    if not probabilities:
        exp = np.exp(scores - scores.max())
        scores = exp / exp.sum()
    order = np.argsort(-scores, kind="stable")[: params.top_k]
    return [{"label": labels[i] if labels else int(i), "index": int(i), "score": _short(scores[i])} for i in order]


def _embedding(vector: np.ndarray, normalize: bool) -> list[float]:
    if normalize:
        norm = float(np.linalg.norm(vector))
        vector = vector / norm if norm > 0 else vector
    return [_short(v) for v in vector]


def _short(value: float) -> float:
    """A float32's worth of digits, not float64's: shorter JSON, nothing lost that the model computed."""
    return float(f"{value:.7g}")
