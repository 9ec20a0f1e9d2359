"""``restyle run DIR -o OUTDIR`` (or ``--list FILE``): a batch, with a bar by items (failed so far, frames, ETA)
and an exit status that says whether every item succeeded (0), some failed (3), or the batch stopped (4)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from restyle.cli.progress import ProgressBar
from restyle.config import Settings
from restyle.jobspec import JobSpec


def run_batch_command(args: argparse.Namespace, spec: JobSpec, settings: Settings) -> int:
    from restyle.pipeline.batch import run_batch

    bar = ProgressBar(args, Path(args.input).name, "item")

    def progress(done) -> None:
        bar.show(done.done, done.items, f"{done.failed} failed, {done.frames} frames")

    try:
        report = run_batch(
            args.input,
            args.output,
            spec,
            settings=settings,
            max_failures=args.max_failures,
            list_file=args.list,
            on_progress=progress,
        )
    finally:
        bar.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        for row in report.to_dict()["failures"][:20]:
            print(f"  failed: {row['input']}: {row['reason']}", file=sys.stderr)
    return report.exit_status
