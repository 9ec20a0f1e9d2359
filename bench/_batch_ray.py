"""bench/batch.py's Ray Data side: ``read_images`` -> ``map_batches`` on an actor pool -> write, as Ray's users do.

The actors run restyle's own handler: ``load_model(handler.load_spec(spec), runtime)`` with the very
``Runtime`` that ``run_batch`` picks on this machine (``choose_layout``: its backend, precision and
threads), then ``model.predict(frames, params)`` ``runtime.frames_per_call`` frames at a time, as
restyle's workers call it. So both sides run the same ONNX file through the same runtime and
precision with the same threads; what differs is the pipeline around the model.

This module is imported by Ray's workers by name (bench/ is on the child's PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from restyle.handlers import JobSpec, OutputKind, Runtime, check, load_model, params_of

IMAGES_PER_BATCH = 16  # restyle's IMAGES_PER_TASK: the same number of pictures per unit of work
ACTOR_CPUS = 0.5  # each actor's Ray reservation; with 1 CPU each, 2 actors hold both CPUs and no read task starts


class Scorer:
    """A Ray Data actor: the model loaded once, then batches of decoded pictures through it."""

    def __init__(self, spec: JobSpec, runtime: Runtime):
        handler = check(spec)
        self.records = handler.output == OutputKind.RECORDS
        self.model = load_model(handler.load_spec(spec), runtime)
        self.params = params_of(spec)
        self.step = runtime.frames_per_call

    def __call__(self, batch: dict) -> dict:
        frames = batch["image"]  # (N, H, W, 3) uint8 when the pictures share a size, else an object array
        out: list = []
        for start in range(0, len(frames), self.step):
            out.extend(self.model.predict(np.stack(list(frames[start : start + self.step])), self.params))
        if self.records:
            return {"path": batch["path"], "boxes": [json.dumps(r["boxes"], separators=(",", ":")) for r in out]}
        return {"image": np.stack(out)}


def run_ray_data(source: Path, target: Path, spec: JobSpec, runtime: Runtime, actors: int) -> dict:
    """One Ray Data run on a local Ray instance started here (num_cpus = this machine's cores), stopped after.

    Pictures out: ``write_images`` (JPEG, PIL's default quality 75: Ray has no quality option; restyle
    writes 95). Records out: ``write_parquet`` (input path, boxes as JSON text).
    """
    import ray
    import ray.data

    clock = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    started = time.perf_counter()
    init_s = started - clock
    records = check(spec).output == OutputKind.RECORDS
    dataset = ray.data.read_images(str(source), include_paths=records, mode="RGB")
    dataset = dataset.map_batches(
        Scorer,
        fn_constructor_args=(spec, runtime),
        batch_size=IMAGES_PER_BATCH,
        concurrency=actors,
        num_cpus=ACTOR_CPUS,
    )
    if records:
        dataset.write_parquet(str(target))
    else:
        dataset.write_images(str(target), column="image", file_format="jpeg")
    run_s = time.perf_counter() - started
    clock = time.perf_counter()
    ray.shutdown()
    return {
        "seconds": run_s,
        "init_s": init_s,
        "shutdown_s": time.perf_counter() - clock,
        "written": _written(target, records),
    }


def _written(target: Path, records: bool) -> int:
    if not records:
        return sum(1 for p in target.rglob("*") if p.is_file() and p.suffix == ".jpeg")
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in target.rglob("*.parquet"))
