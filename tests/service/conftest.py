"""Service processes for the end-to-end tests: `restyle serve` and `restyle worker`, for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testing.servers import free_port, stop_group, wait_for_port


class Service:
    """A running `restyle serve` with its own home, and the means to talk to it."""

    def __init__(self, home: Path, env: dict[str, str], local_workers: int = 1, port: int | None = None):
        self.home, self.port = home, port or free_port()
        self.env = os.environ | {
            "RESTYLE_HOME": str(home),
            "RESTYLE_PORT": str(self.port),
            "RESTYLE_POLL_SECONDS": "0.3",
            "RESTYLE_IDLE_SECONDS": "0.3",
            "RESTYLE_WORKERS": "1",
            "RESTYLE_CHUNK_SECONDS": "1",
            "RESTYLE_LOCAL_WORKERS": str(local_workers),
            **env,
        }
        self.log = home / "serve.log"
        home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "restyle.cli", "serve"],
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, 60, self.process, self.log)
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = env.get("TEST_ADMIN_TOKEN") or (home / "admin.token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def worker(self) -> subprocess.Popen:
        log = (self.home / f"worker-{time.monotonic_ns()}.log").open("w")
        return subprocess.Popen(
            [sys.executable, "-m", "restyle.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_for_chunks(self, job_id: str, count: int, timeout: float = 120) -> dict:
        """The job once ``count`` of its chunks are stored (it is then mid-job: there is more to come)."""
        deadline = time.monotonic() + timeout
        while (job := self.http.get(f"/api/jobs/{job_id}").json())["progress"]["chunks_done"] < count:
            assert time.monotonic() < deadline, (
                f"fewer than {count} chunks after {timeout} s: {self.log.read_text()[-2000:]}"
            )
            time.sleep(0.05)
        return job

    def wait_for(self, job_id: str, states=("succeeded", "failed", "dead", "cancelled"), timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/api/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            time.sleep(0.3)
        raise AssertionError(
            f"job {job_id} still {job['state']} after {timeout} s; log: {self.log.read_text()[-3000:]}"
        )

    def wait_for_jobs(self, count: int, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.http.get("/api/jobs").json()
            if len(jobs) >= count:
                return jobs
            time.sleep(0.2)
        raise AssertionError(f"fewer than {count} jobs after {timeout} s; log: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """kill -9 the whole service: API, trigger and every worker process (one process group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        stop_group(self.process)


@pytest.fixture()
def start_service(tmp_path):
    started: list[Service] = []

    def start(
        env: dict[str, str] | None = None, local_workers: int = 1, port: int | None = None, home: Path | None = None
    ) -> Service:
        service = Service(home or tmp_path / f"home{len(started)}", env or {}, local_workers, port)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
