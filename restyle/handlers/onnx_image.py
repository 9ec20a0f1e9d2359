"""Any image->image ONNX model: NCHW float input and output, values on 0..1 (or 0..255).

The output takes the model's size: a super-resolution network that doubles its input
makes a video twice as wide and high. A model with a fixed input size gets frames
resized to it; its output is then scaled by the model's own ratio of output to input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from restyle.errors import ModelError
from restyle.handlers.base import BaseHandler, LoadSpec, OutputKind, to_uint8
from restyle.jobspec import JobSpec
from restyle.runtime import Runtime, open_session

PROBE_SIDE = 64  # a dynamic model's scale is measured on a frame this size
STRIDE_SLACK = 8  # networks that downsample return sizes rounded up to their stride: crop, don't call it scaling


class OnnxImageHandler(BaseHandler):
    """Any image->image ONNX file the user brings (or an admin registered)."""

    name = "onnx"
    output = OutputKind.FRAMES  # at the model's own scale (output_size)
    file_fields = ("model_file",)
    registrable = True

    def check(self, spec: JobSpec) -> None:
        graph = read_graph(spec.model_file)
        name = Path(spec.model_file or "").name
        inputs = [i for i in graph.graph.input if i.name not in {init.name for init in graph.graph.initializer}]
        if len(inputs) != 1 or len(_dims(inputs[0])) != 4:
            raise ModelError(
                f"{name} is not an image->image model: it needs one NCHW input, it has "
                f"{len(inputs)} inputs of ranks {[len(_dims(i)) for i in inputs]}"
            )
        channels = _dims(inputs[0])[1]
        if isinstance(channels, int) and channels != 3:
            raise ModelError(f"{name} takes {channels} channels; restyle feeds RGB (3 channels)")
        outputs = list(graph.graph.output)
        if not outputs or len(_dims(outputs[0])) != 4:
            raise ModelError(
                f"{name} does not output pictures: "
                f"its first output has rank {len(_dims(outputs[0])) if outputs else 0}, "
                "not NCHW (a detector? use --model yolo:FILE)"
            )
        out_channels = _dims(outputs[0])[1]
        if isinstance(out_channels, int) and out_channels != 3:
            raise ModelError(f"{name} outputs {out_channels} channels; restyle writes RGB (3 channels)")
        value_range = spec.params.get("value_range", 1.0)
        if not isinstance(value_range, (int, float)) or not 0 < value_range <= 65535:
            raise ModelError(f"value_range must be a number above 0 (1 or 255), got {value_range!r}")

    def load_spec(self, spec: JobSpec) -> LoadSpec:
        return LoadSpec(self.name, str(Path(spec.model_file or "").resolve()))

    def params(self, spec: JobSpec) -> OnnxParams:
        return OnnxParams(float(spec.params.get("value_range", 1.0)))

    def output_size(self, spec: JobSpec, width: int, height: int) -> tuple[int, int]:
        """The size the video comes out at: the pipeline asks before it plans the encoding.

        From the graph's static shapes where both sides of its input and output are fixed; a graph with
        dynamic sizes is loaded and measured on a small frame (:meth:`OnnxImageModel.output_size`).
        """
        graph = read_graph(spec.model_file)
        inputs = [i for i in graph.graph.input if i.name not in {init.name for init in graph.graph.initializer}]
        (_, _, ih, iw), (_, _, oh, ow) = _dims(inputs[0]), _dims(graph.graph.output[0])
        if all(isinstance(side, int) and side > 0 for side in (ih, iw, oh, ow)):
            return _scaled(width, height, (iw, ih), (ow, oh))
        return self.load(self.load_spec(spec), Runtime("cpu", threads=1)).output_size(width, height)

    def load(self, load: LoadSpec, runtime: Runtime) -> OnnxImageModel:
        return OnnxImageModel(Path(load.weights or ""), runtime)


@dataclass(frozen=True)
class OnnxParams:
    value_range: float = 1.0  # the model's pixel values run 0..value_range


class OnnxImageModel:
    """A user's model, loaded once; value range and strength are per call."""

    def __init__(self, path: Path, runtime: Runtime):
        if not path.is_file():
            raise ModelError(f"ONNX model not found: {path}")
        self._session = open_session(runtime, path, path.name)
        self._name = path.name
        ((self._input, shape),) = self._session.inputs[:1]
        self._fixed_batch = isinstance(shape[0], int)
        self._fixed_size = (shape[3], shape[2]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}
        self.output = OutputKind.FRAMES
        self.description = f"{path.name} on {self._session.provider}"

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """What comes out for a width x height frame: the model's ratio of output to input, applied to it.

        The ratio is measured once on a small black frame (the model's own size, if fixed),
        so a heavy network is not run on a whole frame just to learn its scale.
        """
        if (width, height) not in self._sizes:
            pw, ph = self._fixed_size or (PROBE_SIDE, PROBE_SIDE)
            oh, ow = self._raw(np.zeros((1, ph, pw, 3), np.uint8), 1.0).shape[2:4]
            self._sizes[(width, height)] = _scaled(width, height, (pw, ph), (ow, oh))
        return self._sizes[(width, height)]

    def predict(self, frames: np.ndarray, params: OnnxParams) -> np.ndarray:
        value_range = params.value_range
        h, w = frames.shape[1:3]
        ow, oh = self.output_size(w, h)
        if self._fixed_batch:
            raw = np.concatenate([self._raw(frames[i : i + 1], value_range) for i in range(len(frames))])
        else:
            raw = self._raw(frames, value_range)
        images = to_uint8(raw.transpose(0, 2, 3, 1), value_range)
        if images.shape[1:3] != (oh, ow):
            if 0 <= images.shape[1] - oh < STRIDE_SLACK and 0 <= images.shape[2] - ow < STRIDE_SLACK:
                images = images[:, :oh, :ow]
            else:
                images = np.stack([_resize(img, (ow, oh)) for img in images])
        return images

    def _raw(self, frames: np.ndarray, value_range: float) -> np.ndarray:
        h, w = frames.shape[1:3]
        x = frames if self._fixed_size is None else np.stack([_resize(f, self._fixed_size) for f in frames])
        x = x.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(value_range / 255.0)
        out = self._session.run({self._input: np.ascontiguousarray(x)})[0]
        if out.ndim != 4 or out.shape[1] != 3:
            raise ModelError(
                f"{self._name} returned shape {list(out.shape)} for a {w}x{h} frame; restyle needs NCHW with 3 channels"
            )
        return out


def read_graph(model_file: str | None) -> onnx.ModelProto:
    """The ONNX graph in ``model_file``, checked to be one; ModelError with the reason if not."""
    path = Path(model_file or "")
    if not model_file or not path.is_file():
        raise ModelError(f"ONNX model not found: {model_file or '(no file given)'}")
    try:
        graph = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(graph)
    except Exception as exc:  # noqa: BLE001 - onnx raises several untyped errors for files that are not models
        raise ModelError(f"{path.name} is not a usable ONNX model: {str(exc).splitlines()[0][:200]}") from None
    return graph


def _scaled(width: int, height: int, probe_in: tuple[int, int], probe_out: tuple[int, int]) -> tuple[int, int]:
    """The output size for a width x height frame, from the model's (width, height) in and out on a probe."""
    (pw, ph), (ow, oh) = probe_in, probe_out
    if 0 <= oh - ph < STRIDE_SLACK and 0 <= ow - pw < STRIDE_SLACK:
        return width, height
    return max(1, round(width * ow / pw)), max(1, round(height * oh / ph))


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC))
