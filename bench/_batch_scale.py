"""bench/batch.py's scale check: a batch of 100,000 tiny pictures through the CLI path's bookkeeping.

What is measured, each with restyle's own code:

* listing: ``restyle.pipeline.listing.walk`` over the tree (what ``run_batch`` lists);
* kinds: ``is_image`` on every file (``run_batch`` reads each item's kind from its content first);
* tracking: ``Batch.end`` (``restyle.pipeline.batch``), which every item goes through as it ends: its
  row appended to ``manifest.jsonl``, the failure count, the progress handed to the CLI's bar. Its
  cost per item is timed over 200 items at several batch sizes (rows already ended: 0 up to n), and
  the whole batch's cost is summed from those points (trapezoids: the cost per item grows with
  the rows already ended);
* the manifest at the end: ``Journal.finish`` of n rows (``manifest.jsonl`` and ``manifest.parquet``);
* and ``restyle run --list FILE -o OUT --style 7 -q`` end to end (scored, written, tracked) on the
  first ``score`` of the pictures (the whole command, wall clock).
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from restyle.config import Settings
from restyle.handlers import JobSpec, check
from restyle.media.sample import packaged_photo
from restyle.pipeline.batch import Batch
from restyle.pipeline.images import is_image
from restyle.pipeline.listing import walk
from restyle.pipeline.manifest import ItemState, ManifestRow
from restyle.pipeline.outcomes import Journal

PER_FOLDER = 1000
TIMED_ENDS = 200  # items whose ``Batch.end`` is timed at each measured batch size


def make_tiny(root: Path, count: int, side: int = 16) -> float:
    """``count`` side x side PNGs, PER_FOLDER a folder, each a different patch of the packaged photo; seconds."""
    clock = time.perf_counter()
    photo = np.asarray(Image.open(packaged_photo()).convert("RGB"))
    rng = random.Random(1)
    height, width = photo.shape[:2]
    for index in range(count):
        folder = root / f"d{index // PER_FOLDER:03d}"
        if index % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        y, x = rng.randrange(height - side), rng.randrange(width - side)
        Image.fromarray(photo[y : y + side, x : x + side]).save(folder / f"{index:06d}.png")
    return time.perf_counter() - clock


def tracking_cost(items: list, target: Path, sizes: list[int]) -> dict[int, float]:
    """Seconds per item of ``Batch.end`` when ``n`` rows have ended already, for each n in ``sizes``."""
    spec = JobSpec(style="7")
    handler = check(spec)
    fingerprint = spec.fingerprint(handler.file_fields)
    rows = [
        ManifestRow(
            input=item.input,
            size=item.size,
            version=item.version,
            kind="image",
            state=ItemState.SUCCEEDED,
            output=item.input,
            frames=1,
            seconds=0.01,
            runtime="openvino",
            precision="f32",
            node="local",
            fingerprint=fingerprint,
        )
        for item in items
    ]
    costs = {}
    for n in sizes:
        start = min(n, len(rows) - TIMED_ENDS)
        journal = Journal(target / f"journal-{n}.jsonl", fingerprint)
        batch = Batch(items, "", target, spec, handler, Settings(), None, journal, on_progress=lambda progress: None)
        batch.rows = {row.input: row for row in rows[:start]}  # the rows that ended before
        clock = time.perf_counter()
        for row in rows[start : start + TIMED_ENDS]:
            batch.end(row)
        costs[start] = (time.perf_counter() - clock) / TIMED_ENDS
    return costs


def summed(costs: dict[int, float], total: int) -> float:
    """The whole batch's tracking seconds: per-item costs between measured sizes joined by straight lines."""
    points = sorted(costs.items())
    seconds = 0.0
    for (n0, c0), (n1, c1) in zip(points, points[1:], strict=False):
        seconds += (n1 - n0) * (c0 + c1) / 2
    last_n, last_c = points[-1]
    return seconds + max(0, total - last_n) * last_c


def scale_check(count: int, score: int, measure_tree) -> dict:
    """The scale check's figures, printed as they come."""
    print(f"\n## scale: {count:,} tiny pictures (16x16 PNG, {PER_FOLDER:,} a folder)", flush=True)
    with tempfile.TemporaryDirectory(prefix="restyle-bench-tiny-") as tmp:
        root, out = Path(tmp) / "tiny", Path(tmp) / "out"
        out.mkdir()
        print(f"  made in {make_tiny(root, count):.1f} s (not counted)", flush=True)
        clock = time.perf_counter()
        items = list(walk(root))
        listing = time.perf_counter() - clock
        clock = time.perf_counter()
        pictures = sum(is_image(str(item.path)) for item in items)
        kinds = time.perf_counter() - clock
        print(
            f"  listing (walk): {listing:.2f} s for {len(items):,} items ({listing / len(items) * 1e6:.0f} us each); "
            f"kinds by content (is_image): {kinds:.2f} s ({pictures:,} pictures)",
            flush=True,
        )
        sizes = sorted({0, count // 10, count // 4, count // 2, 3 * count // 4, count})
        costs = tracking_cost(items, out, sizes)
        shown = ", ".join(f"{n:,} ended: {c * 1e3:.2f} ms" for n, c in sorted(costs.items()))
        tracking = summed(costs, count)
        print(f"  tracking (Batch.end per item, {TIMED_ENDS} items timed at each size): {shown}")
        print(f"  tracking summed over the {count:,} items: {tracking:.0f} s", flush=True)
        manifest = _manifest_seconds(items, out)
        print(f"  manifest at the end (Journal.finish, jsonl + parquet, {count:,} rows): {manifest:.2f} s", flush=True)
        scored = _score_some(items[:score], Path(tmp), measure_tree) if score else {}
    return {
        "items": count,
        "listing_s": listing,
        "kinds_s": kinds,
        "tracking_per_item_s": costs,
        "tracking_total_s": tracking,
        "manifest_s": manifest,
        "scored": scored,
    }


def _manifest_seconds(items: list, out: Path) -> float:
    rows = [
        ManifestRow(input=i.input, size=i.size, version=i.version, kind="image", state=ItemState.SUCCEEDED)
        for i in items
    ]
    journal = Journal(out / "manifest.jsonl", "")
    clock = time.perf_counter()
    journal.finish(rows, records=False)
    return time.perf_counter() - clock


def _score_some(items: list, work: Path, measure_tree) -> dict:
    """``restyle run --list`` on these items, end to end; the whole command's wall clock and peak memory."""
    listing = work / "some.txt"
    listing.write_text("".join(f"{item.path}\n" for item in items))
    command = [sys.executable, "-m", "restyle.cli", "run", str(listing), "--list", "-o", str(work / "scored")]
    measured = measure_tree([*command, "--style", "7", "-q"])
    manifest = work / "scored" / "manifest.jsonl"
    done = len(manifest.read_text().splitlines()) if manifest.is_file() else 0
    print(
        f"  restyle run --list ({len(items):,} of them) -o OUT --style 7 -q: {measured['wall_s']:.1f} s wall, "
        f"{len(items) / measured['wall_s']:.0f} items/s, peak RSS {measured['rss'] / 2**20:.0f} MiB; "
        f"manifest rows: {done}",
        flush=True,
    )
    return {"items": len(items), **measured}
