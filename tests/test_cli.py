"""The command line as a user meets it: real processes, real exit codes, real files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import decode_frames, packets

RESTYLE = [sys.executable, "-m", "restyle.cli"]


def restyle(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*RESTYLE, *map(str, args)], capture_output=True, text=True, timeout=300, **kwargs)


def assert_one_clear_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("restyle: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture()
def bad_inputs(tmp_path, clips) -> dict[str, Path]:
    import av

    made = {"missing": tmp_path / "missing.mp4"}
    made["empty"] = tmp_path / "empty.mp4"
    made["empty"].write_bytes(b"")
    made["text"] = tmp_path / "text.mp4"
    made["text"].write_text("hello, I am not a video\n" * 50)
    made["truncated"] = tmp_path / "truncated.mp4"
    made["truncated"].write_bytes(clips["pal"].read_bytes()[:20000])
    made["audio"] = tmp_path / "audio.m4a"
    with av.open(str(made["audio"]), "w") as out, av.open("sine=duration=1", format="lavfi") as tone:
        stream = out.add_stream("aac", rate=44100)
        for frame in tone.decode(audio=0):
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return made


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "not found"),
        ("empty", "empty (0 bytes)"),
        ("text", "cannot read"),
        ("truncated", "cannot read"),
        ("audio", "no video stream"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(bad_inputs, tmp_path, case, expected):
    output = tmp_path / "out.mp4"
    assert_one_clear_line(restyle("run", bad_inputs[case], "-o", output, "-q"), expected)
    assert not output.exists()
    assert not list(tmp_path.glob(".out.mp4*"))


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--style", "26"], "0 to 25"),
        (["--style", "abc"], "bad style spec"),
        (["--style-image", "{tmp}/nope.jpg"], "style image not found"),
        (["--style-image", "{tmp}/broken.jpg"], "is not a picture restyle reads"),
        (["--model", "onnx:{tmp}/none.onnx"], "ONNX model not found"),
        (["--model", "keras:x.h5"], "unknown model 'keras'"),
        (["--model", "yolo:{tmp}/none.onnx"], "ONNX model not found"),
        (["--style", "3:nan"], "must be a number from 0 to"),
        (["--strength", "2"], "strength: Input should be less than or equal to 1"),
    ],
)
def test_bad_model_options_are_one_line_and_exit_2(clips, tmp_path, options, expected):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    output = tmp_path / "out.mp4"
    result = restyle("run", clips["silent"], "-o", output, "-q", *[o.format(tmp=tmp_path) for o in options])
    assert_one_clear_line(result, expected)
    assert not output.exists()


def test_unwritable_outputs_are_refused_before_any_work(clips, tmp_path):
    assert_one_clear_line(restyle("run", clips["silent"], "-o", tmp_path / "no" / "such" / "dir.mp4"), "does not exist")
    assert_one_clear_line(restyle("run", clips["silent"], "-o", tmp_path), "is a folder")
    assert_one_clear_line(restyle("run", clips["silent"], "-o", tmp_path / "x.gif"), "use one of")
    assert_one_clear_line(restyle("run", clips["silent"], "-o", "/proc/styled.mp4"), "not writable")  # even for root


def test_bad_settings_are_one_line(clips, tmp_path):
    result = restyle("run", clips["silent"], "-o", tmp_path / "o.mp4", env=os.environ | {"RESTYLE_CRF": "99"})
    assert_one_clear_line(result, "crf")


@pytest.mark.slow
def test_run_prints_figures_as_json(clips, tmp_path):
    result = restyle(
        "run", clips["pal"], "-o", tmp_path / "o.mp4", "--style", "3:0.5,12:0.5", "--strength", "0.8", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames"] == 75 and report["fps"] > 0
    assert set(report["seconds"]) >= {"probe", "plan", "score", "assemble", "total"}
    assert set(report["busy_s"]) == {"decode", "infer", "encode"}


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_and_gives_the_same_video(tmp_path):
    from restyle.media.sample import make_clip

    clip = make_clip(tmp_path / "clip.mp4", width=320, height=180, rate=25, seconds=6, keyframe_interval=25)
    work = tmp_path / "work"
    command = [
        *RESTYLE,
        "run",
        str(clip),
        "-o",
        str(tmp_path / "resumed.mp4"),
        "--work-dir",
        str(work),
        "--chunk-seconds",
        "1",
        "--workers",
        "2",
        "--json",
    ]
    victim = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(work.glob("*/*.mp4")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read().decode(errors="replace")[-2000:]
    assert not (tmp_path / "resumed.mp4").exists()
    finished = len(list(work.glob("*/*.mp4")))

    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["chunks_reused"] >= finished >= 1
    assert report["chunks_reused"] < report["chunks"]

    fresh = restyle("run", clip, "-o", tmp_path / "fresh.mp4", "--chunk-seconds", "1", "--workers", "2", "-q")
    assert fresh.returncode == 0, fresh.stderr
    resumed_pts, resumed = decode_frames(tmp_path / "resumed.mp4")
    fresh_pts, uninterrupted = decode_frames(tmp_path / "fresh.mp4")
    assert resumed_pts == fresh_pts
    assert all(a.tobytes() == b.tobytes() for a, b in zip(resumed, uninterrupted, strict=False))
    assert packets(tmp_path / "resumed.mp4", "audio") == packets(clip, "audio")


def test_styles_lists_and_draws_a_sheet(tmp_path):
    listing = restyle("styles")
    assert listing.returncode == 0 and "26 built-in styles" in listing.stdout
    sheet = tmp_path / "sheet.png"
    result = restyle("styles", "--sheet", sheet)
    assert result.returncode == 0, result.stderr
    from PIL import Image

    assert Image.open(sheet).size[0] > 7 * 256


def test_sample_makes_a_clip_with_sound(tmp_path):
    result = restyle("sample", tmp_path / "s.mp4", "--seconds", "1", "--size", "160x90")
    assert result.returncode == 0, result.stderr
    assert len(decode_frames(tmp_path / "s.mp4")[0]) == 25
    assert packets(tmp_path / "s.mp4", "audio")


@pytest.mark.slow
def test_deflicker_run_then_quality_prints_the_figures(motion_clips, tmp_path):
    source = motion_clips["zoom"]
    made = restyle(
        "run", source, "-o", tmp_path / "smooth.mp4", "--style", "7", "--deflicker", "--chunk-seconds", "1", "--json"
    )
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert report["deflicker"] == 0.8 and report["frames"] == 50 and "smooth" in report["busy_s"]
    starts = ",".join(map(str, report["chunk_starts"]))
    result = restyle("quality", source, tmp_path / "smooth.mp4", "--style", "7", "--chunk-starts", starts, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["frames"] == 50
    assert 0 < figures["input_warping_error"] < figures["warping_error"]
    assert figures["boundary_warping_error"] > 0 and figures["interior_warping_error"] > 0
    assert 0.8 < figures["ssim"] < 1 and 25 < figures["psnr"] < 50
    plain = restyle("quality", source, tmp_path / "smooth.mp4")  # no reference: flicker only, chunks planned here
    assert plain.returncode == 0 and "warping error" in plain.stdout and "SSIM" not in plain.stdout


def test_deflicker_and_quality_refuse_what_they_cannot_do(motion_clips, clips, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert_one_clear_line(restyle("run", folder, "-o", tmp_path / "out", "--deflicker"), "holds no files")
    assert_one_clear_line(restyle("run", clips["pal"], "-o", tmp_path / "o.mp4", "--deflicker", "1.5"), "deflicker")
    assert_one_clear_line(restyle("quality", motion_clips["pan"], clips["pal"]), "not the same video")
    assert_one_clear_line(restyle("quality", motion_clips["pan"], tmp_path / "missing.mp4"), "cannot read")


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real, small file system (tmpfs, 400 KiB): it fills up partway through a run."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode:
        from testing.servers import missing

        missing(f"cannot mount a tmpfs here ({made.stderr.strip()}); the disk-full test needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_fails_clearly_leaves_nothing_corrupt_and_the_rerun_resumes(tiny_disk, tmp_path):
    from restyle.media.sample import make_clip

    clip = make_clip(tmp_path / "clip.mp4", width=320, height=180, rate=25, seconds=8, keyframe_interval=25)
    work = tiny_disk / "work"
    command = [
        "run",
        clip,
        "-o",
        tmp_path / "out.mp4",
        "--work-dir",
        work,
        "--style",
        "7",
        "--chunk-seconds",
        "1",
        "--workers",
        "1",
        "--threads",
        "2",
    ]
    full = restyle(*command, "-q")
    assert_one_clear_line(full, "No space left on device")
    assert not (tmp_path / "out.mp4").exists()
    left = sorted(work.rglob("*"))
    assert not [p for p in left if p.name.endswith(".partial")]  # no half-written segment
    segments = [p for p in left if p.suffix == ".mp4"]
    assert 1 <= len(segments) < 8
    for segment in segments:  # every segment that is there is whole
        assert len(decode_frames(segment)[0]) == 25

    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)
    resumed = restyle(*command, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["chunks_reused"] == len(segments)
    fresh = restyle(
        "run",
        clip,
        "-o",
        tmp_path / "fresh.mp4",
        "--style",
        "7",
        "--chunk-seconds",
        "1",
        "--workers",
        "1",
        "--threads",
        "2",
        "-q",
    )
    assert fresh.returncode == 0, fresh.stderr
    assert [f.tobytes() for f in decode_frames(tmp_path / "out.mp4")[1]] == [
        f.tobytes() for f in decode_frames(tmp_path / "fresh.mp4")[1]
    ]

    # A full disk where the output goes: the same clear line, and no partial output left there.
    shutil.rmtree(work)
    subprocess.run(["mount", "-o", "remount,size=100k", str(tiny_disk)], check=True)
    no_room = restyle("run", clip, "-o", tiny_disk / "styled.mp4", "--style", "7", "--chunk-seconds", "1", "-q")
    assert no_room.returncode == 2 and "No space left on device" in no_room.stderr, no_room.stderr
    assert [p.name for p in tiny_disk.iterdir() if p.is_file()] == []


def test_a_detector_writes_one_json_line_per_frame(clips, detector, tmp_path):
    output = tmp_path / "found.jsonl"
    done = restyle(
        "run", clips["silent"], "-o", output, "--model", f"yolo:{detector}", "--param", "confidence=0.3", "-q"
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == 48 and [line["frame"] for line in lines] == list(range(48))
    assert all(isinstance(line["boxes"], list) for line in lines)
    assert "frames with detections" in done.stdout
    assert_one_clear_line(
        restyle("run", clips["silent"], "-o", tmp_path / "found.mp4", "--model", f"yolo:{detector}"), "found.jsonl"
    )


def test_a_batch_exits_0_when_every_item_succeeded_3_when_some_failed_4_when_it_stopped(tmp_path, photo):
    from PIL import Image

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.open(photo).convert("RGB").resize((64, 48)).save(photos / "sub" / "a.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text("photos/sub/a.jpg\n")
    ok = restyle("run", "--list", listing, "-o", tmp_path / "listed", "--style", "2", "-q")
    assert ok.returncode == 0 and "1 items: 1 scored" in ok.stdout, ok.stderr
    (photos / "notes.jpg").write_text("not a picture")
    some = restyle("run", photos, "-o", tmp_path / "out", "--style", "2", "-q", "--json")
    assert some.returncode == 3, some.stderr
    figures = json.loads(some.stdout)
    assert (figures["succeeded"], figures["failed"]) == (1, 1) and figures["failures"][0]["input"] == "notes.jpg"
    assert "neither a picture" in figures["failures"][0]["reason"]
    stopped = restyle("run", photos, "-o", tmp_path / "stopped", "--style", "2", "-q", "--max-failures", "0")
    assert stopped.returncode == 4 and "stopped:" in stopped.stdout
    assert "failed: notes.jpg: neither a picture" in stopped.stderr and "Traceback" not in stopped.stderr
    assert_one_clear_line(restyle("run", photos, "-o", tmp_path / "x", "--max-failures", "ten"), "max failures")
    assert_one_clear_line(restyle("run", photo, "-o", tmp_path / "x.mp4", "--max-failures", "1"), "for a batch")
