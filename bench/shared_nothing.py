"""Ray with nothing shared: bytes moved per job and per node, and time to first chunk on cold nodes.

    pip install -e ".[ray]" && python bench/shared_nothing.py [--seconds 8] [--size 640x360]

Starts a Ray head with 0 CPUs on 127.0.0.2 (this process is its driver) and two 1-CPU
worker nodes on 127.0.0.3 and .4, each in a mount namespace of its own with an empty
tmpfs over the bench's folder (testing/ray_clusters.py, SharedNothingCluster; needs root
for unshare), so every byte a node uses comes through Ray. Then, one after another:

1. a painting job on cold nodes (no actors, empty node caches);
2. the same painting again (warm: actors and the picture kept on each node);
3. an ONNX image model given by file, the 26-style network, and (with the test extra) a
   12 MB detector writing records: its weights go to each node once.

For each: wall time, time from the start of the job to each node's first finished chunk,
the bytes each node fetched (input pieces, picture, weights), the input's size, and the
bytes of segments carried back to the driver.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from _common import machine

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.media.sample import make_clip
from restyle.pipeline import Hooks
from testing.ray_clusters import SharedNothingCluster


def one_job(name: str, clip: Path, spec: JobSpec, engine, work: Path) -> None:
    started = time.perf_counter()
    first: dict[str, float] = {}

    def on_chunk(result) -> None:
        first.setdefault(result.node, time.perf_counter() - started)

    out = work / f"{name}.{'jsonl' if spec.model == 'yolo' else 'mp4'}"
    report = run(
        clip,
        out,
        spec,
        settings=Settings(chunk_seconds=1),
        engine=engine,
        work=work / f"w-{name}",
        hooks=Hooks(on_chunk=on_chunk),
    )
    wall = time.perf_counter() - started
    carried = sum(p.stat().st_size for p in (work / f"w-{name}").glob("*/*.*"))
    size = clip.stat().st_size
    fetched = sum(n["bytes_in"] for n in report.nodes.values())
    print(
        f"{name}: {report.frames} frames, {report.chunks} chunks, {wall:.1f} s ({report.frames / wall:.2f} fps); "
        f"input {size / 1e6:.2f} MB, fetched by nodes {fetched / 1e6:.2f} MB ({fetched / size:.2f}x the input), "
        f"segments carried back {carried / 1e6:.2f} MB"
    )
    for node, facts in sorted(report.nodes.items()):
        print(
            f"  {node}: {facts['chunks']} chunks, {facts['frames']} frames, {facts['runtime']}, "
            f"fetched {facts['bytes_in'] / 1e6:.2f} MB, first chunk after {first.get(node, float('nan')):.1f} s"
        )


def _detector() -> Path | None:
    """nudenet's 320n.onnx (the test extra installs it), or None."""
    import importlib.util

    found = importlib.util.find_spec("nudenet")
    path = Path(found.origin).parent / "320n.onnx" if found and found.origin else None
    return path if path and path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    print(f"# restyle on a shared-nothing Ray cluster, {date.today()}, {machine()}")
    work = Path(tempfile.mkdtemp(prefix="restyle-bench-sn-"))
    cluster = SharedNothingCluster(
        Path(tempfile.mkdtemp(prefix="restyle-ray-")), hidden=[work], node_cache=work / "node-cache"
    )
    clock = time.perf_counter()
    cluster.start()
    print(
        f"cluster up in {time.perf_counter() - clock:.1f} s: head 0 CPUs, nodes {', '.join(cluster.node_ips)} x 1 CPU"
    )
    try:
        from PIL import Image

        from restyle.engines.ray import RayEngine
        from testing.models import negative_model

        clip = make_clip(
            work / "clip.mp4", width=width, height=height, rate=25, seconds=args.seconds, keyframe_interval=25
        )
        picture = work / "painting.jpg"
        Image.effect_mandelbrot((512, 512), (-2, -1.5, 1, 1.5), 100).convert("RGB").save(picture, quality=90)
        print(
            f"clip {width}x{height} 25 fps {args.seconds:g} s with audio; "
            f"painting {picture.stat().st_size / 1e3:.0f} kB"
        )
        engine = RayEngine(cluster.address, cpus_per_actor=1, node_ip=cluster.driver_ip)
        clock = time.perf_counter()
        engine.share(clip)
        print(f"input put into the object store (SHA-256 and pieces) in {time.perf_counter() - clock:.2f} s")
        one_job("painting-cold", clip, JobSpec(model="style-image", style_image=str(picture)), engine, work)
        one_job("painting-warm", clip, JobSpec(model="style-image", style_image=str(picture)), engine, work)
        weights = negative_model(work / "negative.onnx")
        one_job("onnx-model-cold", clip, JobSpec(model="onnx", model_file=str(weights)), engine, work)
        one_job("styles-cold", clip, JobSpec(style="7"), engine, work)
        detector = _detector()
        if detector:  # a 12 MB model: its weights go to each node once, not once per chunk
            print(f"detector {detector.name}: {detector.stat().st_size / 1e6:.2f} MB")
            one_job("yolo-records-cold", clip, JobSpec(model="yolo", model_file=str(detector)), engine, work)
    finally:
        import ray

        ray.shutdown()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
