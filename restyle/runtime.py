"""Where models run: onnxruntime (CPU, or a CUDA GPU when present) or OpenVINO (CPU).

Both read the same ONNX graphs. OpenVINO is optional (``pip install "restyle[openvino]"``).
At float32 the two run these networks equally fast and agree to over 100 dB; OpenVINO's
bfloat16 (``precision="bf16"``, on CPUs with AVX-512 BF16 or AMX) is about 1.7x faster,
but only 27-51 dB from the float32 frames depending on style and picture
(bench/RESULTS.md), so it is a choice, never a default. Models see only the small
Session interface below.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx
import onnxruntime as ort

from restyle.errors import ModelError

log = logging.getLogger("restyle")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINO CPU"
Dim = int | str  # a fixed size, or a symbol for a dynamic one


class Session(Protocol):
    """A loaded model: named inputs in, outputs out."""

    provider: str
    inputs: list[tuple[str, list[Dim]]]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class Runtime:
    """How a worker runs its model: backend, device, threads and batch size."""

    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1
    batch_size: int = 0  # 0: 1 on CPU, 8 on GPU
    backend: str = "auto"  # auto | onnxruntime | openvino
    precision: str = "f32"  # f32 | bf16 (OpenVINO only)

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
    def backend_name(self) -> str:
        """onnxruntime, unless OpenVINO is asked for by name or needed for bf16."""
        wants_openvino = self.backend == "openvino" or (self.backend == "auto" and self.precision == "bf16")
        if not wants_openvino:
            if self.precision != "f32":
                raise ModelError(f"precision {self.precision} needs the openvino backend (--backend openvino)")
            return "onnxruntime"
        if importlib.util.find_spec("openvino") is None:
            raise ModelError('the openvino backend is not installed: pip install "restyle[openvino]"')
        return "openvino"

    @property
    def frames_per_call(self) -> int:
        if self.batch_size:
            return self.batch_size
        return 8 if self.backend_name == "onnxruntime" and self.providers[0] == CUDA else 1

    def session(self, model: onnx.ModelProto | Path, name: str) -> Session:
        """One session, made once per worker and reused for every frame."""
        try:
            if self.backend_name == "openvino":
                return _OpenVinoSession(model, self.threads, self.precision)
            return _OrtSession(model, self.threads, self.providers, strict=self.device == "cuda", name=name)
        except ModelError:
            raise
        except Exception as exc:  # both runtimes raise their own, untyped errors
            raise ModelError(f"cannot load model {name}: {exc}") from None


class _OrtSession:
    def __init__(self, model: onnx.ModelProto | Path, threads: int, providers: list[str], strict: bool, name: str):
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
        if self.provider != providers[0]:
            message = f"{providers[0]} could not start for {name}; running on {self.provider}"
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
    provider = OPENVINO

    def __init__(self, model: onnx.ModelProto | Path, threads: int, precision: str):
        import openvino

        core = openvino.Core()
        graph = core.read_model(model.SerializeToString(), b"") if isinstance(model, onnx.ModelProto) else core.read_model(str(model))
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
        results = self._request.infer(feeds)
        return [np.array(results[port]) for port in self._compiled.outputs]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restyle"


def default_layout(cores: int | None = None, memory_bytes: int | None = None, per_worker_bytes: int = 0) -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per core.

    Separate processes with one thread each beat one process with many threads for these
    convolution-heavy models on small core counts (onnxruntime, 640x360, 2 cores: 21.4
    against 19.4 fps), as long as memory holds a model's working set per worker.
    """
    cores = cores or os.cpu_count() or 1
    workers = cores
    if memory_bytes and per_worker_bytes:
        workers = max(1, min(workers, memory_bytes // per_worker_bytes))
    return workers, max(1, cores // workers)
