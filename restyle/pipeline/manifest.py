"""A batch's manifest: one row per input, as JSON Lines and Parquet; and a records model's predictions.

The manifest is what a person (or the next program) reads after a batch: every input, what
became of it and why. Its rows are also the batch's journal: the CLI appends each row to
``manifest.jsonl`` as its item ends, so a batch killed half-way knows on its next run what
is already stored (see :mod:`restyle.pipeline.batch`); the end rewrites it whole, in input
order, with ``manifest.parquet`` beside it.

For a records model (a detector, a classifier) ``predictions.jsonl`` / ``.parquet`` hold the
predictions themselves as one dataset: a row per image or frame, with its input (Azure ML's
``append_row``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from restyle.stores.states import ItemState  # one enum: the job store's items and the manifest's rows

MANIFEST_JSONL = "manifest.jsonl"
MANIFEST_PARQUET = "manifest.parquet"
PREDICTIONS_JSONL = "predictions.jsonl"
PREDICTIONS_PARQUET = "predictions.parquet"


ENDED = (ItemState.SUCCEEDED, ItemState.FAILED, ItemState.REUSED, ItemState.NOT_RUN)
STORED = (ItemState.SUCCEEDED, ItemState.REUSED)  # its output is there


class ManifestRow(BaseModel):
    """One input of a batch and what became of it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    input: str  # its path under the batch's root (or its object key)
    size: int = 0  # bytes
    version: str = ""  # what says the input changed: a file's mtime in ns, an object's etag
    kind: str = ""  # "image" or "video" once its content was read; "" before
    state: ItemState = ItemState.QUEUED
    reason: str = ""  # why it failed or was not run, for a person
    output: str = ""  # its output's path under the output root (or key); "" when none was written
    frames: int = 0
    seconds: float = 0.0
    runtime: str = ""  # e.g. "openvino/f32"
    precision: str = ""
    node: str = ""
    fingerprint: str = ""  # the JobSpec's (with the bytes of the files it names)


COLUMNS = list(ManifestRow.model_fields)


def manifest_files(rows: Iterable[ManifestRow]) -> dict[str, bytes]:
    """The manifest's two files, by name: JSON Lines and Parquet, the same rows in the same order."""
    rows = list(rows)
    lines = "".join(row.model_dump_json() + "\n" for row in rows).encode()
    columns = {name: [getattr(row, name) for row in rows] for name in COLUMNS}
    columns["state"] = [str(state) for state in columns["state"]]
    return {MANIFEST_JSONL: lines, MANIFEST_PARQUET: _parquet(columns=columns)}


def predictions_files(rows: Iterable[dict[str, Any]]) -> dict[str, bytes]:
    """A records model's predictions as one dataset: a row per image or frame, its input first."""
    rows = list(rows)
    lines = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows).encode()
    return {PREDICTIONS_JSONL: lines, PREDICTIONS_PARQUET: _parquet(rows=rows)}


def read_journal(path: Path) -> dict[str, ManifestRow]:
    """The last row written for each input in a manifest being written (a killed run's torn line is skipped)."""
    rows: dict[str, ManifestRow] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            row = ManifestRow.model_validate_json(line)
        except ValidationError:
            continue
        rows[row.input] = row
    return rows


def record_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def _parquet(*, columns: dict[str, list] | None = None, rows: list[dict[str, Any]] | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if columns is not None:
        table = pa.table(columns)
    else:
        keys = list(dict.fromkeys(key for row in rows or [] for key in row))  # every row's columns, first seen first
        full = [{key: row.get(key) for key in keys} for row in rows or []]
        try:  # nested records (boxes, top-k lists) become Parquet lists of structs
            table = pa.Table.from_pylist(full)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # records of changing shape: their JSON text
            table = pa.Table.from_pylist([{k: _scalar(v) for k, v in row.items()} for row in full])
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def _scalar(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else value
