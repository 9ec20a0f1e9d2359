"""The queue scaler's request follows the job store's depth
(the real autoscaler: tests/engines/test_ray_autoscale.py)."""

import threading

from restyle.config import Settings
from restyle.jobspec import JobSpec
from restyle.service import scaler
from restyle.service.scaler import QueueScaler, bundles_for
from restyle.stores.jobs import JobStore


def test_bundles_are_actor_sized_and_capped():
    settings = Settings(ray_actors_per_job=2, ray_max_requested_actors=5, ray_cpus_per_actor=2, ray_gpus_per_actor=0.5)
    assert bundles_for(0, settings) == []
    assert bundles_for(1, settings) == [{"CPU": 2.0, "GPU": 0.5}] * 2
    assert len(bundles_for(10, settings)) == 5
    assert bundles_for(1, Settings(ray_actors_per_job=1)) == [{"CPU": 1.0}]


def test_the_request_follows_queued_and_running_jobs_and_is_withdrawn_when_none(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    sent: list[list[dict]] = []
    queue_scaler = QueueScaler(store, Settings(ray_actors_per_job=1, home=tmp_path), request=sent.append)
    assert queue_scaler.step() == [] and sent == [[]]  # a fresh service withdraws any earlier request
    jobs = [store.create("t", f"inbox/{i}.mp4", f"e{i}", {"spec": JobSpec().model_dump()})[0] for i in range(3)]
    assert store.depth() == 3
    assert len(queue_scaler.step()) == 3
    queue_scaler.step()
    assert len(sent) == 2  # unchanged depth: nothing sent again
    claimed = store.claim("w", lease_s=60)
    assert store.depth() == 3 and len(queue_scaler.step()) == 3  # a running job still needs its actors
    store.succeed(claimed.id, "w", "outbox/x.mp4", {})
    assert len(queue_scaler.step()) == 2
    for job in jobs:
        if job.id != claimed.id:
            store.cancel(job.id)
    assert store.depth() == 0
    assert queue_scaler.step() == [] and sent[-1] == []
    assert [actors for _, actors in queue_scaler.history] == [0, 3, 2, 0]


def test_the_scaler_runs_only_for_ray_and_withdraws_its_request_when_stopped(tmp_path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    assert scaler.start(store, Settings(engine="local", home=tmp_path), threading.Event()) is None
    assert (
        scaler.start(store, Settings(engine="ray", ray_scale_on_queue=False, home=tmp_path), threading.Event()) is None
    )
    store.create("t", "inbox/a.mp4", "e", {})
    sent: list[list[dict]] = []
    stop = threading.Event()
    queue_scaler = QueueScaler(store, Settings(ray_scale_seconds=0.05, home=tmp_path), request=sent.append)
    thread = threading.Thread(target=queue_scaler.run, args=(stop,))
    thread.start()
    stop.wait(0.3)
    stop.set()
    thread.join(5)
    assert sent[0] == [{"CPU": 1.0}] * 2 and sent[-1] == []
