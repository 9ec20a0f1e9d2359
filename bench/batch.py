"""Batches of pictures: restyle's ``run_batch`` against Ray Data, and the model-only limit; a 100,000-item batch.

    PYTHONPATH=. python bench/batch.py                     # 2,000 pictures 640x360, 2 rounds; 100,000 tiny items
    PYTHONPATH=. python bench/batch.py --images 200 --rounds 1 --tiny 10000 --tiny-score 1000   # a quick check
    PYTHONPATH=. python bench/batch.py --service-only      # the service's side alone (no Ray Data needed)

Needs, beyond restyle's test extra: psutil and Ray Data (``pip install psutil 'ray[data]'``: pandas and
pyarrow; restyle's pyproject has no bench extra). nudenet ships the detector, matplotlib the photo.

For each model (style 7 through the ``styles`` handler; nudenet's YOLOv8n detector through the
``yolo`` records handler), in one run and interleaved round by round (each round alternates
which of restyle and Ray Data goes first; the machine is shared, so only figures of one run compare):

* the model-only limit: the same model on the same number of 640x360 frames already in memory,
  laid out as restyle lays out its workers (bench/_common.py ``model_only``, as bench/throughput.py);
* restyle: ``run_batch(folder, out, spec)`` with this machine's default settings, in a fresh process;
* Ray Data: ``read_images`` -> ``map_batches`` on an actor pool (one actor per restyle worker, each
  running restyle's own handler on the same runtime and threads: bench/_batch_ray.py) -> ``write_images``
  (pictures) or ``write_parquet`` (records), on a local Ray instance (num_cpus = cores) that the
  fresh process starts and stops.

Per run: images/s over the run's own wall clock (restyle: the ``run_batch`` call; Ray: from
``read_images`` to the end of the write, ``ray.init`` and ``ray.shutdown`` timed apart), its ratio to
the model-only limit, and the peak memory of the whole process tree (the process and every
descendant: restyle's worker processes; Ray's raylet, GCS, object store and workers), summed
with psutil: RSS every 0.2 s (shared pages count once per process that maps them) and PSS every
5 s (shared pages split between their processes; Ray's object store is shared memory); and the
CPU seconds of the whole tree. restyle's run also gives its timeline (when its first and last
pictures were stored: start-up, steady state, end) and its workers' time in the task function (from
the manifest's seconds). Then where restyle's time goes per picture (decode, predict, encode, write,
in one process), the scale check (bench/_batch_scale.py), and the service's side of it: a
100,000-item batch paged through a real ``restyle serve``'s API and dashboard, on SQLite and
PostgreSQL, p95 per kind of request against 100 ms (bench/_batch_service.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import psutil
except ImportError:
    raise SystemExit("bench/batch.py needs psutil and Ray Data: pip install psutil 'ray[data]'") from None

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]  # the bench's helpers, and the repo's testing package (its servers)
from _common import machine, model_only

from restyle.config import load_settings
from restyle.engines.sizing import choose_layout
from restyle.handlers import JobSpec, Runtime, check, load_model, params_of
from restyle.media.sample import packaged_photo
from restyle.pipeline.batch import BUDGET_PIXELS
from restyle.pipeline.images import encode, read_rgb

WIDTH, HEIGHT = 640, 360
SAMPLE_EVERY = 0.2  # RSS and CPU of every process of the tree
TREE_EVERY = 1.0  # the tree listed again (new processes are seen within this)
PSS_EVERY = 5.0  # PSS read (its reading is ~100x dearer than RSS's; Ray has ~15 processes to read)
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def detector() -> Path:
    """nudenet's 320n.onnx: a real Ultralytics YOLOv8n export (18 classes), as tests/conftest.py finds it."""
    import importlib.util

    found = importlib.util.find_spec("nudenet")
    if found is None or not found.origin:
        raise SystemExit("the records half needs nudenet (it ships the detector): pip install nudenet")
    return Path(found.origin).parent / "320n.onnx"


def specs() -> dict[str, JobSpec]:
    return {"style 7": JobSpec(style="7"), "detector": JobSpec(model="yolo", model_file=str(detector()))}


def make_images(folder: Path, count: int) -> None:
    """``count`` 640x360 JPEGs, each a different crop (and flip, and brightness) of the packaged photo."""
    photo = Image.open(packaged_photo()).convert("RGB").resize((1024, 1200), Image.BICUBIC)
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for index in range(count):
        x, y = rng.randrange(1024 - WIDTH), rng.randrange(1200 - HEIGHT)
        picture = photo.crop((x, y, x + WIDTH, y + HEIGHT))
        if index % 2:
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        gain = rng.uniform(0.8, 1.2)
        picture = picture.point([min(255, int(v * gain)) for v in range(256)] * 3)
        picture.save(folder / f"{index:05d}.jpg", quality=90)


