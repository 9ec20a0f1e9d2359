"""Detectors in the Ultralytics YOLO export convention: records out, one per frame.

An Ultralytics ONNX export carries its class names and input size in the file's
metadata (``names``, ``imgsz``); its output is (batch, 4 + classes, anchors): box centre,
width and height in input pixels, then one score per class. Frames are letterboxed to
``imgsz`` (aspect kept, grey bars), boxes mapped back to the frame's pixels, and
overlapping boxes of a class merged by non-maximum suppression.

Per-call parameters (``JobSpec.params``): ``confidence`` (default 0.25), ``iou`` (0.45).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from restyle.errors import ModelError
from restyle.handlers.base import BaseHandler, LoadSpec, OutputKind, Records
from restyle.jobspec import JobSpec
from restyle.runtime import Runtime, open_session

LETTERBOX_GREY = 114  # Ultralytics' padding value


class YoloHandler(BaseHandler):
    """Ultralytics YOLO exports: records out. A file whose metadata names its classes is one."""

    name = "yolo"
    output = OutputKind.RECORDS
    file_fields = ("model_file",)
    registrable = True

    @classmethod
    def recognizes(cls, metadata: Mapping[str, str]) -> bool:
        return "names" in metadata

    def check(self, spec: JobSpec) -> None:
        from restyle.handlers.onnx_image import _dims, read_graph  # onnx: the checking side only

        graph = read_graph(spec.model_file)
        name = Path(spec.model_file or "").name
        metadata = {p.key: p.value for p in graph.metadata_props}
        classes = class_names(metadata, name)
        inputs = [i for i in graph.graph.input if i.name not in {init.name for init in graph.graph.initializer}]
        if len(inputs) != 1 or len(_dims(inputs[0])) != 4:
            raise ModelError(f"{name} is not a YOLO detector: it needs one NCHW image input")
        outputs = list(graph.graph.output)
        dims = _dims(outputs[0]) if outputs else []
        if len(dims) != 3 or (isinstance(dims[1], int) and dims[1] != 4 + len(classes)):
            raise ModelError(
                f"{name} is not a YOLO detector: its output is {dims}, not (batch, 4 + {len(classes)} classes, boxes)"
            )
        for key, default in (("confidence", 0.25), ("iou", 0.45)):
            value = spec.params.get(key, default)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ModelError(f"{key} must be a number from 0 to 1, got {value!r}")

    def params(self, spec: JobSpec) -> YoloParams:
        return YoloParams(float(spec.params.get("confidence", 0.25)), float(spec.params.get("iou", 0.45)))

    def load_spec(self, spec: JobSpec) -> LoadSpec:
        return LoadSpec(self.name, str(Path(spec.model_file or "").resolve()))

    def load(self, load: LoadSpec, runtime: Runtime) -> YoloModel:
        return YoloModel(Path(load.weights or ""), runtime)


@dataclass(frozen=True)
class YoloParams:
    confidence: float = 0.25  # boxes scored under it are dropped
    iou: float = 0.45  # overlap over which boxes of a class are merged


def class_names(metadata: dict[str, str], name: str = "the model") -> list[str]:
    """The class names from an Ultralytics export's ``names`` metadata (a Python dict literal)."""
    try:
        names = ast.literal_eval(metadata["names"])
        return [str(names[i]) for i in range(len(names))]
    except (KeyError, ValueError, SyntaxError, TypeError):
        raise ModelError(
            f"{name} has no class names in its metadata ('names'): is it an Ultralytics YOLO export?"
        ) from None


class YoloModel:
    output = OutputKind.RECORDS

    def __init__(self, path: Path, runtime: Runtime):
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path}")
        self._session = open_session(runtime, path, path.name)
        metadata = self._session.metadata  # read by the runtime: a worker never imports onnx (1 s of start-up)
        self.classes = class_names(metadata, path.name)
        try:
            size = ast.literal_eval(metadata.get("imgsz", "[640, 640]"))
            self.input_size = (int(size[1]), int(size[0]))  # (width, height); imgsz is [h, w]
        except (ValueError, SyntaxError, TypeError, IndexError):
            raise ModelError(
                f"{path.name} has an unreadable 'imgsz' in its metadata: {metadata.get('imgsz')!r}"
            ) from None
        self._input = self._session.inputs[0][0]
        self.description = (
            f"{path.name} ({len(self.classes)} classes, {self.input_size[0]}x{self.input_size[1]}) "
            f"on {self._session.provider}"
        )

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height

    def predict(self, frames: np.ndarray, params: YoloParams) -> Records:
        confidence, iou = params.confidence, params.iou
        records = []
        for frame in frames:  # exports are often fixed at batch 1
            x, scale, (left, top) = letterbox(frame, self.input_size)
            out = self._session.run({self._input: x})[0][0]  # (4 + classes, anchors)
            records.append(
                {"boxes": self._boxes(out, confidence, iou, scale, left, top, frame.shape[1], frame.shape[0])}
            )
        return records

    def _boxes(
        self, out: np.ndarray, confidence: float, iou: float, scale: float, left: int, top: int, width: int, height: int
    ) -> list[dict]:
        scores = out[4:].T  # (anchors, classes)
        best = scores.argmax(axis=1)
        best_score = scores[np.arange(len(best)), best]
        keep = best_score >= confidence
        if not keep.any():
            return []
        cx, cy, w, h = out[:4, keep]
        x1 = np.clip((cx - w / 2 - left) / scale, 0, width)
        y1 = np.clip((cy - h / 2 - top) / scale, 0, height)
        x2 = np.clip((cx + w / 2 - left) / scale, 0, width)
        y2 = np.clip((cy + h / 2 - top) / scale, 0, height)
        classes, found = best[keep], best_score[keep]
        boxes = []
        for cls in np.unique(classes):  # suppression within a class only, as Ultralytics does
            mine = np.flatnonzero(classes == cls)
            rects = [[float(x1[i]), float(y1[i]), float(x2[i] - x1[i]), float(y2[i] - y1[i])] for i in mine]
            for k in np.asarray(cv2.dnn.NMSBoxes(rects, found[mine].tolist(), confidence, iou)).reshape(-1):
                i = mine[int(k)]
                boxes.append(
                    {
                        "class": self.classes[int(cls)],
                        "class_id": int(cls),
                        "score": round(float(found[i]), 4),
                        "box": [round(float(v), 1) for v in (x1[i], y1[i], x2[i], y2[i])],
                    }
                )
        return sorted(boxes, key=lambda b: -b["score"])


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``frame`` scaled into ``size`` (w, h) with its aspect kept and grey bars: NCHW float on 0..1."""
    h, w = frame.shape[:2]
    scale = min(size[0] / w, size[1] / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    left, top = (size[0] - nw) // 2, (size[1] - nh) // 2
    canvas = np.full((size[1], size[0], 3), LETTERBOX_GREY, np.uint8)
    canvas[top : top + nh, left : left + nw] = resized
    x = canvas.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1 / 255)
    return np.ascontiguousarray(x), scale, (left, top)
