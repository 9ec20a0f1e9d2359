"""The CLI's progress bar (tqdm on stderr): work already done (reused chunks, items stored before) is its start,
not its speed, so the ETA is what is left over the recent speed."""

from __future__ import annotations

import argparse
import sys


class ProgressBar:
    def __init__(self, args: argparse.Namespace, name: str, unit: str):
        self.off, self.name, self.unit, self.bar = args.quiet or args.json, name, unit, None

    def show(self, done: int, total: int, postfix: str = "") -> None:
        if self.off:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                unit=self.unit,
                desc=self.name,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} " + self.unit + "s [{elapsed}, ETA {remaining}{postfix}]",
            )
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