def cpu_flags() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in FLAGS)


def load_note() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class TreeMemory:
    """The peaks of a process tree's summed memory, and its CPU seconds, sampled with psutil.

    Every SAMPLE_EVERY s: RSS and CPU time (user + system) of each process of the tree (cheap reads of
    /proc/PID/statm and stat); the tree itself (the process and all its descendants) is listed again
    every TREE_EVERY s, and PSS (from /proc/PID/smaps_rollup, ~2.5 ms a process here) read every PSS_EVERY s,
    so that the sampler's own CPU stays small (it is measured: ``sampler_cpu_s``). A process's CPU is its
    last reading: at most SAMPLE_EVERY s of each is missed.
    """

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.rss = self.pss = self.processes = 0
        self.names: set[str] = set()
        self.cpu: dict[int, float] = {}
        self.sampler_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        tree: list[psutil.Process] = []
        listed = pss_read = 0.0
        start = time.thread_time()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - listed >= TREE_EVERY:
                try:
                    tree = [self.root, *self.root.children(recursive=True)]
                except psutil.Error:
                    break
                listed = now
                self.processes = max(self.processes, len(tree))
            rss = 0
            for process in tree:
                try:
                    with process.oneshot():
                        rss += process.memory_info().rss
                        times = process.cpu_times()
                        self.cpu[process.pid] = times.user + times.system
                        self.names.add(process.name())
                except psutil.Error:  # it ended since the tree was listed
                    pass
            self.rss = max(self.rss, rss)
            if now - pss_read >= PSS_EVERY:
                self.pss = max(self.pss, sum(_pss(process.pid) for process in tree))
                pss_read = now
            time.sleep(SAMPLE_EVERY)
        self.sampler_cpu_s = time.thread_time() - start


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure_tree(command: list[str]) -> dict:
    """Run ``command``; its wall clock, the peaks of its process tree, what it printed last (its JSON)."""
    paths = [str(BENCH.parent), str(BENCH), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    clock = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with TreeMemory(process.pid) as memory:
        out, err = process.communicate()
    wall = time.perf_counter() - clock
    if process.returncode not in (0, 3):  # 3: a batch where some items failed; the figures still say how many
        raise SystemExit(f"{command[:4]} failed ({process.returncode}): {err[-3000:]}")
    lines = out.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return {
        **result,
        "wall_s": wall,
        "rss": memory.rss,
        "pss": memory.pss,
        "processes": memory.processes,
        "names": sorted(memory.names),
        "cpu_s": sum(memory.cpu.values()),
        "cpu_root_s": memory.cpu.get(process.pid, 0.0),
        "sampler_cpu_s": memory.sampler_cpu_s,
    }


def child(args: argparse.Namespace) -> None:
    """One measured run, in its own process: prints its figures as one JSON line."""
    spec = specs()[args.model]
    settings = load_settings()
    runtime, workers = choose_layout(settings, BUDGET_PIXELS, check(spec).network)
    if args.child == "restyle":
        from restyle.pipeline.batch import run_batch

        ended: list[float] = []  # when each item ended, from the call's start
        clock = time.perf_counter()
        report = run_batch(
            args.src, args.out, spec, settings=settings, on_item=lambda row: ended.append(time.perf_counter() - clock)
        )
        seconds = time.perf_counter() - clock
        progress = report.progress
        result = {
            "seconds": seconds,
            "written": progress.succeeded,
            "failed": progress.failed,
            # the run's timeline: to the first item's end (start-up and one task), items, after the last one
            "first_s": ended[0] if ended else 0.0,
            "last_s": ended[-1] if ended else 0.0,
            # the workers' time in restyle's task function (decode, model, encode), from the rows' shares
            "busy_s": sum(row.seconds for row in report.rows),
            "workers": report.workers,
        }
    else:
        from _batch_ray import run_ray_data

        result = run_ray_data(Path(args.src), Path(args.out), spec, runtime, workers)
    print(json.dumps(result))


def layout(spec: JobSpec) -> tuple[Runtime, int, str]:
    """What run_batch picks here for ``spec``'s model: runtime, workers, and a line saying so."""
    settings = load_settings()
    network = check(spec).network
    runtime, workers = choose_layout(settings, BUDGET_PIXELS, network)
    choice = runtime.choose(network)
    text = (
        f"settings: engine {settings.engine}, workers {settings.workers or 'auto'}, "
        f"threads {settings.threads or 'auto'}, "
        f"batch size {settings.batch_size or 'auto'}, backend {settings.backend}, precision {settings.precision} -> "
        f"{workers} workers x {runtime.threads} thread, {runtime.frames_per_call} frame a call, "
        f"{choice.backend} {choice.precision} ({choice.reason})"
    )
    return runtime, workers, text


def stages(spec: JobSpec, runtime: Runtime, files: list[Path], work: Path) -> dict[str, float]:
    """Milliseconds per picture of each of restyle's steps for a picture, in one process (as a worker does them,
    then the scheduler's write)."""
    model = load_model(check(spec).load_spec(spec), runtime)
    params = params_of(spec)
    model.predict(read_rgb(str(files[0]), "warm-up")[None], params)
    spent = dict.fromkeys(("decode", "predict", "encode", "write"), 0.0)
    work.mkdir(exist_ok=True)
    for path in files:
        clock = time.perf_counter()
        rgb = read_rgb(str(path), path.name)
        spent["decode"] += time.perf_counter() - clock
        clock = time.perf_counter()
        out = model.predict(rgb[None], params)[0]
        spent["predict"] += time.perf_counter() - clock
        clock = time.perf_counter()
        data = encode(out, path.name) if isinstance(out, np.ndarray) else json.dumps(out).encode()
        spent["encode"] += time.perf_counter() - clock
        clock = time.perf_counter()
        (work / path.name).write_bytes(data)
        spent["write"] += time.perf_counter() - clock
    return {name: seconds / len(files) * 1000 for name, seconds in spent.items()}


def one_model(name: str, spec: JobSpec, folder: Path, work: Path, rounds: int) -> dict:
    runtime, workers, text = layout(spec)
    files = sorted(folder.iterdir())
    print(f"\n## {name}: {len(files):,} pictures {WIDTH}x{HEIGHT}\n  {text}", flush=True)
    runs: dict[str, list[dict]] = {"model only": [], "restyle": [], "Ray Data": []}
    for round_ in range(rounds):
        frames = [read_rgb(str(path), path.name) for path in files]
        fps, cpu = model_only(
            spec, frames, workers, runtime.threads, backend=runtime.backend, precision=runtime.precision
        )
        del frames
        runs["model only"].append({"images_s": fps, "cpu_ms": cpu * 1000})
        print(
            f"  round {round_ + 1}: model only ({workers}x{runtime.threads}): {fps:.2f} images/s, "
            f"{cpu * 1000:.0f} CPU ms per picture",
            flush=True,
        )
        order = ["restyle", "Ray Data"] if round_ % 2 == 0 else ["Ray Data", "restyle"]
        for who in order:
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            kind = "restyle" if who == "restyle" else "ray"
            figures = measure_tree(
                [sys.executable, __file__, "--child", kind, "--model", name, "--src", str(folder), "--out", str(out)]
            )
            figures["images_s"] = len(files) / figures["seconds"]
            runs[who].append(figures)
            print(f"  round {round_ + 1}: {who}: {describe(figures, fps, len(files))}", flush=True)
    shutil.rmtree(work / "out", ignore_errors=True)
    spent = stages(spec, runtime, files[: min(100, len(files))], work / "stages")
    summary = summarize(runs, spent, len(files))
    return {"layout": text, "runs": runs, "stages_ms": spent, "summary": summary}


def describe(figures: dict, limit: float, count: int) -> str:
    extra = ""
    if "first_s" in figures:
        steady = (count - 16) / max(1e-9, figures["last_s"] - figures["first_s"])  # the first task's 16 are in first_s
        extra = (
            f"; first picture stored at {figures['first_s']:.1f} s, the last at {figures['last_s']:.1f} s "
            f"(between them {steady:.2f} images/s), then {figures['seconds'] - figures['last_s']:.1f} s to the end; "
            f"workers in the task function {figures['busy_s'] / figures['workers'] / figures['seconds']:.0%} of the "
            f"run, {figures['busy_s'] / count * 1000:.1f} ms a picture"
        )
    if "init_s" in figures:
        extra = f"; ray.init {figures['init_s']:.1f} s, ray.shutdown {figures['shutdown_s']:.1f} s"
    return (
        f"{figures['images_s']:.2f} images/s ({figures['images_s'] / limit:.3f} of the model-only limit), "
        f"{figures['seconds']:.1f} s; whole process {figures['wall_s']:.1f} s "
        f"({count / figures['wall_s']:.2f} images/s)"
        f"{extra}; peak RSS {figures['rss'] / 2**20:.0f} MiB, PSS {figures['pss'] / 2**20:.0f} MiB "
        f"({figures['processes']} processes); {figures['cpu_s'] / count * 1000:.0f} CPU ms per picture "
        f"(whole tree, start-up included; the first process: {figures['cpu_root_s']:.1f} s; "
        f"the sampler: {figures['sampler_cpu_s']:.1f} s); "
        f"written {figures['written']}"
    )


def summarize(runs: dict[str, list[dict]], spent: dict[str, float], count: int) -> dict:
    cpu = {
        "model only": statistics.median(r["cpu_ms"] for r in runs["model only"]),
        **{who: statistics.median(r["cpu_s"] / count * 1000 for r in runs[who]) for who in ("restyle", "Ray Data")},
    }
    limit = statistics.median(r["images_s"] for r in runs["model only"])
    ours = statistics.median(r["images_s"] for r in runs["restyle"])
    ray = statistics.median(r["images_s"] for r in runs["Ray Data"])
    ours_rss, ray_rss = max(r["rss"] for r in runs["restyle"]), max(r["rss"] for r in runs["Ray Data"])
    ours_pss, ray_pss = max(r["pss"] for r in runs["restyle"]), max(r["pss"] for r in runs["Ray Data"])
    total = sum(spent.values())
    print(
        f"  medians: model only {limit:.2f}, restyle {ours:.2f}, Ray Data {ray:.2f} images/s\n"
        f"  restyle / Ray Data: {ours / ray:.2f}x images/s (target >= 1): {'met' if ours >= ray else 'NOT met'}\n"
        f"  restyle / model only: {ours / limit:.3f} (target >= 0.85): {'met' if ours >= 0.85 * limit else 'NOT met'}\n"
        f"  peak memory, restyle / Ray Data: RSS {ours_rss / 2**20:.0f} / {ray_rss / 2**20:.0f} MiB, "
        f"PSS {ours_pss / 2**20:.0f} / {ray_pss / 2**20:.0f} MiB (target lower): "
        f"{'met' if ours_rss < ray_rss else 'NOT met'}\n"
        f"  CPU ms per picture (robust to the neighbours' load): "
        + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
        + "\n"
        "  restyle's steps per picture, one process, 1 thread: "
        + ", ".join(f"{k} {v:.1f} ms ({v / total:.0%})" for k, v in spent.items()),
        flush=True,
    )
    return {
        "model_only": limit,
        "restyle": ours,
        "ray": ray,
        "rss": [ours_rss, ray_rss],
        "pss": [ours_pss, ray_pss],
        "cpu_ms": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="pictures 640x360 (default 2000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of model only, restyle, Ray Data (default 2)")
    parser.add_argument("--models", nargs="*", choices=["style 7", "detector"], default=["style 7", "detector"])
    parser.add_argument("--tiny", type=int, default=100_000, help="items of the scale check (0: none)")
    parser.add_argument("--tiny-score", type=int, default=10_000, help="of which scored end to end by the CLI")
    parser.add_argument("--service", type=int, default=100_000, help="items of the service check's batch (0: none)")
    parser.add_argument("--service-rounds", type=int, default=1000, help="rounds of every kind of request")
    parser.add_argument(
        "--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"], help="job stores"
    )
    parser.add_argument("--service-only", action="store_true", help="the service check alone (--models --tiny 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--child", choices=["restyle", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.service_only:
        args.models, args.tiny = [], 0
    versions = ""
    if args.models:
        try:
            import ray
            import ray.data  # noqa: F401 - needs pandas and pyarrow, which plain ``ray`` does not install
        except ImportError as exc:
            raise SystemExit(f"bench/batch.py needs Ray Data ({exc}): pip install 'ray[data]'") from None
        versions = f"; Ray {ray.__version__}"
    print(f"# restyle batches against Ray Data, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")

    print(f"# CPU flags: {cpu_flags()}{versions}")
    print(f"# command: python bench/batch.py {' '.join(sys.argv[1:])}")
    print(f"# load at the start: {load_note()}", flush=True)
    results: dict = {}
    if args.models:
        with tempfile.TemporaryDirectory(prefix="restyle-bench-batch-") as tmp:
            folder = Path(tmp) / "pictures"
            make_images(folder, args.images)
            for name in args.models:
                results[name] = one_model(name, specs()[name], folder, Path(tmp), args.rounds)
    if args.tiny:
        from _batch_scale import scale_check

        results["scale"] = scale_check(args.tiny, min(args.tiny_score, args.tiny), measure_tree)
    if args.service:
        from _batch_service import service_check

        results["service"] = service_check(args.service, args.service_rounds, args.databases)
    print(f"# load at the end: {load_note()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
