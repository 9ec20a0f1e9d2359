"""``restyle run DIR -o OUTDIR`` (or ``--list FILE``): a batch, with a bar by items and an exit status that
says whether every item succeeded (0), some failed (3), or the batch stopped (4)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from restyle.config import Settings
from restyle.jobspec import JobSpec


class ItemBar:
    """Items done of all, failed so far, frames; the ETA is items left over recent speed (reused items are its
    start, not its speed)."""

    def __init__(self, args: argparse.Namespace, name: str):
        self.off, self.name, self.bar = args.quiet or args.json, name, None

    def update(self, progress) -> None:
        if self.off:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=progress.items,
                initial=progress.done,
                unit="item",
                desc=self.name,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} items [{elapsed}, ETA {remaining}{postfix}]",
            )
        self.bar.set_postfix_str(f"{progress.failed} failed, {progress.frames} frames", refresh=False)
        self.bar.update(progress.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch_command(args: argparse.Namespace, spec: JobSpec, settings: Settings) -> int:
    from restyle.pipeline.batch import run_batch

    bar = ItemBar(args, Path(args.input).name)
    try:
        report = run_batch(
            args.input,
            args.output,
            spec,
            settings=settings,
            max_failures=args.max_failures,
            list_file=args.list,
            on_progress=bar.update,
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
