"""Load on the service, on 127.0.0.1: concurrent submissions and steady status polling, bounded in count and time.

    python bench/load.py                      # 50 submissions, 60 s of polling at 20 requests/s, 2 workers
    python bench/load.py --submissions 20 --seconds 10

Starts `restyle serve` (embedded stores, 2 worker processes) in a temporary home with
ten submitter tokens, fires every submission at once (a thread each; a 2 s 320x180 clip
with sound, so the workers keep both cores busy while the API answers), polls job status
at a steady rate for the given time, then waits (at most 5 minutes) for every job to
end. Prints requests served, errors, API latency (p50/p99/max), jobs lost (submitted
but missing or not succeeded) and duplicate jobs (more jobs than submissions, or two
jobs for one object). Every request goes to 127.0.0.1; everything stops by itself.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import httpx

USERS = 10


@dataclass
class LoadFigures:
    submissions: int
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # status and list requests
    submit_latency_ms: dict[str, float] = field(default_factory=dict)  # uploads (a whole clip each)
    jobs_recorded: int = 0
    jobs_succeeded: int = 0
    jobs_lost: int = 0
    duplicate_jobs: int = 0
    seconds_to_drain: float = 0.0  # when the driver saw every job ended (it looks after the polling time)
    last_job_done_s: float = 0.0  # when the last job ended, by the job store's clock

    def summary(self) -> str:
        lat, sub = self.latency_ms, self.submit_latency_ms
        return (
            f"{self.submissions} submissions; {self.requests} requests served, "
            f"{self.errors} errors {self.error_kinds or ''}; "
            f"status latency p50 {lat.get('p50', 0):.1f} ms, p99 {lat.get('p99', 0):.1f} ms, "
            f"max {lat.get('max', 0):.1f} ms; "
            f"submission latency p50 {sub.get('p50', 0):.0f} ms, p99 {sub.get('p99', 0):.0f} ms; "
            f"jobs recorded {self.jobs_recorded}, succeeded {self.jobs_succeeded}, lost {self.jobs_lost}, "
            f"duplicates {self.duplicate_jobs}; "
            f"the last job ended {self.last_job_done_s:.1f} s after the first submission"
        )


def run_load(
    url: str, tokens: list[str], admin: str, clip: Path, submissions: int, seconds: float, poll_rate: float
) -> LoadFigures:
    """Drive a running service; return what it did."""
    figures = LoadFigures(submissions=submissions)
    latencies: dict[str, list[float]] = {"GET": [], "POST": []}
    errors: Counter = Counter()
    lock = threading.Lock()
    job_ids: list[str] = []
    data = clip.read_bytes()

    def timed(http: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            with lock:
                errors[type(exc).__name__] += 1
            return None
        with lock:
            latencies[method].append(time.perf_counter() - started)
            if response.status_code >= 400:
                errors[str(response.status_code)] += 1
        return response

    clients = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {t}"}, timeout=60) for t in tokens]

    def submit(n: int) -> None:
        http = clients[n % len(clients)]
        response = timed(
            http, "POST", "/api/jobs", files={"file": (f"clip-{n}.mp4", data, "video/mp4")}, data={"style": "7"}
        )
        if response is not None and response.status_code == 201:
            with lock:
                job_ids.append((n % len(clients), response.json()["id"]))

    started, wall_start = time.monotonic(), time.time()
    with ThreadPoolExecutor(submissions) as pool:  # every submission at once
        list(pool.map(submit, range(submissions)))

    # Steady polling: one request every 1/poll_rate s, job status or a job list, until the time is up.
    interval, tick = 1.0 / poll_rate, time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        while time.monotonic() - started < seconds:
            if job_ids:
                owner, job_id = random.choice(job_ids)
                pool.submit(timed, clients[owner], "GET", f"/api/jobs/{job_id}")
            if random.random() < 0.1:
                pool.submit(timed, clients[random.randrange(len(clients))], "GET", "/api/jobs")
            tick += interval
            time.sleep(max(0.0, tick - time.monotonic()))

    admin_http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=60)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = admin_http.get("/api/jobs", params={"limit": 1000}).json()
        if len(jobs) >= len(job_ids) and all(j["state"] in ("succeeded", "failed", "dead", "cancelled") for j in jobs):
            break
        time.sleep(1)
    figures.seconds_to_drain = time.monotonic() - started
    jobs = admin_http.get("/api/jobs", params={"limit": 1000}).json()
    by_id = {j["id"]: j for j in jobs}
    figures.requests = sum(len(v) for v in latencies.values())
    figures.errors = sum(errors.values())
    figures.error_kinds = dict(errors)
    figures.latency_ms, figures.submit_latency_ms = _percentiles(latencies["GET"]), _percentiles(latencies["POST"])
    figures.jobs_recorded = len(jobs)
    figures.last_job_done_s = max((j["finished_at"] or 0) - wall_start for j in jobs) if jobs else 0.0
    figures.jobs_succeeded = sum(j["state"] == "succeeded" for j in jobs)
    figures.jobs_lost = submissions - sum(1 for _, i in job_ids if by_id.get(i, {}).get("state") == "succeeded")
    inputs = Counter(j["input"] for j in jobs)
    figures.duplicate_jobs = max(0, len(jobs) - submissions) + sum(c - 1 for c in inputs.values() if c > 1)
    for http in [*clients, admin_http]:
        http.close()
    return figures


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": round(at(0.50), 2), "p99": round(at(0.99), 2), "max": round(1000 * ordered[-1], 2)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=20, help="status requests a second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", default="320x180", help="the clip each submission uploads (2 s, with sound)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine

    from restyle.media.sample import make_clip

    home = Path(tempfile.mkdtemp(prefix="restyle-load-"))
    width, height = (int(v) for v in args.size.split("x"))
    clip = make_clip(home / "clip.mp4", width=width, height=height, rate=25, seconds=2.0)
    tokens = [secrets.token_hex(16) for _ in range(USERS)]
    admin = secrets.token_hex(16)
    port = _free_port()
    env = os.environ | {
        "RESTYLE_HOME": str(home),
        "RESTYLE_PORT": str(port),
        "RESTYLE_LOCAL_WORKERS": str(args.workers),
        "RESTYLE_WORKERS": "1",
        "RESTYLE_POLL_SECONDS": "0.5",
        "RESTYLE_IDLE_SECONDS": "0.3",
        "RESTYLE_TOKENS": ",".join([f"user{i}:submitter:{t}" for i, t in enumerate(tokens)] + [f"ops:admin:{admin}"]),
    }
    log = (home / "serve.log").open("w")
    service = subprocess.Popen(
        [sys.executable, "-m", "restyle.cli", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        print(f"# bench/load.py, {date.today()}, {machine()}")
        print(
            f"restyle serve with {args.workers} workers; "
            f"{args.submissions} concurrent submissions of a 2 s {args.size} clip "
            f"from {USERS} tokens; status polling at {args.rate:g}/s for {args.seconds:g} s"
        )
        figures = run_load(f"http://127.0.0.1:{port}", tokens, admin, clip, args.submissions, args.seconds, args.rate)
        print(figures.summary())
        print(asdict(figures))
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=30)


if __name__ == "__main__":
    main()
