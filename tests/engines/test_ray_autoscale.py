"""Ray at cluster scale, on clusters this module starts on 127.0.0.1 and stops by their processes' ids.

* deploy/ray-cluster.yaml's node types on Ray's fake_multinode provider (the real
  autoscaler, real raylets per node; head with 0 CPUs, worker types from 0 nodes, nodes idle
  for 6 s go): queued jobs bring nodes up through the queue scaler, the cluster goes back to
  zero; a node lost mid-job costs only its chunks.
* A fixed 2-CPU cluster: three models in a row and at once all finish (issue 11, point 5).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from restyle.handlers.base import LoadSpec, load_model
from restyle.jobspec import JobSpec
from restyle.runtime import Runtime
from testing.ray_clusters import LocalRayCluster, lose_node, wait_until, worker_nodes
from testing.ray_tasks import FrameTask, restyle_frames

pytestmark = pytest.mark.slow
RUNTIME = Runtime(device="cpu", threads=1)


def _cluster(**kwargs):
    try:
        import ray
    except ImportError:
        from testing.servers import missing

        missing('Ray is not installed (pip install -e ".[ray]")')
    ray.shutdown()  # one cluster per driver: leave any other this process joined
    cluster = LocalRayCluster(Path(tempfile.mkdtemp(prefix="restyle-ras-")), **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()


@pytest.fixture(scope="module")
def autoscaling_cluster():
    yield from _cluster(autoscaling=True, idle_minutes=0.1)


@pytest.fixture(scope="module")
def two_cpu_cluster():
    yield from _cluster(autoscaling=False, head_cpus=2)


def finish_within(seconds: float, work):
    """``work()``'s result, or a failure if it is not back in ``seconds`` (a wait forever is the bug)."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"not finished in {seconds:.0f} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


def uninterrupted(load: LoadSpec, tasks: list[FrameTask]) -> list[bytes]:
    model = load_model(load, RUNTIME)
    return [restyle_frames(task, model, RUNTIME.frames_per_call).pixels for task in tasks]


# -- on the autoscaling cluster ----------------------------------------------------------


