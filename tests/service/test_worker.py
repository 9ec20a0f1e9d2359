"""A service worker keeps its pool, and the networks loaded in it, from one job to the next."""

import threading
import time

import pytest
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.context import Context
from restyle.service.http.app import create_app
from restyle.service.worker import Worker

TOKEN = "alice-token-0123456789"


@pytest.mark.slow
def test_four_style_jobs_in_a_row_load_the_26_style_network_once_per_worker_process(tmp_path, clips):
    settings = Settings(home=tmp_path, tokens=f"alice:submitter:{TOKEN}", workers=2, threads=1, chunk_seconds=0.5)
    styles = ("1", "7", "3:0.5,12:0.5", "19")
    with TestClient(create_app(settings)) as client:
        for style in styles:
            with open(clips["silent"], "rb") as video:
                made = client.post(
                    "/api/jobs",
                    files={"file": ("clip.mp4", video, "video/mp4")},
                    data={"style": style},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
            assert made.status_code == 201, made.text
        worker, stop = Worker(Context(settings), "test-worker"), threading.Event()
        runner = threading.Thread(target=worker.run, args=(stop,))
        runner.start()
        try:
            ids = [job["id"] for job in client.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).json()]
            jobs = worker.context.jobs
            deadline = time.monotonic() + 300
            while any(jobs.get(i).state not in ("succeeded", "failed", "dead") for i in ids):
                assert time.monotonic() < deadline, [jobs.get(i).state for i in ids]
                stop.wait(0.5)
        finally:
            stop.set()
            runner.join(timeout=60)
        ended = [jobs.get(i) for i in ids]
    assert [job.state for job in ended] == ["succeeded"] * 4, [(j.state, j.reason) for j in ended]
    assert all(job.figures["chunks"] >= 4 and job.figures["workers"] == 2 for job in ended)
    assert all(
        job.figures["precision"] in ("f32", "bf16", "int8", "check") and job.figures["precision_reason"]
        for job in ended
    )
    loaded = [job.figures["models_loaded"] for job in sorted(ended, key=lambda j: j.created_at)]
    assert 1 <= sum(loaded) <= 2 and loaded[-1] == 0, loaded  # a reload per job would load 2 every time
    assert not runner.is_alive()
