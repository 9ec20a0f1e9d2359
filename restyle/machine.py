"""What this machine has: its CPU's flags, its runtimes, its cores (read once), and the memory free for workers.

The CPU's flags are read once from Linux's /proc/cpuinfo (nothing elsewhere).

The flags honour oneDNN's ``ONEDNN_MAX_CPU_ISA`` (the cap OpenVINO's CPU plugin and
oneDNN apply to their kernels): with ``ONEDNN_MAX_CPU_ISA=AVX2`` the AVX-512, AVX-VNNI and
AMX flags are dropped, so restyle decides (precision, encoder) as it would on an AVX2-only
CPU while OpenVINO's convolutions run AVX2 code. That is how an AVX2 machine is imitated on
a newer one (bench/RESULTS.md says what the cap does not reach).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

ISA_ENV = "ONEDNN_MAX_CPU_ISA"
INT8_CLASSES = ("avx2", "vnni", "vnni+bf16", "amx")  # Machine.int8_class: how a CPU runs int8 graphs, lowest first
# oneDNN's ISA names, lowest first, with the flags each one adds over the one before (by prefix).
_ISA_LEVELS: list[tuple[str, tuple[str, ...]]] = [
    ("SSE41", ("sse4_1",)),
    ("AVX", ("avx", "f16c")),
    ("AVX2", ("avx2", "fma", "bmi2")),
    ("AVX2_VNNI", ("avx_vnni",)),
    ("AVX2_VNNI_2", ("avx_vnni_int8", "avx_ne_convert", "avx_ifma")),
    (
        "AVX512_CORE",
        (
            "avx512",  # every avx512* flag, less those the levels above name
            "avx512f",
            "avx512dq",
            "avx512bw",
            "avx512vl",
            "avx512cd",
            "avx512ifma",
            "avx512vbmi",
        ),
    ),
    ("AVX512_CORE_VNNI", ("avx512_vnni",)),
    ("AVX512_CORE_BF16", ("avx512_bf16",)),
    ("AVX10_1_512", ("avx512_fp16", "avx10")),
    ("AVX512_CORE_AMX", ("amx_",)),
]


@functools.cache
def native_flags() -> frozenset[str]:
    """The CPU's own feature flags (``avx2``, ``avx512f``, ``amx_bf16``...); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return frozenset(next((line for line in cpuinfo if line.startswith("flags")), "").split())
    except OSError:
        return frozenset()


def isa_cap() -> str | None:
    """The ISA ``ONEDNN_MAX_CPU_ISA`` caps kernels at (upper case), or None when unset or ``ALL``/``DEFAULT``."""
    value = os.environ.get(ISA_ENV, "").strip().upper()
    return None if value in ("", "ALL", "DEFAULT") else value


def cpu_flags() -> frozenset[str]:
    """The flags restyle decides by: the CPU's own, less those above ``ONEDNN_MAX_CPU_ISA`` when it is set."""
    return _capped(native_flags(), isa_cap())


@functools.cache
def _capped(flags: frozenset[str], cap: str | None) -> frozenset[str]:
    names = [name for name, _ in _ISA_LEVELS]
    if cap is None:
        return flags
    if cap not in names:  # a name oneDNN knows and we do not: assume nothing above AVX2 (the common cap)
        cap = "AVX2"
    above = [prefix for _, prefixes in _ISA_LEVELS[names.index(cap) + 1 :] for prefix in prefixes]
    # A prefix such as "avx" must not drop the cap's own flags ("avx2" under the AVX2 cap).
    allowed = {prefix for _, prefixes in _ISA_LEVELS[: names.index(cap) + 1] for prefix in prefixes}
    return frozenset(f for f in flags if f in allowed or not any(f.startswith(p) for p in above))


@dataclass(frozen=True)
class Machine:
    """The facts decisions are made on (precision, sizing, encoder): a value, so that a decision is a pure function.

    :func:`here` reads this machine's once per process; tests (and a driver deciding for another node) make their own.
    """

    cores: int = 1
    flags: frozenset[str] = frozenset()  # the CPU's flags, less those above ONEDNN_MAX_CPU_ISA
    isa_cap: str | None = None
    has_openvino: bool = False
    providers: tuple[str, ...] = ("CPUExecutionProvider",)  # onnxruntime's, CUDA's first where it has it

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic: AMX-BF16 or AVX-512 BF16."""
        return bool({"amx_bf16", "avx512_bf16"} & self.flags)

    @property
    def int8_class(self) -> str:
        """How its kernels run an int8 graph (the int8 fidelity table has a part per class, INT8_CLASSES): ``amx``
        (AMX-INT8 tiles, the float part at bf16: every AMX CPU has it), ``vnni+bf16`` (AVX-512 VNNI with native
        bf16: the float part at bf16), ``vnni`` (AVX-512 VNNI or AVX-VNNI: exact products summed into int32, the
        float part at f32), else ``avx2`` (products summed in pairs into int16, which saturates unless the weights
        have 7 bits). The float part: :attr:`int8_float_part`."""
        if "amx_int8" in self.flags:
            return "amx"
        if {"avx512_vnni", "avx_vnni"} & self.flags:
            return "vnni+bf16" if self.bf16 else "vnni"
        return "avx2"

    @property
    def int8_float_part(self) -> str:
        """The precision an int8 graph's float part runs at on OpenVINO (the instance norms, and each convolution's
        output on its way to them): bf16 where the CPU has it natively, which halves the bytes those layers move
        (bench/RESULTS.md, issue 28's fourth slice), else f32."""
        return "bf16" if self.bf16 else "f32"

    @classmethod
    def read(cls) -> Machine:
        """This machine's facts, read now."""
        import onnxruntime

        return cls(
            cores=os.cpu_count() or 1,
            flags=cpu_flags(),
            isa_cap=isa_cap(),
            has_openvino=importlib.util.find_spec("openvino") is not None,
            providers=tuple(onnxruntime.get_available_providers()),
        )


@functools.cache
def here() -> Machine:
    """This machine's facts, read once per process."""
    return Machine.read()


def available_memory() -> int | None:
    """Bytes the machine (and its cgroup) has available now; None where neither can be read. Read every call."""
    available = [m for m in (_meminfo_available(), _cgroup_room()) if m is not None]
    return min(available) if available else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cgroup_room() -> int | None:
    """A container's memory limit less what it uses (cgroup v2), or None outside one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)
