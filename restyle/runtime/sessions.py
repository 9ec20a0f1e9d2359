"""Sessions: a loaded network, on OpenVINO or onnxruntime, behind one small interface.

:func:`open_session` builds the one :func:`restyle.runtime.base.choose` picks; a session
is complete when built (its provider and precision are given to its constructor).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np

from restyle import machine
from restyle.errors import ModelError
from restyle.runtime import fidelity
from restyle.runtime.base import OPENVINO, TENSORRT, Choice, Runtime, cache_dir, providers

if TYPE_CHECKING:  # onnx is imported where a graph is edited, not by a worker that only runs one: 1 s of start-up
    import onnx

log = logging.getLogger("restyle")

Dim = int | str  # a fixed size, or a symbol for a dynamic one
Fixed = dict[str, np.ndarray]  # inputs given once for a session (the style weights of one job)


class Session(Protocol):
    """A loaded model: named inputs in, outputs out.

    ``pixels`` is True when the session was asked for :class:`Pixels` and does the
    conversion in its graph: it then takes and gives uint8 NHWC pictures.
    """

    provider: str
    precision: str  # what it runs at: f32 | bf16 | int8 | fp16 (check: not decided yet)
    inputs: list[tuple[str, list[Dim]]]
    pixels: bool
    metadata: dict[str, str]  # the model file's own (ONNX metadata_props): a detector's class names, say

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class Pixels:
    """Asks a session to take uint8 NHWC pictures and give them back, converting inside the graph.

    ``layout`` is the network's own layout for its image input and first output;
    ``value_range`` its pixel scale (1: values 0..1). OpenVINO builds the conversion into
    the compiled graph (PrePostProcessor): no float copy, transpose or rounding in numpy.
    """

    input: str
    layout: str = "NCHW"
    value_range: float = 1.0


OPENVINO_CONVERTER = "openvino.tools.ovc"


def import_openvino() -> ModuleType:
    """The openvino module, imported without its model converter (``openvino.tools.ovc``), which restyle never
    uses: importing that sends a usage event to Google Analytics (openvino_telemetry, on by default) from a
    Python process it spawns for the purpose: ~0.35 CPU s of every worker's start, and a call home from a
    self-hosted service. ``openvino/__init__.py`` imports the converter under ``except ImportError``; a later
    explicit import of it still works."""
    if "openvino" not in sys.modules:  # then neither is its converter
        sys.modules[OPENVINO_CONVERTER] = None  # type: ignore[assignment] - None: importing it raises ImportError
        try:
            import openvino  # noqa: F401 - imported for sys.modules
        finally:
            del sys.modules[OPENVINO_CONVERTER]
    return sys.modules["openvino"]


def open_session(
    runtime: Runtime,
    model: onnx.ModelProto | Path,
    name: str,
    pixels: Pixels | None = None,
    choice: Choice | None = None,
    fixed: Fixed | None = None,
) -> Session:
    """One session for network ``name`` on ``runtime``, made once per worker and reused for every frame;
    ``choice``: the backend and precision, where the caller chose them for a job's cases (else ``runtime``'s
    choice for the whole network); ``fixed``: inputs given once, as constants of the compiled graph (OpenVINO
    only: its constant folding then runs what depends on them once, not per frame)."""
    choice = choice or runtime.choose(name)
    if fixed and choice.backend != "openvino":
        raise ModelError(f"{name}: fixed inputs ({', '.join(fixed)}) need the openvino backend")
    try:
        if choice.backend == "openvino":
            return _openvino(runtime, model, name, choice.precision, pixels, fixed or {})
        found = providers(runtime, machine.here())
        if choice.precision in ("fp16", "check"):  # a GPU with TensorRT

            def make(precision: str) -> _OrtSession:
                chain = found if precision == "f32" else [(TENSORRT, _tensorrt_options()), *found]
                return _OrtSession(model, runtime.threads, chain, strict=False, name=name, precision=precision)

            return _CheckedSession(make, name, "fp16") if choice.precision == "check" else make("fp16")
        return _OrtSession(model, runtime.threads, found, strict=runtime.device == "cuda", name=name)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - both runtimes raise their own, untyped errors
        raise ModelError(f"cannot load model {name}: {exc}") from None


def _openvino(
    runtime: Runtime, model: onnx.ModelProto | Path, name: str, precision: str, pixels: Pixels | None, fixed: Fixed
) -> Session:
    threads = runtime.threads
    if precision == "f32":
        return _OpenVinoSession(model, threads, "f32", pixels, fixed=fixed)
    if precision == "int8":
        # The int8 arithmetic is in the graph (QDQ): OpenVINO runs those convolutions in int8, the float part at the
        # hint's precision: bf16 on a CPU with it (its own fidelity rows: the int8 classes vnni+bf16 and amx).
        floats = machine.here().int8_float_part
        note = " (float part bf16)" if floats == "bf16" else ""
        session = _OpenVinoSession(model, threads, floats, pixels, label="int8", note=note, fixed=fixed)
        if not session.quantized:
            raise ModelError(f"{name} is to run at int8 but was given its float graph (load quantize.int8_file)")
        return session
    try:
        if precision == "check":
            return _CheckedSession(lambda p: _OpenVinoSession(model, threads, p, pixels, fixed=fixed), name)
        return _OpenVinoSession(model, threads, precision, pixels, fixed=fixed)
    except Exception as exc:  # noqa: BLE001 - some graphs have no bf16 kernels in some OpenVINO versions
        log.warning(
            "%s cannot be compiled at bf16 (%s); running it at f32", name, str(exc).strip().splitlines()[-1][:200]
        )
        note = " (bf16 does not compile for this network)"
        return _OpenVinoSession(model, threads, "f32", pixels, note=note, fixed=fixed)


class _OrtSession:
    pixels = False  # the caller converts; onnxruntime runs the graph as it is

    def __init__(
        self,
        model: onnx.ModelProto | Path,
        threads: int,
        providers: list,
        strict: bool,
        name: str,
        precision: str = "f32",
    ):
        import onnxruntime as ort

        self.precision = precision
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads would steal the core that decoding and encoding run on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = str(model) if isinstance(model, Path) else model.SerializeToString()
        self._session = ort.InferenceSession(source, options, providers=providers)
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.provider = self._session.get_providers()[0]
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if self.provider != wanted:
            message = f"{wanted} could not start for {name}; running on {self.provider}"
            if strict:
                raise ModelError(message + " (check the CUDA and cuDNN libraries, or use --device cpu)")
            log.warning(message)
        self.inputs = [(i.name, list(i.shape)) for i in self._session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._session.run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors are untyped; the same frames would fail again
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in feeds.items())
            raise ModelError(f"the model failed on input {shapes}: {str(exc).splitlines()[0][:300]}") from None


class _OpenVinoSession:
    def __init__(
        self,
        model: onnx.ModelProto | Path,
        threads: int,
        precision: str,
        pixels: Pixels | None = None,
        label: str | None = None,
        note: str = "",
        fixed: Fixed | None = None,
    ):
        """``label``: the precision it reports, where the graph carries its own (int8's QDQ; ``precision`` is then
        its float part's);
        ``fixed``: inputs made constants of the graph."""
        core = import_openvino().Core()
        graph = (
            core.read_model(str(model)) if isinstance(model, Path) else core.read_model(model.SerializeToString(), b"")
        )
        framework = graph.get_rt_info()["framework"] if graph.has_rt_info(["framework"]) else {}
        self.metadata = {key: value.astype(str) for key, value in framework.items()}
        # OpenVINO reads QuantizeLinear/DequantizeLinear pairs as FakeQuantize: the graph carries int8 arithmetic.
        self.quantized = any(op.get_type_name() == "FakeQuantize" for op in graph.get_ops())
        for input_name, value in (fixed or {}).items():
            _fix(graph, input_name, value)
        if pixels is not None:
            graph = _pixels_in_graph(graph, pixels)
        self.pixels = pixels is not None
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,  # several worker processes share the cores
            "INFERENCE_PRECISION_HINT": precision,  # OpenVINO would pick bf16 by itself where the CPU has it
            "CACHE_DIR": str(cache_dir() / "openvino"),  # compiled once per machine, not once per worker start
        }
        self._compiled = core.compile_model(graph, "CPU", config)
        # What OpenVINO runs at, not what it was asked: a bf16 hint on a CPU without bf16 runs at f32.
        ran = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = label or (ran if ran in ("f32", "bf16") else precision)
        self.provider = f"{OPENVINO} {self.precision}{note}"
        self._request = self._compiled.create_infer_request()
        self.inputs = [
            (
                port.get_any_name(),
                [d.get_length() if d.is_static else f"d{i}" for i, d in enumerate(port.get_partial_shape())],
            )
            for port in self._compiled.inputs
        ]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            results = self._request.infer(feeds)
        except Exception as exc:  # noqa: BLE001 - OpenVINO's errors are untyped too
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in feeds.items())
            raise ModelError(f"the model failed on input {shapes}: {str(exc).splitlines()[0][:300]}") from None
        # infer() hands out views of the request's own buffers, overwritten by the next call: copy once.
        return [np.array(results[port]) for port in self._compiled.outputs]


def _fix(graph, name: str, value: np.ndarray) -> None:
    """The graph's input ``name`` replaced by a constant ``value`` (in its declared type)."""
    import_openvino()
    import openvino.opset13 as ops

    found = [p for p in graph.get_parameters() if name in p.output(0).get_names() or p.get_friendly_name() == name]
    if not found:
        raise ModelError(f"the graph has no input named {name} to fix")
    parameter = found[0]
    constant = ops.constant(np.asarray(value, dtype=parameter.get_element_type().to_dtype()))
    for target in list(parameter.output(0).get_target_inputs()):
        target.replace_source_output(constant.output(0))
    graph.remove_parameter(parameter)
    graph.validate_nodes_and_infer_types()


def _pixels_in_graph(graph, pixels: Pixels):
    """uint8 NHWC in and out: OpenVINO's PrePostProcessor does the scaling, layout and rounding."""
    openvino = import_openvino()
    import openvino.opset13 as ops
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(graph)
    image = ppp.input(pixels.input)
    image.tensor().set_element_type(openvino.Type.u8).set_layout(openvino.Layout("NHWC"))
    image.model().set_layout(openvino.Layout(pixels.layout))
    image.preprocess().convert_element_type(openvino.Type.f32).scale(255.0 / pixels.value_range)
    out = ppp.output(0)
    out.model().set_layout(openvino.Layout(pixels.layout))
    out.tensor().set_layout(openvino.Layout("NHWC"))

    def to_uint8(node):  # the same arithmetic as handlers.base.to_uint8: scale, round half up, clip
        x = ops.multiply(node, ops.constant(np.float32(255.0 / pixels.value_range)))
        x = ops.clamp(ops.add(x, ops.constant(np.float32(0.5))), 0.0, 255.0)
        return ops.convert(ops.floor(x), "u8").output(0)

    out.postprocess().custom(to_uint8)
    return ppp.build()


class _CheckedSession:
    """The fast precision if the first call's output passes the fidelity bar against f32's, else f32; decided once."""

    def __init__(self, make: Callable[[str], Session], name: str, fast: str = "bf16"):
        self._make, self._name, self._fast = make, name, fast
        self._session: Session = make(fast)
        self._decided = False
        self.precision = "check"  # until the first call decides: then the fast one or f32
        self.inputs, self.pixels, self.metadata = self._session.inputs, self._session.pixels, self._session.metadata
        self.provider = f"{self._session.provider} ({fast} or f32, decided on the first frame)"

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self._session.run(feeds)
        if self._decided:
            return out
        exact_session = self._make("f32")
        exact = exact_session.run(feeds)
        verdict = fidelity.compare_outputs(exact[0], out[0], self.pixels)
        self._decided = True
        if verdict.passed:
            log.info("%s: %s passed the fidelity bar on its first frame (%s)", self._name, self._fast, verdict.summary)
            self.provider = (
                f"{self._session.provider} (passed the {self._fast} check on the first frame: {verdict.summary})"
            )
            self.precision = self._fast
            return out
        log.info(
            "%s: %s failed the fidelity bar on its first frame (%s); running f32",
            self._name,
            self._fast,
            verdict.summary,
        )
        self._session, self.precision = exact_session, "f32"
        self.provider = (
            f"{exact_session.provider} ({self._fast} failed the check on the first frame: {verdict.summary})"
        )
        return exact


def _tensorrt_options() -> dict[str, object]:
    cache = cache_dir() / "tensorrt"
    cache.mkdir(parents=True, exist_ok=True)
    return {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
