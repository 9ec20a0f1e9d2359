"""The hostile-input corpus through the pipeline: each case's end and its reason, as a table.

    python bench/reliability.py

The same corpus (testing/corpus.py) goes through a running service in
tests/service/test_hostile_inputs.py, which asserts these ends; this prints them.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from _common import machine

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.errors import RestyleError
from testing.corpus import CASES, CORPUS_MAX_FRAMES, make_corpus


def main() -> None:
    logging.disable(logging.WARNING)
    print(
        f"# bench/reliability.py, {date.today()}, {machine()}; "
        f"limits: RESTYLE_MAX_FRAMES={CORPUS_MAX_FRAMES}, others default\n"
    )
    print("| input | end | frames out | reason or notes | seconds |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="restyle-corpus-") as tmp:
        corpus = make_corpus(Path(tmp) / "in")
        for case in CASES:
            source = corpus[case.name]
            suffix = source.suffix if source.suffix in (".mkv", ".mov") else ".mp4"
            started = time.perf_counter()
            try:
                report = run(
                    source,
                    Path(tmp) / f"out-{source.stem}{suffix}",
                    JobSpec(style="7"),
                    settings=Settings(max_frames=CORPUS_MAX_FRAMES, workers=1),
                )
                end, frames, words = "restyled", str(report.frames), "; ".join(report.notes) or "-"
            except RestyleError as exc:
                end, frames, words = "failed", "-", str(exc).replace(str(source), source.name)
            print(f"| {case.name} | {end} | {frames} | {words} | {time.perf_counter() - started:.2f} |", flush=True)


if __name__ == "__main__":
    main()