def test_queued_jobs_start_nodes_and_an_idle_cluster_goes_back_to_zero(autoscaling_cluster, tmp_path):
    from restyle.config import Settings
    from restyle.engines.ray import RayEngine
    from restyle.service.scaler import QueueScaler
    from restyle.stores.jobs import JobStore

    engine = RayEngine(autoscaling_cluster.address, actors=1, idle_seconds=2, node_ip="127.0.0.1")
    assert worker_nodes() == []  # the head alone, 0 CPUs
    assert RayEngine(autoscaling_cluster.address, min_actors=3).workers == 3  # none fit yet: the fewest a job gets
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    styles = ["3", "7", "11"]
    for i, style in enumerate(styles):
        store.create("tenant", f"inbox/clip{i}.mp4", f"etag{i}", {"spec": JobSpec(style=style).model_dump()})
    settings = Settings(engine="ray", ray_actors_per_job=1, ray_scale_seconds=0.5, home=tmp_path)
    scaler = QueueScaler(store, settings)
    stop = threading.Event()
    thread = threading.Thread(target=scaler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # Nodes for the queue, before any actor asks: the scaler's request alone starts them.
        wait_until(lambda: len(worker_nodes()) >= 2, 90, what="nodes starting for 3 queued jobs")
        assert scaler.requested == [{"CPU": 1.0}] * 3

        def one_job(worker: str) -> int:
            job = store.claim(worker, lease_s=120)
            spec = job.params.spec
            tasks = [FrameTask(i, spec) for i in range(3)]
            results = list(engine.map(restyle_frames, LoadSpec("styles"), RUNTIME, tasks))
            store.succeed(job.id, worker, f"outbox/{job.id}.mp4", {})
            return len(results)

        workers = [threading.Thread(target=one_job, args=(f"w{i}",)) for i in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(180)
        assert store.counts() == {"succeeded": 3}
        assert store.depth() == 0
        assert engine.models == [(LoadSpec("styles"), RUNTIME)]  # one loaded model served the 3 styles
        wait_until(lambda: scaler.requested == [], 10, what="the request withdrawn")
        # Actors idle 2 s stop, then nodes idle 6 s go: back to the head alone.
        wait_until(lambda: worker_nodes() == [], 90, what="the cluster back to zero worker nodes")
        assert engine.models == []
    finally:
        stop.set()
        thread.join(10)


def test_a_node_lost_mid_job_costs_only_its_chunks(autoscaling_cluster):
    from restyle.engines.ray import RayEngine

    engine = RayEngine(autoscaling_cluster.address, actors=2, idle_seconds=2, node_ip="127.0.0.1")
    load, spec = LoadSpec("styles"), JobSpec(style="9")
    tasks = [FrameTask(i, spec, frames=6, width=192, height=108) for i in range(14)]
    done: list = []
    lost: dict = {}
    finished = threading.Event()
    # The service's scaler asks for room for its running job (2 actors): two nodes, before the job starts.
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[{"CPU": 1}] * 2)
    try:
        wait_until(lambda: len(worker_nodes()) >= 2, 120, what="two nodes for the job")

        def lose_a_node() -> None:
            while not lost and not finished.is_set():
                # Two chunks stored, and both actors up on nodes of their own: the victim dies mid-chunk.
                if len(done) >= 2 and len(set(engine.nodes.values())) >= 2:
                    victim = next(n for n in worker_nodes() if n["NodeID"] == list(engine.nodes.values())[0])
                    lost["node"], lost["done"] = victim["NodeID"], len(done)
                    lost["pids"] = lose_node(victim)  # pre-emption: the node and its actors are gone, no goodbye
                time.sleep(0.05)

        killer = threading.Thread(target=lose_a_node)
        killer.start()
        try:
            finish_within(300, lambda: [done.append(r) for r in engine.map(restyle_frames, load, RUNTIME, tasks)])
        finally:
            finished.set()
            killer.join()
        assert lost, "no node was lost mid-job"
        assert sorted(r.index for r in done) == list(range(len(tasks)))  # the job is complete
        # Only the lost node's chunk in flight was redone (one actor a node: one chunk).
        assert dict(engine.redone_on) == {lost["node"]: 1}, engine.redone_on
        assert engine.redone == 1
        # And the output is the uninterrupted run's, bit for bit.
        by_index = {r.index: r.pixels for r in done}
        assert [by_index[i] for i in range(len(tasks))] == uninterrupted(load, tasks)
        # Ray restarted the lost actor (max_restarts) where there was room — on the surviving node once a CPU is
        # free there, or on a node the autoscaler starts — and it took chunks: never again on the lost node.
        more = finish_within(120, lambda: list(engine.map(restyle_frames, load, RUNTIME, tasks)))
        assert len(more) == len(tasks) and sorted(r.index for r in more) == list(range(len(tasks)))
        assert lost["node"] not in {r.node for r in more}, "a chunk ran on the lost node"
        assert len({r.node for r in more}) >= 1 and engine.redone == 1  # the second job lost nothing
        print(
            "chunks by node:",
            {n[-5:]: sum(r.node == n for r in done + more) for n in {r.node for r in done + more}},
            "lost",
            lost["node"][-5:],
            "after",
            lost["done"],
            "chunks",
        )
    finally:
        request_resources(bundles=[])  # the next test starts from a cluster that may go back to zero


def test_restyle_serve_on_ray_scales_from_zero_on_its_queue_and_back(autoscaling_cluster, clips, tmp_path):
    """The whole service (API, trigger, scaler, 3 worker processes) with RESTYLE_ENGINE=ray
    on the autoscaling cluster."""
    import ray

    from tests.service.conftest import Service

    if ray.is_initialized() and not ray.get_runtime_context().gcs_address.endswith(f":{autoscaling_cluster.port}"):
        ray.shutdown()  # joined another cluster
    if not ray.is_initialized():
        ray.init(address=autoscaling_cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False)
    wait_until(lambda: worker_nodes() == [], 90, what="an empty cluster")
    env = {
        "RESTYLE_ENGINE": "ray",
        "RESTYLE_RAY_ADDRESS": autoscaling_cluster.address,
        "RESTYLE_RAY_NODE_IP": "127.0.0.1",
        "RESTYLE_RAY_ACTORS_PER_JOB": "1",
        "RESTYLE_RAY_SCALE_SECONDS": "0.5",
        "RESTYLE_RAY_ACTOR_IDLE_SECONDS": "2",
        "RAY_AUTH_MODE": "disabled",
    }
    service = Service(tmp_path / "home", env, local_workers=3)
    try:
        jobs = []
        for style in ("2", "8", "14"):
            with open(clips["pal"], "rb") as f:
                jobs.append(
                    service.http.post("/api/jobs", files={"file": ("pal.mp4", f)}, data={"style": style}).json()
                )
        wait_until(lambda: len(worker_nodes()) >= 1, 90, what="nodes for the queued jobs")
        peak = 0
        for job in jobs:
            done = service.wait_for(job["id"], timeout=240)
            assert done["state"] == "succeeded", (done, service.log.read_text()[-3000:])
            peak = max(peak, len(worker_nodes()))
        assert peak >= 1
        wait_until(lambda: worker_nodes() == [], 120, what="the cluster back to zero worker nodes")
        assert "scaling the Ray cluster on the job queue" in service.log.read_text()
    finally:
        service.stop()


# -- on a fixed 2-CPU cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    """styles, style-image (a made-up painting) and an ONNX model built here: three LoadSpecs."""
    import onnx
    from onnx import TensorProto, helper
    from PIL import Image

    root = tmp_path_factory.mktemp("models")
    y, x = np.mgrid[0:128, 0:128]
    painting = np.stack([(x * 2) % 256, (y * 5) % 256, ((x + y) * 3) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(painting).save(root / "painting.png")
    # Invert the picture: NCHW floats on 0..1 in, 1 - x out, any batch and size.
    graph = helper.make_graph(
        [helper.make_node("Sub", ["one", "image"], ["inverted"])],
        "invert",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("inverted", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), root / "invert.onnx")
    return [
        (LoadSpec("styles"), JobSpec(style="5")),
        (LoadSpec("style-image"), JobSpec(model="style-image", style_image=str(root / "painting.png"))),
        (LoadSpec("onnx", str(root / "invert.onnx")), JobSpec(model="onnx", model_file=str(root / "invert.onnx"))),
    ]


def test_three_models_in_a_row_and_at_once_on_two_cpus_all_finish(two_cpu_cluster, three_models):
    """Each model's actors take the CPUs of the idle actors of the others instead of waiting for them."""
    from restyle.engines.ray import RayEngine

    engine = RayEngine(two_cpu_cluster.address, actors=2, max_models=2, idle_seconds=600, node_ip="127.0.0.1")
    assert engine.workers == 2

    def job(load: LoadSpec, spec: JobSpec) -> list[bytes]:
        tasks = [FrameTask(i, spec) for i in range(4)]
        results = sorted(engine.map(restyle_frames, load, RUNTIME, tasks), key=lambda r: r.index)
        return [r.pixels for r in results]

    for load, spec in three_models:  # in a row: each new model finds the CPUs held by the one before
        assert finish_within(180, lambda load=load, spec=spec: job(load, spec)) == uninterrupted(
            load, [FrameTask(i, spec) for i in range(4)]
        )
    assert len(engine.models) <= 2 and engine.evicted >= 2
    assert engine.models[-1][0] == three_models[-1][0]  # the last used is kept

    outputs: dict = {}

    def at_once() -> None:
        threads = [
            threading.Thread(target=lambda n=n, m=m: outputs.__setitem__(n, job(*m)))
            for n, m in enumerate(three_models)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    finish_within(240, at_once)
    assert sorted(outputs) == [0, 1, 2] and all(len(pixels) == 4 for pixels in outputs.values())
    assert len(engine.models) <= 2  # bounded again once the jobs are done
    engine.stop_idle()
    assert engine.models == []


def test_idle_actors_of_another_process_give_their_cpus_back(two_cpu_cluster, three_models):
    """Two engines (as two worker processes have) cannot see each other's actors: idle ones stop in time."""
    from restyle.engines.ray import RayEngine

    (styles, style_spec), (onnx_load, onnx_spec) = three_models[0], three_models[2]
    first = RayEngine(two_cpu_cluster.address, actors=2, idle_seconds=3, node_ip="127.0.0.1")
    second = RayEngine(two_cpu_cluster.address, actors=2, idle_seconds=600, node_ip="127.0.0.1")
    first_tasks, second_tasks = (
        [FrameTask(i, style_spec) for i in range(2)],
        [FrameTask(i, onnx_spec) for i in range(2)],
    )
    finish_within(120, lambda: list(first.map(restyle_frames, styles, RUNTIME, first_tasks)))
    assert len(first.models) == 1  # its 2 actors hold both CPUs, idle
    started = time.monotonic()
    finish_within(120, lambda: list(second.map(restyle_frames, onnx_load, RUNTIME, second_tasks)))
    assert first.models == [] and time.monotonic() - started >= 2  # it waited for them to stop, not forever
    second.stop_idle()


def test_a_model_that_does_not_load_fails_the_job_with_its_reason(two_cpu_cluster, tmp_path):
    from restyle.engines.ray import RayEngine
    from restyle.errors import RestyleError

    engine = RayEngine(two_cpu_cluster.address, actors=2, node_ip="127.0.0.1")
    missing = str(tmp_path / "missing.onnx")
    tasks = [FrameTask(i, JobSpec(model="onnx", model_file=missing)) for i in range(2)]
    with pytest.raises(RestyleError, match="cannot start.*missing.onnx"):
        finish_within(120, lambda: list(engine.map(restyle_frames, LoadSpec("onnx", missing), RUNTIME, tasks)))
    assert engine.models == []  # nothing broken is kept
