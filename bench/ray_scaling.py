"""The local process pool against a local two-node Ray cluster, same clip, same cores.

    pip install -e ".[ray]" && python bench/ray_scaling.py

Starts a Ray head on 127.0.0.2 and a second node on 127.0.0.3 with one CPU each (the
machine's two cores), runs `restyle run` on a 1280x720 clip with the local pool (two
workers) and then on Ray (two actors), and prints both, Ray's overhead per chunk and
their ratio. Then it kills the Ray actor holding a chunk mid-run and prints how many
chunks were given out again, out of how many.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from _common import machine

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.media.sample import make_clip
from testing.servers import RayCluster

RESTYLE = [sys.executable, "-m", "restyle.cli"]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=os.environ | env, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    print(f"# restyle on Ray, {date.today()}, {machine()}")
    work = Path(tempfile.mkdtemp(prefix="restyle-bench-ray-"))
    cluster = RayCluster(work / "ray")
    cluster.start()
    try:
        clip = make_clip(work / "clip.mp4", width=1280, height=720, rate=30, seconds=8, keyframe_interval=30)
        base = [*RESTYLE, "run", str(clip), "--style", "7", "-q", "--chunk-seconds", "1"]
        local = timed([*base, "-o", str(work / "local.mp4"), "--workers", "2"], {})
        on_ray = timed(
            [*base, "-o", str(work / "ray.mp4")],
            {"RESTYLE_ENGINE": "ray", "RESTYLE_RAY_ADDRESS": cluster.address, "RESTYLE_RAY_NODE_IP": cluster.driver_ip},
        )
        chunks = 8
        print(f"1280x720, 240 frames, {chunks} chunks")
        print(f"  local pool, 2 workers x 1 thread: {240 / local:.2f} fps ({local:.1f} s)")
        print(f"  Ray, 2 nodes x 1 CPU (one actor each): {240 / on_ray:.2f} fps ({on_ray:.1f} s)")
        print(
            f"  Ray / local: {local / on_ray:.3f}; "
            f"Ray's overhead {(on_ray - local) / chunks * 2:.2f} s per chunk per actor "
            "(start-up of the driver's connection and the actors included)"
        )

        from restyle.engines.ray import RayEngine

        engine = RayEngine(cluster.address, node_ip=cluster.driver_ip)
        killed: list[int] = []

        def killer() -> None:
            while not killed:
                if list((work / "seg").glob("*/*.mp4")):
                    pids = list(engine.pids.values())
                    if pids:
                        os.kill(pids[0], signal.SIGKILL)
                        killed.append(pids[0])
                time.sleep(0.05)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        report = run(
            clip,
            work / "killed.mp4",
            JobSpec(style="7"),
            settings=Settings(chunk_seconds=1),
            engine=engine,
            work=work / "seg",
        )
        print(
            f"  an actor killed mid-chunk: {engine.redone} chunk(s) given out again, of {report.chunks}; "
            f"output {report.frames} frames"
        )
    finally:
        import ray

        ray.shutdown()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
