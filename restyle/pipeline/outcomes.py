"""What a batch keeps of its items: their rows (written as they end), its progress, and its report."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from restyle.errors import OutputError
from restyle.files import write_whole
from restyle.pipeline.images import ImageBatchResult, ImageOutcome
from restyle.pipeline.listing import BatchItem
from restyle.pipeline.manifest import (
    MANIFEST_JSONL,
    STORED,
    ItemState,
    ManifestRow,
    manifest_files,
    predictions_files,
    record_lines,
)
from restyle.pipeline.report import RunReport


class ExitStatus:
    """What ``restyle run`` on a batch exits with (2 is an error before any item ran, as for every command)."""

    ALL_SCORED = 0
    SOME_FAILED = 3
    STOPPED = 4


@dataclass(frozen=True)
class BatchProgress:
    items: int
    succeeded: int = 0
    failed: int = 0
    reused: int = 0
    not_run: int = 0
    frames: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.reused + self.not_run

    @property
    def left(self) -> int:
        return self.items - self.done

    def plus(self, row: ManifestRow) -> BatchProgress:
        """This progress and one more item ended."""
        field = {ItemState.SUCCEEDED: "succeeded", ItemState.FAILED: "failed", ItemState.REUSED: "reused"}.get(
            row.state, "not_run"
        )
        frames = row.frames if row.state == ItemState.SUCCEEDED else 0
        return replace(self, **{field: getattr(self, field) + 1, "frames": self.frames + frames})

    @classmethod
    def of(cls, rows: Iterable[ManifestRow], items: int) -> BatchProgress:
        rows = list(rows)
        states = Counter(row.state for row in rows)
        return cls(
            items=items,
            succeeded=states[ItemState.SUCCEEDED],
            failed=states[ItemState.FAILED],
            reused=states[ItemState.REUSED],
            not_run=states[ItemState.NOT_RUN],
            frames=sum(row.frames for row in rows if row.state == ItemState.SUCCEEDED),
        )


@dataclass(frozen=True)
class BatchReport:
    """What a batch did: every item's row, in input order, and why it stopped early if it did."""

    input: str
    output: str
    model: str
    rows: list[ManifestRow]
    stopped: str  # "" when every item was tried
    workers: int
    seconds: float

    @classmethod
    def of(
        cls, source: Path, target: Path, model: str, rows: list[ManifestRow], stopped: str, workers: int, seconds: float
    ) -> BatchReport:
        return cls(str(source), str(target), model, rows, stopped, workers, round(seconds, 3))

    @property
    def progress(self) -> BatchProgress:
        return BatchProgress.of(self.rows, len(self.rows))

    @property
    def frames(self) -> int:
        return self.progress.frames

    @property
    def exit_status(self) -> int:
        if self.stopped:
            return ExitStatus.STOPPED
        return ExitStatus.SOME_FAILED if self.progress.failed else ExitStatus.ALL_SCORED

    def to_dict(self) -> dict:
        progress = self.progress
        return {
            "input": self.input,
            "output": self.output,
            "model": self.model,
            "items": progress.items,
            "succeeded": progress.succeeded,
            "failed": progress.failed,
            "reused": progress.reused,
            "not_run": progress.not_run,
            "frames": progress.frames,
            "stopped": self.stopped,
            "workers": self.workers,
            "seconds": self.seconds,
            "manifest": str(Path(self.output) / MANIFEST_JSONL),
            "exit_status": self.exit_status,
            "failures": [{"input": r.input, "reason": r.reason} for r in self.rows if r.state == ItemState.FAILED],
        }

    def summary(self) -> str:
        p = self.progress
        text = (
            f"{p.items} items: {p.succeeded} scored, {p.reused} already done, {p.failed} failed"
            + (f", {p.not_run} not run" if p.not_run else "")
            + f"; {p.frames} frames in {self.seconds:.1f}s -> {Path(self.output) / MANIFEST_JSONL}"
        )
        return text + (f"\nstopped: {self.stopped}" if self.stopped else "")


class Journal:
    """The manifest as it is written: a row appended per item as it ends; rewritten whole at the end."""

    def __init__(self, path: Path, fingerprint: str):
        self.path, self.fingerprint = path, fingerprint
        self._file: TextIO | None = None  # opened at the first row, kept open: a batch of 100,000 opens it once

    def append(self, row: ManifestRow) -> None:
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by finish()
            self._file.write(row.model_dump_json() + "\n")
            self._file.flush()  # each row with the operating system as it ends: a killed run loses none
        except OSError as exc:
            raise OutputError(f"cannot write the manifest {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self, rows: list[ManifestRow], records: bool) -> None:
        """The manifest in input order (JSON Lines and Parquet); a records model's predictions as one dataset."""
        self.close()
        files = manifest_files(rows)
        if records:
            files |= predictions_files(_predictions(self.path.parent, rows))
        for name, data in files.items():
            write_whole(self.path.parent / name, data)


def _predictions(root: Path, rows: list[ManifestRow]) -> Iterable[dict]:
    for row in rows:
        if row.state in STORED and row.output:
            for line in record_lines((root / row.output).read_text(encoding="utf-8")):
                yield {"input": row.input, **line}


def image_row(
    item: BatchItem, outcome: ImageOutcome, result: ImageBatchResult | None, root: Path, fingerprint: str
) -> ManifestRow:
    """An image's row, its output written first (a row that says succeeded always has its output stored).
    ``result`` is None when its task never came back."""
    result = result or ImageBatchResult(())
    backend, _, precision = result.runtime.partition(" ")
    row = ManifestRow(
        input=item.input,
        size=item.size,
        version=item.version,
        kind="image",
        fingerprint=fingerprint,
        node=result.node or "local",
        runtime=backend,
        precision=precision,
    )
    if outcome.reason:
        return row.model_copy(update={"state": ItemState.FAILED, "reason": outcome.reason})
    path = root / outcome.target
    if outcome.record is not None:
        line = {"frame": 0, "time": 0.0, "width": outcome.size[0], "height": outcome.size[1], **outcome.record}
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    else:
        data = outcome.data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, data)
    except OSError as exc:
        return row.model_copy(update={"state": ItemState.FAILED, "reason": f"cannot write {path}: {exc.strerror}"})
    share = result.seconds / max(1, len(result.outcomes))
    return row.model_copy(
        update={"state": ItemState.SUCCEEDED, "output": outcome.target, "frames": 1, "seconds": round(share, 4)}
    )


def video_row(
    item: BatchItem, output: str, fingerprint: str, *, report: RunReport | None = None, reason: str = ""
) -> ManifestRow:
    row = ManifestRow(input=item.input, size=item.size, version=item.version, kind="video", fingerprint=fingerprint)
    if report is None:
        return row.model_copy(update={"state": ItemState.FAILED, "reason": reason})
    return row.model_copy(
        update={
            "state": ItemState.SUCCEEDED,
            "output": output,
            "frames": report.frames,
            "runtime": report.backend,
            "precision": report.precision,
            "node": ",".join(sorted(report.nodes)) or "local",
        }
    )


__all__ = ["BatchProgress", "BatchReport", "ExitStatus", "Journal"]
