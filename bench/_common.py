"""Shared by the benchmarks: clips, model-only timing, process-tree memory, fidelity."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np

from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of
from restyle.quality import psnr  # noqa: F401 - the benchmarks import it from here


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, PyAV {av.__version__}"
    )


def decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _model_only_worker(args: tuple[JobSpec, Runtime, list[np.ndarray]]) -> tuple[float, float]:
    spec, runtime, frames = args
    model = load(spec, runtime)
    model.predict(frames[0][None], params_of(spec))  # warm-up: first call allocates
    started, cpu = time.perf_counter(), time.process_time()
    for frame in frames:
        model.predict(frame[None], params_of(spec))
    return time.perf_counter() - started, time.process_time() - cpu


def model_only_fps(spec: JobSpec, frames: list[np.ndarray], processes: int, threads: int, **runtime: str) -> float:
    """Frames already in memory; ``processes`` x ``threads``; the model's steady speed (load excluded)."""
    return model_only(spec, frames, processes, threads, **runtime)[0]


def model_only(
    spec: JobSpec, frames: list[np.ndarray], processes: int, threads: int, **runtime: str
) -> tuple[float, float]:
    """(fps, CPU seconds per frame) of the model alone; CPU counts the timed frames only."""
    shares = [frames[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        # Each worker times only its own frames, after its model is loaded and warm.
        results = list(
            pool.map(_model_only_worker, [(spec, Runtime("cpu", threads, **runtime), share) for share in shares])
        )
    return len(frames) / max(wall for wall, _ in results), sum(cpu for _, cpu in results) / len(frames)


def cpu_seconds() -> float:
    """User + system CPU of this process and every child it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class PeakRSS:
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, every: float = 0.05):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(_rss(p) for p in _tree(self.pid)))
            time.sleep(self.every)


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                todo += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_measured(command: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS of the whole process tree) of a command."""
    return run_measured_cpu(command)[:2]


def run_measured_json(command: list[str]) -> tuple[float, int, float, dict]:
    """run_measured_cpu of a command that prints one JSON document (``restyle run --json``), and that document."""
    wall, peak, cpu, out = _run(command)
    return wall, peak, cpu, json.loads(out)


def run_measured_cpu(command: list[str]) -> tuple[float, int, float]:
    """(wall seconds, peak RSS of the whole process tree, CPU seconds of the whole tree) of a command."""
    return _run(command)[:3]


def _run(command: list[str]) -> tuple[float, int, float, str]:
    cpu = cpu_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakRSS(process.pid) as rss:
        out, err = process.communicate()
    if process.returncode:
        raise SystemExit(f"{command[:3]} failed: {err[-2000:]}")
    return time.perf_counter() - started, rss.peak, cpu_seconds() - cpu, out


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]
