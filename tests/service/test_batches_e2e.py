"""Batches through the whole service, for real: `restyle serve` and its workers as processes, the CLI's client, and
a worker killed with SIGKILL in the middle of a batch's video."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from restyle.media.sample import make_clip
from tests.conftest import decode_frames
from tests.service.test_batches import picture

pytestmark = pytest.mark.slow


def cli(service, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "restyle.cli", *args, "--server", service.url, "--token", service.token]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=service.env)


def test_restyle_batch_waits_for_the_end_and_exits_with_what_became_of_the_items(start_service, tmp_path):
    service = start_service()
    local = tmp_path / "photos"  # on the client's machine: uploaded into the caller's space first
    for n in range(3):
        picture(local / "sub" / f"{n}.jpg")
    (local / "notes.jpg").write_text("a text file named as a picture")
    done = cli(service, "batch", "photos", "--style", "4", "--wait", "--upload", str(local))
    assert done.returncode == 3, done.stdout + done.stderr + service.log.read_text()[-3000:]
    assert "uploaded 4 files to photos" in done.stdout
    assert (service.home / "data" / "datasets" / "admin" / "photos" / "sub" / "2.jpg").is_file()
    assert "partial" in done.stdout and "3 scored" in done.stdout and "1 failed" in done.stdout
    assert "failed  notes.jpg: neither a picture" in done.stdout
    listed = cli(service, "batches")
    assert listed.returncode == 0 and listed.stdout.count("batch ") == 1 and "photos/" in listed.stdout
    stopped = cli(service, "batch", "photos", "--style", "5", "--max-failures", "0", "--wait")
    assert stopped.returncode == 4 and "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert cli(service, "batch", "nowhere", "--wait").returncode == 2  # refused: one line, exit 2


def test_a_worker_killed_mid_video_and_the_batch_still_ends_with_its_chunks_kept(start_service, tmp_path):
    service = start_service({"RESTYLE_LEASE_SECONDS": "3"}, local_workers=0)
    root = service.home / "data" / "datasets" / "admin" / "long"
    root.mkdir(parents=True)
    make_clip(root / "long.mp4", width=480, height=270, rate=25, seconds=8, keyframe_interval=25)
    picture(root / "still.jpg")
    batch = service.http.post("/api/batches", json={"prefix": "long", "spec": {"style": "5"}}).json()
    first = service.worker()
    deadline = time.monotonic() + 180
    items = service.http.get(f"/api/batches/{batch['id']}/items").json()["items"]
    video = next(item for item in items if item["input"] == "long.mp4")
    while True:
        job = service.http.get(f"/api/jobs/{video['job']}").json()  # a unit is a job of its own
        if job["progress"]["chunks_done"] >= 2:
            break
        assert time.monotonic() < deadline, service.log.read_text()[-2000:]
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = service.worker()
    try:
        deadline = time.monotonic() + 240
        while (ended := service.http.get(f"/api/batches/{batch['id']}").json())["state"] in ("listing", "running"):
            assert time.monotonic() < deadline, service.log.read_text()[-2000:]
            time.sleep(0.5)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert ended["state"] == "succeeded" and ended["progress"]["frames"] == 201, ended
    job = service.http.get(f"/api/jobs/{video['job']}").json()
    assert job["attempts"] == 2 and job["state"] == "succeeded", job
    log = [json.loads(line) for line in service.http.get(f"/api/jobs/{video['job']}/log").text.splitlines()]
    plans = [event for event in log if event["event"] == "planned"]
    assert len(plans) == 2 and plans[-1]["reused"] >= 2, plans  # the chunks the dead worker finished were kept
    assert decode_frames(service.home / "data" / ended["output"] / "long.mp4")[0] == decode_frames(root / "long.mp4")[0]
