"""Where models run: onnxruntime sessions on the CPU or, when present, a CUDA GPU."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import onnxruntime as ort

from restyle.errors import ModelError

log = logging.getLogger("restyle")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Runtime:
    """How a worker runs its model: device, threads and batch size."""

    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1
    batch_size: int = 0  # 0: 1 on CPU, 8 on GPU

    @property
    def providers(self) -> list[str]:
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
    def frames_per_call(self) -> int:
        if self.batch_size:
            return self.batch_size
        return 8 if self.providers[0] == CUDA else 1

    def session(self, model: bytes | str, name: str) -> ort.InferenceSession:
        """One onnxruntime session, made once per worker and reused for every frame."""
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Spinning threads would steal the core that decoding and encoding run on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = self.providers
        try:
            session = ort.InferenceSession(model, options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own, untyped errors
            raise ModelError(f"cannot load model {name}: {exc}") from None
        if session.get_providers()[0] != wanted[0]:
            message = f"{wanted[0]} could not start for {name}; running on {session.get_providers()[0]}"
            if self.device == "cuda":
                raise ModelError(message + " (check the CUDA and cuDNN libraries, or use --device cpu)")
            log.warning(message)
        return session


def default_layout(cores: int | None = None, memory_bytes: int | None = None, per_worker_bytes: int = 0) -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per core.

    Separate processes with one thread each beat one process with many threads for these
    convolution-heavy models on small core counts (measured: +17% at 640x360 on 2 cores),
    as long as memory holds a model's working set per worker.
    """
    cores = cores or os.cpu_count() or 1
    workers = cores
    if memory_bytes and per_worker_bytes:
        workers = max(1, min(workers, memory_bytes // per_worker_bytes))
    return workers, max(1, cores // workers)
