"""What one scan of the inbox costs the trigger when the inbox holds many objects it already handled.

    python bench/inbox_scan.py                  # 20,000 objects
    python bench/inbox_scan.py --objects 5000 --scans 10

Makes a temporary home whose local inbox holds ``--objects`` files in 20 folders (one in ten a video
with a sidecar, the rest pictures and other files: what piles up in an inbox), lets the trigger handle
them all once (the videos become jobs), then times ``--scans`` further scans (the trigger's work every
``poll_seconds``): the CPU seconds and wall seconds of each, as the median. Nothing new arrives between
them, so every object listed is one already handled. Run it with PYTHONPATH on a checkout to measure that
checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from restyle.config import Settings
from restyle.service.context import Context
from restyle.service.trigger import Trigger


def fill(inbox: Path, objects: int) -> None:
    past = time.time() - 60  # settled: the trigger takes files that stopped growing
    for n in range(objects):
        folder = inbox / f"drops{n % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        if n % 20 == 0:
            path, body = folder / f"clip{n}.mp4", b"not really a video"
        elif n % 20 == 1:
            path, body = folder / f"clip{n - 1}.mp4.json", b'{"style": "3"}'
        else:
            path, body = folder / f"still{n}.jpg", b"picture"
        path.write_bytes(body)
        os.utime(path, (past, past))
    for folder in inbox.iterdir():
        os.utime(folder, (past, past))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--scans", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="restyle-inbox-scan-") as home:
        settings = Settings(home=Path(home), sidecar_wait_seconds=0, tokens="root:admin:bench-admin-token-0123456789")
        fill(Path(home) / "data" / "inbox", args.objects)
        trigger = Trigger(Context(settings))
        started = time.monotonic()
        made = len(trigger.scan())
        print(f"first scan: {made} jobs made in {time.monotonic() - started:.1f} s")
        cpu, wall = [], []
        for _ in range(args.scans):
            c0, w0 = time.process_time(), time.perf_counter()
            assert trigger.scan() == []
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        print(
            f"{args.objects} objects, {args.scans} scans: median {statistics.median(cpu):.3f} s CPU, "
            f"{statistics.median(wall):.3f} s wall per scan (min {min(cpu):.3f}, max {max(cpu):.3f} s CPU)"
        )


if __name__ == "__main__":
    main()
