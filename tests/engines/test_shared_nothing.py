"""A Ray cluster whose worker nodes share no disk with the driver runs every kind of job.

The head (0 CPUs, the drivers' node) is on 127.0.0.2; two worker nodes of 1 CPU on 127.0.0.3
and 127.0.0.4 each run in a mount namespace of their own with an empty tmpfs over pytest's
temp folder, where every input, work dir, RESTYLE_HOME and driver temp file of these tests
lives (testing/ray_clusters.py, SharedNothingCluster). Each job's output is compared with the
same job run here on the local pool: every frame and every audio packet, bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from restyle import JobSpec, run, run_batch
from restyle.config import Settings
from restyle.media.sample import make_clip, make_motion_clip, packaged_photo
from tests.conftest import decode_frames, packets, s3_settings
from tests.service.test_api import sign_in
from tests.service.test_catalogue import ALICE, ROOT, negative_model, painting

pytestmark = pytest.mark.slow
NODES = ["127.0.0.3", "127.0.0.4"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from testing.ray_clusters import SharedNothingCluster
    from testing.servers import missing

    try:
        import ray
    except ImportError:
        missing('Ray is not installed (pip install -e ".[ray]")')
    import tempfile

    base = tmp_path_factory.getbasetemp()  # every file of this test session: the nodes see none of it
    cluster = SharedNothingCluster(
        Path(tempfile.mkdtemp(prefix="restyle-ray-")), hidden=[base], node_cache=base / "node-cache", nodes=len(NODES)
    )
    cluster.start()
    yield cluster
    import ray

    ray.shutdown()
    cluster.stop()


@pytest.fixture(scope="module")
def driver_env(cluster, tmp_path_factory) -> dict[str, str]:
    """What a driver process (the CLI, a service) needs to use the cluster; its temp files are hidden too."""
    temp = tmp_path_factory.mktemp("driver-tmp")
    return {
        "RESTYLE_ENGINE": "ray",
        "RESTYLE_RAY_ADDRESS": cluster.address,
        "RESTYLE_RAY_NODE_IP": cluster.driver_ip,
        "RESTYLE_RAY_CPUS_PER_ACTOR": "1",
        "TMPDIR": str(temp),
        "RAY_AUTH_MODE": "disabled",
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(
        tmp_path_factory.mktemp("sn") / "clip.mp4", width=320, height=180, rate=25, seconds=3, keyframe_interval=25
    )


def here(input: Path, output: Path, spec: JobSpec) -> Path:
    """The same job on the local pool of this machine, with the cluster's chunk plan (2 workers, 1 s chunks)."""
    run(input, output, spec, settings=Settings(workers=2, threads=1, chunk_seconds=1))
    return output


def assert_same_video(made: Path, expected: Path, source: Path) -> None:
    (pts, frames), (want_pts, want) = decode_frames(made), decode_frames(expected)
    assert pts == want_pts == decode_frames(source)[0]  # every frame, at its time
    assert [f.tobytes() for f in frames] == [f.tobytes() for f in want]  # bit for bit
    assert packets(made, "audio") == packets(source, "audio") != []


def test_the_nodes_cannot_see_the_drivers_files(cluster, clip):
    import ray

    ray.init(
        address=cluster.address,
        namespace="restyle-test",
        _node_ip_address=cluster.driver_ip,
        ignore_reinit_error=True,
        log_to_driver=False,
    )

    @ray.remote(num_cpus=1)
    def look(path: str) -> tuple[str, bool]:
        return ray.util.get_node_ip_address(), os.path.exists(path)

    seen = ray.get(
        [
            look.options(
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == ip), soft=False
                )
            ).remote(str(clip))
            for ip in NODES
        ]
    )
    assert seen == [(ip, False) for ip in NODES]  # the clip is there for the driver, not for any node
    assert clip.is_file()


