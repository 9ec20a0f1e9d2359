"""The CLI's progress bar (tqdm on stderr): work already done (reused chunks, items stored before) is its start,
not its speed, so the ETA is what is left over the recent speed. Following a service's job (``restyle submit
--wait``), the bar shows the service's own ETA (``eta_given``), the one its dashboard shows, in the postfix."""

from __future__ import annotations

import argparse
import sys


class ProgressBar:
    def __init__(self, args: argparse.Namespace, name: str, unit: str, eta_given: bool = False):
        self.off = args.quiet or getattr(args, "json", False)
        self.name, self.unit, self.eta_given, self.bar = name, unit, eta_given, None

    def show(self, done: int, total: int, postfix: str = "") -> None:
        if self.off or (self.eta_given and not total):  # a queued job: nothing to measure yet
            return
        if self.bar is None:
            from tqdm import tqdm

            eta = "" if self.eta_given else ", ETA {remaining}"
            self.bar = tqdm(
                total=total,
                initial=done,
                unit=self.unit,
                desc=self.name,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} " + self.unit + "s [{elapsed}" + eta + "{postfix}]",
            )
        if total != self.bar.total:  # a service's job learns its frame count once it runs
            self.bar.total = total
        if self.eta_given:  # a poll a second: shown when the frames or the state and ETA moved
            if (done, postfix) != (self.bar.n, self.bar.postfix):
                self.bar.n = done
                self.bar.set_postfix_str(postfix)
            return
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
