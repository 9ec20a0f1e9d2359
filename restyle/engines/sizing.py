"""How many workers and threads a run gets, and whether its frames fit a worker's memory at all.

Where the engine places its workers decides what is sized here: a Ray cluster places its
actors itself (``ray_actors`` of ``ray_cpus_per_actor``), a GPU takes one worker feeding it
batches, and this machine's cores and memory size the local pool.

A worker holds its model and one frame's activations, and those grow with the frame:
bench/memory.py measured the peak RSS of a worker per runtime at three frame sizes
(bench/RESULTS.md, 'Worker memory'). From it, a worker needs WORKER_BASE_BYTES plus
bytes-per-pixel times the frame's pixels (times frames per call). The run then gets one
single-threaded worker per core *that memory holds*; a frame that one worker cannot hold
is refused before any worker starts, with the largest size that would fit.
"""

from __future__ import annotations

import math

from restyle import machine
from restyle.config import Settings
from restyle.errors import InputError
from restyle.runtime.base import Runtime, providers

# Peak worker RSS above its base, per frame pixel (bench/memory.py, 640x360 to 1920x1080, the
# worst of the styles and style-picture networks, rounded up), plus ~60 B/px for the frames
# queued around the model and x264's look-ahead.
# onnxruntime's arena keeps more than its peak (bench/memory.py measured it without the arena; with it,
# issue 12's 4096x2304 frames took 9.3 GB: ~950 B/px).
BYTES_PER_PIXEL = {
    ("onnxruntime", "f32"): 1000,
    ("openvino", "f32"): 510,
    ("openvino", "bf16"): 310,
    ("openvino", "int8"): 510,
}  # int8: not measured apart; its activations between layers stay f32
BYTES_PER_PIXEL[("openvino", "check")] = BYTES_PER_PIXEL[("openvino", "f32")] + BYTES_PER_PIXEL[("openvino", "bf16")]
# A deflickered job holds the previous frame, its flow and the smoothed state beside the model's working set:
# bench/worker_memory.py, OpenVINO f32 on an AVX2-only AMD EPYC (2026-12-04, bench/RESULTS.md, issue 26): the
# worst styles job (blend, strength 0.5) took 4.10 GiB PSS at 4096x2304 without it and 4.54 GiB with it
# (+50 B/px; the fit through 640x360..4096x2304 went from 455 to 503 B/px): 60 B/px, rounded up.
DEFLICKER_BYTES_PER_PIXEL = 60
# Python, PyAV, OpenCV, the runtime's libraries and the weights; in a service worker also its stores' libraries
# and what a big job leaves (issue 21: 0.2-0.3 GiB PSS idle after a 4096x2304 job, 0.1 GiB before any).
WORKER_BASE_BYTES = 400 * 1024**2


def choose_layout(
    settings: Settings, pixels: int, network: str | None = "multistyle26", deflicker: bool = False
) -> tuple[Runtime, int]:
    """(runtime, workers): the configured ones, or one single-threaded worker per core that memory holds.

    ``network`` is the handler's (``Handler.network``; None for a user's file); ``deflicker``: the job smooths its
    frames (its state and flow are budgeted too). Raises InputError
    when not even one worker can hold a frame of ``pixels``.
    """
    probe_runtime = Runtime(settings.device, 1, settings.batch_size, settings.backend, settings.precision)
    cores = machine.here().cores
    providers(probe_runtime, machine.here())  # a device this machine does not have is refused here, before any work
    if probe_runtime.on_gpu:
        # One GPU: one worker feeding it batches, with every core for decoding and encoding.
        return Runtime(
            settings.device, settings.threads or cores, settings.batch_size, settings.backend, settings.precision
        ), settings.workers or 1
    if settings.engine == "ray":
        # Ray places the actors; each runs its model on the CPUs it asked for.
        threads = settings.threads or max(1, int(settings.ray_cpus_per_actor))
        return Runtime(
            settings.device, threads, settings.batch_size, settings.backend, settings.precision
        ), settings.ray_actors
    per_worker = worker_bytes(probe_runtime, pixels, network, deflicker)
    memory = memory_budget(settings)
    if memory is not None and per_worker > memory:
        raise InputError(too_big(probe_runtime, pixels, per_worker, memory, network))
    workers, threads = default_layout(cores, memory, per_worker)
    workers = settings.workers or workers
    threads = settings.threads or max(1, cores // workers)
    return Runtime(settings.device, threads, settings.batch_size, settings.backend, settings.precision), workers


def worker_bytes(runtime: Runtime, pixels: int, network: str | None = "multistyle26", deflicker: bool = False) -> int:
    """What one worker needs for frames of ``pixels`` on ``runtime`` (the most of the runtimes it may end up on),
    with the deflicker's state and flow when the job smooths its frames."""
    choice = runtime.choose(network)
    per_pixel = BYTES_PER_PIXEL.get((choice.backend, choice.precision), max(BYTES_PER_PIXEL.values()))
    smoothing = DEFLICKER_BYTES_PER_PIXEL if deflicker else 0
    return WORKER_BASE_BYTES + (per_pixel * max(1, runtime.batch_size) + smoothing) * pixels


def too_big(runtime: Runtime, pixels: int, needed: int, memory: int, network: str | None) -> str:
    choice = runtime.choose(network)
    per_pixel = (needed - WORKER_BASE_BYTES) / pixels
    fits = max(0, int((memory - WORKER_BASE_BYTES) / per_pixel))
    side = int(math.sqrt(fits * 16 / 9))
    return (
        f"a frame of {pixels / 1e6:.1f} megapixels needs about {needed / 2**30:.1f} GiB in a worker "
        f"({choice.backend} {choice.precision}), and this machine has {memory / 2**30:.1f} GiB for workers "
        f"(RESTYLE_WORKER_MEMORY, or what is available); the largest frame it can take is about {fits / 1e6:.1f} "
        f"megapixels (e.g. {side}x{side * 9 // 16}): scale the video down first"
    )


def memory_budget(settings: Settings) -> int | None:
    """Bytes the run's workers may use: the setting, or what the machine (and its cgroup) has available."""
    return settings.worker_memory or machine.available_memory()


def default_layout(
    cores: int | None = None, memory_bytes: int | None = None, per_worker_bytes: int = 0
) -> tuple[int, int]:
    """(workers, threads per worker) for this machine: one single-threaded worker per core, as memory allows.

    Separate processes with one thread each beat one process with many threads for these
    convolution-heavy models on small core counts (onnxruntime, 640x360, 2 cores: 21.4
    against 19.4 fps), as long as memory holds a model's working set per worker.
    """
    cores = cores or machine.here().cores
    workers = cores
    if memory_bytes and per_worker_bytes:
        workers = max(1, min(workers, memory_bytes // per_worker_bytes))
    return workers, max(1, cores // workers)