def test_the_cli_restyles_a_local_file_with_a_painting_and_a_work_dir(cluster, driver_env, clip, tmp_path):
    picture = painting(tmp_path / "painting.png", size=(256, 256))
    env = os.environ | driver_env | {"RESTYLE_CHUNK_SECONDS": "1"}

    def restyle(output: str) -> subprocess.CompletedProcess:
        """The CLI on the driver, into ``output``, with the same picture and work dir every time."""
        command = ["run", str(clip), "-o", str(tmp_path / output), "--style-image", str(picture)]
        command += ["--work-dir", str(tmp_path / "w"), "--json"]
        return subprocess.run(
            [sys.executable, "-m", "restyle.cli", *command], env=env, capture_output=True, text=True, timeout=600
        )

    done = restyle("out.mp4")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    # 75 frames at 1 s a chunk on 2 actors: two rounds, the last one in halves (restyle/media/chunks.py)
    assert report["frames"] == 75 and report["chunks"] == 6 and report["output_check"]["ok"]
    # Both nodes ran chunks, each on the runtime its CPU chose, fetching the input's pieces and the picture itself.
    assert set(report["nodes"]) == set(NODES), report["nodes"]
    assert sum(n["chunks"] for n in report["nodes"].values()) == 6
    assert all(
        n["runtime"].startswith("openvino") and n["bytes_in"] > picture.stat().st_size for n in report["nodes"].values()
    )
    assert len(list((tmp_path / "w").glob("*/*.mp4"))) == 6  # the segments came back to the driver's work dir
    expected = here(clip, tmp_path / "here.mp4", JobSpec(model="style-image", style_image=str(picture)))
    assert_same_video(tmp_path / "out.mp4", expected, clip)

    again = restyle("again.mp4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["chunks_reused"] == 6  # resumed from the driver's work dir: nothing sent out


def test_the_cli_scores_a_batch_of_mixed_media_on_the_cluster(cluster, driver_env, tmp_path):
    """The hostile batch (testing/corpus.py) through the CLI on a cluster that sees nothing of this disk: every
    good item scored on the cluster's nodes, as here; every bad one failed with its reason; the video's sound kept."""
    from testing.corpus import BATCH_BAD, BATCH_GOOD, make_batch

    media = make_batch(tmp_path / "media")
    done = subprocess.run(
        [sys.executable, "-m", "restyle.cli", "run", str(media), "-o", str(tmp_path / "styled"), "--style", "3"],
        env=os.environ | driver_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 3, done.stderr[-3000:]  # some items failed: the bad ones
    rows = {r["input"]: r for r in map(json.loads, (tmp_path / "styled" / "manifest.jsonl").read_text().splitlines())}
    assert {name for name, r in rows.items() if r["state"] == "succeeded"} == set(BATCH_GOOD)
    assert all(word in rows[name]["reason"] for name, word in BATCH_BAD.items())
    nodes = {r["node"] for r in rows.values() if r["state"] == "succeeded"}
    assert nodes and not nodes & {"local", ""}, nodes  # scored on the cluster's nodes
    here = run_batch(media, tmp_path / "here", JobSpec(style="3"), settings=Settings(workers=1, threads=1))
    pictures = [r.output for r in here.rows if r.kind == "image" and r.output]
    assert len(pictures) == 5
    assert all(
        (tmp_path / "styled" / name).read_bytes() == (tmp_path / "here" / name).read_bytes() for name in pictures
    )
    assert packets(tmp_path / "styled" / "b/clip.mp4", "audio") == packets(media / "b/clip.mp4", "audio")


def service_jobs(service, clip: Path, tmp_path: Path, detector: Path | None) -> None:
    """A painting, a registered ONNX model and a registered detector (records; not without ``detector``), each
    checked against a run here."""
    from restyle.client.client import Client

    alice, admin = Client(service.url, ALICE), Client(service.url, ROOT)
    picture = painting(tmp_path / "painting.png", size=(256, 256))
    admin.add_model("negative", negative_model(tmp_path / "neg.onnx"))
    jobs = {
        "painting": alice.submit(clip, style_image=picture),
        "negative": alice.submit(clip, model="negative"),
    }
    if detector is not None:
        admin.add_model("moderation", detector)
        pan = make_motion_clip(
            tmp_path / "pan.mp4", packaged_photo(), motion="pan", width=320, height=360, rate=10, seconds=2
        )
        jobs["moderation"] = alice.submit(pan, model="moderation")
    ended = {name: service.wait_for(job["id"], timeout=300) for name, job in jobs.items()}
    for name, job in ended.items():
        assert job["state"] == "succeeded", (name, job["reason"], service.log.read_text()[-3000:])
        assert set(job["figures"]["nodes"]) <= set(NODES), job["figures"]

    made = alice.download(ended["painting"]["id"], tmp_path / "painting.mp4")
    assert_same_video(
        made, here(clip, tmp_path / "painting-here.mp4", JobSpec(model="style-image", style_image=str(picture))), clip
    )
    made = alice.download(ended["negative"]["id"], tmp_path / "negative.mp4")
    assert_same_video(
        made,
        here(clip, tmp_path / "negative-here.mp4", JobSpec(model="onnx", model_file=str(tmp_path / "neg.onnx"))),
        clip,
    )
    if detector is not None:
        made = alice.download(ended["moderation"]["id"], tmp_path / "faces.jsonl")
        expected = here(pan, tmp_path / "faces-here.jsonl", JobSpec(model="yolo", model_file=str(detector)))
        lines = made.read_text().splitlines()
        assert len(lines) == 20 and lines == expected.read_text().splitlines()
        assert ended["moderation"]["records"]["frames_with_detections"] > 0
    # The job page says where its chunks ran and on what runtime each node chose.
    with httpx.Client(base_url=service.url) as browser:
        sign_in(browser, ALICE)
        page = browser.get(f"/jobs/{ended['painting']['id']}").text
    assert any(f"Node {ip}" in page for ip in NODES) and "openvino" in page


def test_the_service_on_embedded_stores_runs_paintings_models_and_detectors(
    cluster, driver_env, clip, detector, tmp_path
):
    from tests.service.conftest import Service

    env = driver_env | {"RESTYLE_TOKENS": f"alice:submitter:{ALICE},root:admin:{ROOT}", "TEST_ADMIN_TOKEN": ROOT}
    service = Service(tmp_path / "home", env)  # RESTYLE_HOME: folders the nodes cannot see
    try:
        service_jobs(service, clip, tmp_path, detector)
    finally:
        service.stop()


def test_the_service_on_seaweedfs_and_postgresql(cluster, driver_env, seaweedfs, postgres, clip, tmp_path):
    """The embedded-stores test's painting and registered model, on S3 and PostgreSQL (the detector's records
    take the same path from the store as the model's video)."""
    import psycopg

    from tests.service.conftest import Service

    name = f"sn{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    env = driver_env | {f"RESTYLE_{k.upper()}": v for k, v in s3_settings(seaweedfs).items()}
    env |= {
        "RESTYLE_DATA_URL": f"s3://data/{name}",
        "RESTYLE_SYSTEM_URL": f"s3://system/{name}",
        "RESTYLE_DATABASE_URL": postgres.url.rsplit("/", 1)[0] + f"/{name}",
        "RESTYLE_TOKENS": f"alice:submitter:{ALICE},root:admin:{ROOT}",
        "TEST_ADMIN_TOKEN": ROOT,
    }
    service = Service(tmp_path / "home", env)
    try:
        service_jobs(service, clip, tmp_path, None)
    finally:
        service.stop()


def test_a_lost_node_costs_only_its_chunks_and_a_cold_node_joins(cluster, driver_env, tmp_path, monkeypatch):
    """Pre-empt the node on 127.0.0.4 (its raylet and every process under it) mid-job; then a new node with
    empty folders joins on 127.0.0.5 and works on the next job from its first chunk. Runs last."""
    import ray

    from restyle.engines.ray import RayEngine
    from testing.ray_clusters import lose_node

    monkeypatch.setenv("TMPDIR", driver_env["TMPDIR"])
    clip = make_clip(tmp_path / "long.mp4", width=320, height=180, rate=25, seconds=6, keyframe_interval=25)
    engine = RayEngine(cluster.address, cpus_per_actor=1, node_ip=cluster.driver_ip)
    assert engine.workers == 2
    lost: list[int] = []

    def lose_a_node() -> None:
        deadline = time.monotonic() + 300
        while not lost and time.monotonic() < deadline:
            if len(list((tmp_path / "work").glob("*/*.mp4"))) >= 2:
                node = next(n for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == NODES[1])
                lost.extend(lose_node(node))
            time.sleep(0.05)

    thread = threading.Thread(target=lose_a_node)
    thread.start()
    report = run(
        clip,
        tmp_path / "out.mp4",
        JobSpec(style="4"),
        settings=Settings(chunk_seconds=0.5),
        engine=engine,
        work=tmp_path / "work",
    )
    thread.join()
    assert lost, "the node was not lost mid-job"
    assert 1 <= report.chunks_retried <= 2  # only what it had in flight (and a finished result it still held)
    assert report.frames == 150 and report.chunks == 12
    expected = tmp_path / "here.mp4"
    run(clip, expected, JobSpec(style="4"), settings=Settings(workers=2, threads=1, chunk_seconds=0.5))
    assert_same_video(tmp_path / "out.mp4", expected, clip)

    cluster.add_node("127.0.0.5")  # cold: no actor, an empty node cache, none of the driver's files
    picture = painting(tmp_path / "painting.png", size=(128, 128))
    spec = JobSpec(model="style-image", style_image=str(picture))
    report = run(
        clip,
        tmp_path / "joined.mp4",
        spec,
        settings=Settings(chunk_seconds=0.5),
        engine=engine,
        work=tmp_path / "work2",
    )
    assert report.nodes["127.0.0.5"]["chunks"] >= 1, report.nodes
    assert report.nodes["127.0.0.5"]["bytes_in"] > picture.stat().st_size  # it fetched the picture and the input
    assert NODES[1] not in report.nodes
    run(clip, tmp_path / "joined-here.mp4", spec, settings=Settings(workers=2, threads=1, chunk_seconds=0.5))
    assert_same_video(tmp_path / "joined.mp4", tmp_path / "joined-here.mp4", clip)
