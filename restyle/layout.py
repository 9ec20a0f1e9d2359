"""How many workers and threads a run gets: the configured ones, or what fits this machine."""
from __future__ import annotations

import os

from restyle.config import Settings
from restyle.runtime import CUDA, Runtime, default_layout

# onnxruntime's working set for these networks: ~800 MiB for a 1280x720 frame (measured).
MODEL_BYTES_PER_PIXEL = 900
WORKER_BASE_BYTES = 300 * 1024**2


def choose_layout(settings: Settings, pixels: int) -> tuple[Runtime, int]:
    """(runtime, workers): the configured ones, or one single-threaded worker per core that memory holds."""
    probe_runtime = Runtime(settings.device, 1, settings.batch_size, settings.backend, settings.precision)
    cores = os.cpu_count() or 1
    if probe_runtime.backend_name == "onnxruntime" and probe_runtime.providers[0] == CUDA:
        # One GPU: one worker feeding it batches, with every core for decoding and encoding.
        return Runtime(settings.device, settings.threads or cores, settings.batch_size, settings.backend, settings.precision), settings.workers or 1
    if settings.engine == "ray":
        # Ray places the actors; each runs its model on the CPUs it asked for.
        threads = settings.threads or max(1, int(settings.ray_cpus_per_actor))
        return Runtime(settings.device, threads, settings.batch_size, settings.backend, settings.precision), settings.ray_actors
    per_worker = WORKER_BASE_BYTES + MODEL_BYTES_PER_PIXEL * pixels * max(1, settings.batch_size)
    workers, threads = default_layout(cores, _available_memory(), per_worker)
    workers = settings.workers or workers
    threads = settings.threads or max(1, cores // workers)
    return Runtime(settings.device, threads, settings.batch_size, settings.backend, settings.precision), workers


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


