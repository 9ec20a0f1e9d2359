"""A big signed upload against a real `restyle serve` on 127.0.0.1: the service's memory and /healthz while it streams.

    python bench/upload.py                    # 500 MiB
    python bench/upload.py --mib 200

Starts `restyle serve` (embedded stores, no workers) in a temporary home, asks for an
upload link, PUTs the bytes (1 MiB blocks, chunked), and meanwhile samples the serve
process's resident memory (/proc/PID/status) and times /healthz every 50 ms. Prints the
upload's rate, the serve process's RSS before and at its peak, and /healthz latency
(p50, max). Everything stops by itself; the temporary home is removed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

TOKEN = "bench-admin-token-0123456789"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=500, help="upload size in MiB")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="restyle-bench-upload-") as home:
        env = os.environ | {
            "RESTYLE_HOME": home,
            "RESTYLE_PORT": str(port),
            "RESTYLE_LOCAL_WORKERS": "0",
            "RESTYLE_TOKENS": f"bench:admin:{TOKEN}",
            "RESTYLE_MAX_UPLOAD_BYTES": str((args.mib + 1) * 1024**2),
        }
        serve = subprocess.Popen(
            [sys.executable, "-m", "restyle.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            link = httpx.post(
                f"{url}/api/uploads", json={"filename": "big.mp4"}, headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()["upload_url"]
            before = rss_mib(serve.pid)
            peak, latencies, done = [before], [], threading.Event()

            def watch() -> None:
                with httpx.Client(timeout=30) as http:
                    while not done.is_set():
                        began = time.monotonic()
                        http.get(f"{url}/healthz")
                        latencies.append(time.monotonic() - began)
                        peak.append(rss_mib(serve.pid))
                        time.sleep(0.05)

            def body():
                block = os.urandom(1024**2)
                for _ in range(args.mib):
                    yield block

            watcher = threading.Thread(target=watch)
            watcher.start()
            began = time.monotonic()
            put = httpx.put(link, content=body(), timeout=600)
            seconds = time.monotonic() - began
            done.set()
            watcher.join()
            peak.append(rss_mib(serve.pid))
            print(
                f"signed PUT of {args.mib} MiB: {put.status_code} in {seconds:.1f} s ({args.mib / seconds:.0f} MiB/s)"
            )
            print(f"  serve RSS: {before:.0f} MiB before, {max(peak):.0f} MiB at peak (+{max(peak) - before:.0f} MiB)")
            print(
                f"  /healthz during it: {len(latencies)} polls, p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms"
            )
        finally:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(timeout=30)


if __name__ == "__main__":
    main()
