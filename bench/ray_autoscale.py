"""Ray from zero nodes and back: what an operator needs to choose an idle timeout.

    python bench/ray_autoscale.py [--idle-minutes 0.25] [--chunks 6]

Starts deploy/ray-cluster.yaml's node types as a fake_multinode cluster on this machine
(deploy/fake_cluster.py: the real autoscaler, a real raylet per node, 1 CPU a node, the
head at 0 CPUs), a job store with restyle's queue scaler, and a worker thread per job that
claims it and runs its chunks on the Ray engine (the 26-style network, 192x108 frames).
Prints:
  1. one job arriving at an empty cluster: seconds from its arrival to its first chunk;
  2. a burst of 3 jobs at an empty cluster: the worker node count over time until the
     cluster is back at zero, the seconds the burst took, and the node-seconds it cost
     (busy and idle: the idle tail is what the idle timeout costs).
The cluster is stopped by its processes' ids.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from restyle.config import Settings
from restyle.handlers.base import LoadSpec
from restyle.jobspec import JobSpec
from restyle.runtime import Runtime
from restyle.service.scaler import QueueScaler
from restyle.stores.jobs import JobStore
from testing.ray_clusters import LocalRayCluster, wait_until, worker_nodes
from testing.ray_tasks import FrameTask, restyle_frames

RUNTIME = Runtime(device="cpu", threads=1)
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine() -> str:
    """CPU name, cores and the flags that matter to the models; Python and Ray versions."""
    import platform

    import ray

    name, flags = "unknown CPU", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and name == "unknown CPU":
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    have = " ".join(f for f in FLAGS if f in flags)
    return f"{name}, {os.cpu_count()} cores, flags {have}; Python {platform.python_version()}, Ray {ray.__version__}"


class NodeLog:
    """Worker node counts, sampled every ``every`` seconds in a thread."""

    def __init__(self, every: float = 0.5):
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._every = every
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), len(worker_nodes())))
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        time.sleep(2 * self._every)

    def node_seconds(self, start: float, end: float) -> float:
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        return sum(n * (t2 - t1) for (t1, n), (t2, _) in zip(inside, inside[1:], strict=False))

    def changes(self, start: float) -> list[tuple[float, int]]:
        out: list[tuple[float, int]] = []
        for t, n in self.samples:
            if t >= start and (not out or out[-1][1] != n):
                out.append((t - start, n))
        return out


def run_jobs(store: JobStore, engine, count: int, chunks: int, first: list[float]) -> None:
    def one(worker: str) -> None:
        job = store.claim(worker, lease_s=600)
        spec = job.params.spec
        tasks = [FrameTask(i, spec, frames=6, width=192, height=108) for i in range(chunks)]
        for _ in engine.map(restyle_frames, LoadSpec("styles"), RUNTIME, tasks):
            if not first:
                first.append(time.monotonic())
        store.succeed(job.id, worker, f"outbox/{job.id}", {})

    threads = [threading.Thread(target=one, args=(f"worker{i}",)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle-minutes", type=float, default=0.25, help="the cluster's idle_timeout_minutes")
    parser.add_argument("--chunks", type=int, default=6, help="chunks a job")
    args = parser.parse_args()
    print(f"{machine()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    root = Path(tempfile.mkdtemp(prefix="restyle-rab-"))
    cluster = LocalRayCluster(root, autoscaling=True, idle_minutes=args.idle_minutes)
    started = time.monotonic()
    cluster.start()
    print(
        f"cluster up in {time.monotonic() - started:.1f} s: head 0 CPUs; worker types "
        + ", ".join(
            f"{name} (max {t['max_workers']}, priority {t.get('priority', 0)})"
            for name, t in cluster.config["available_node_types"].items()
            if t.get("max_workers")
        )
        + f"; idle timeout {args.idle_minutes * 60:.0f} s"
    )
    import ray

    from restyle.engines.ray import RayEngine

    try:
        engine = RayEngine(cluster.address, actors=1, idle_seconds=2, node_ip="127.0.0.1")
        store = JobStore(f"sqlite:///{root / 'jobs.db'}")
        settings = Settings(engine="ray", ray_actors_per_job=1, ray_scale_seconds=0.5, home=root)
        stop = threading.Event()
        threading.Thread(target=QueueScaler(store, settings).run, args=(stop,), daemon=True).start()
        nodes = NodeLog()

        for phase, count in (("one job", 1), ("a burst of 3 jobs", 3)):
            wait_until(lambda: worker_nodes() == [], 300, what="an empty cluster")
            arrival, first = time.monotonic(), []
            for i in range(count):
                store.create("bench", f"inbox/{phase}{i}.mp4", None, {"spec": JobSpec(style=str(3 + i)).model_dump()})
            run_jobs(store, engine, count, args.chunks, first)
            finished = time.monotonic()
            wait_until(lambda: worker_nodes() == [], 300, what="the cluster back to zero")
            empty = time.monotonic()
            time.sleep(1.0)  # the node log's sample of the last change
            print(f"\n{phase} at an empty cluster ({args.chunks} chunks of 6 frames at 192x108 each):")
            print(
                f"  arrival to first chunk: {first[0] - arrival:.1f} s; jobs done after {finished - arrival:.1f} s; "
                f"back to 0 nodes after {empty - arrival:.1f} s"
            )
            busy, total = nodes.node_seconds(arrival, finished), nodes.node_seconds(arrival, empty)
            print(
                f"  node-seconds: {total:.0f} in all, {busy:.0f} until the jobs were done, "
                f"{total - busy:.0f} idle before the nodes went"
            )
            print(
                "  worker nodes over time (s: nodes): "
                + ", ".join(f"{t:.1f}: {n}" for t, n in nodes.changes(arrival) if t <= empty - arrival + 1)
            )
        stop.set()
        nodes.stop()
    finally:
        ray.shutdown()
        cluster.stop()


if __name__ == "__main__":
    main()
