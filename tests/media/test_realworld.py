"""Real-world files come back whole: every fact of the input kept in the output, or a clear refusal (exit 2).

Each case of tests/realworld.py goes through the command line as a user runs it
(``restyle run IN -o OUT``), with a real ONNX model (a photographic negative: cheap, and
every pixel changes), cut into several chunks so the joins are tested too.
"""

from __future__ import annotations

import contextlib
import io
from fractions import Fraction
from pathlib import Path

import av
import pytest

from restyle.cli import main
from tests.handlers.test_onnx_image import negative_model
from tests.realworld import CASES, Facts, facts, mean_level, real_footage

FAMILY = {".ts": "mpegts", ".m2ts": "mpegts", ".mp4": "mov", ".mov": "mov", ".mkv": "matroska", ".webm": "matroska"}
MS = 0.0015  # MP4 edit lists and Matroska keep times to the millisecond


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return negative_model(str(tmp_path_factory.mktemp("model") / "negative.onnx"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("realworld")
    return {case.name: case.make(root / case.file) for case in CASES}


def restyle(source: Path, output: Path, model: str, *more: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(
            [
                "run",
                str(source),
                "-o",
                str(output),
                "--model",
                f"onnx:{model}",
                "--quiet",
                "--workers",
                "1",
                "--chunk-seconds",
                "0.4",
                *more,
            ]
        )
    return code, err.getvalue()


def assert_whole(before: Facts, after: Facts, suffix: str) -> None:
    """``after`` has every fact of ``before``: frames and their times, rate, shape, streams, tags, sound."""
    assert after.format.split(",")[0] == FAMILY[suffix]
    assert len(after.frame_pts_s) == len(before.frame_pts_s)
    # Matroska cannot start before 0: an input whose sound starts early (AAC priming) moves as a whole.
    shift = after.frame_pts_s[0] - before.frame_pts_s[0]
    assert abs(shift) < MS or FAMILY[suffix] == "matroska"
    assert all(abs(b + shift - a) < MS for a, b in zip(after.frame_pts_s, before.frame_pts_s, strict=False))
    assert all(abs(b + shift - a) < MS for a, b in zip(after.audio_start_s, before.audio_start_s, strict=False))
    assert after.rate == before.rate
    assert (after.sar, after.dar, after.size) == (before.sar, before.dar, before.size)
    assert after.rotation == before.rotation
    assert after.chapters == before.chapters
    assert [(kind, lang) for kind, lang, _ in after.streams] == [(kind, lang) for kind, lang, _ in before.streams]
    for (_, _, had), (_, _, has) in zip(before.streams, after.streams, strict=False):
        # MP4 marks the first track of a kind default whatever it was told; anything the input said is kept.
        assert has & had == had
    assert after.audio == before.audio  # codec, and every packet's bytes
    assert after.tags == before.tags
    assert after.timecode == before.timecode


CHECKS = [(case, suffix, refusal) for case in CASES for suffix, refusal in case.outputs.items()]


@pytest.mark.parametrize("case, suffix, refusal", CHECKS, ids=[f"{c.file}->{s}" for c, s, _ in CHECKS])
def test_real_world_file_comes_back_whole_or_is_refused(corpus, model, tmp_path, case, suffix, refusal):
    source = corpus[case.name]
    output = tmp_path / f"styled{suffix}"
    code, err = restyle(source, output, model)
    if refusal:
        assert code == 2 and err.startswith("restyle: error:") and refusal in err, err
        assert not output.exists()
        return
    assert code == 0, err
    assert_whole(facts(source), facts(output), suffix)
    assert abs(mean_level(output) - (255 - mean_level(source))) < 8  # the model's frames, not the input's


def test_webm_output_is_vp9_and_mpegts_output_keeps_its_start(corpus, model, tmp_path):
    code, err = restyle(corpus["VP9 + Opus WebM"], tmp_path / "out.webm", model)
    assert code == 0, err
    with av.open(str(tmp_path / "out.webm")) as container:
        assert container.streams.video[0].codec_context.name in ("vp9", "libvpx-vp9")
    code, err = restyle(corpus["MPEG-TS, start at 1.4 s"], tmp_path / "out.ts", model)
    assert code == 0, err
    assert facts(tmp_path / "out.ts").frame_pts_s[0] == pytest.approx(1.48, abs=0.001)


def test_anamorphic_pal_keeps_16_9_on_screen(corpus, model, tmp_path):
    for suffix in (".mp4", ".mkv"):
        code, err = restyle(corpus["PAL anamorphic 720x576 SAR 64:45"], tmp_path / f"out{suffix}", model)
        assert code == 0, err
        after = facts(tmp_path / f"out{suffix}")
        assert (after.size, after.sar, after.dar) == ((720, 576), Fraction(64, 45), Fraction(16, 9))


@pytest.mark.parametrize(
    "name",
    ["carphone", pytest.param("bikes", marks=pytest.mark.slow), pytest.param("bigbuckbunny", marks=pytest.mark.slow)],
)
def test_real_camera_footage_comes_back_whole(model, tmp_path, name):
    source = real_footage(name)
    for suffix in (".mp4", ".mkv"):
        output = tmp_path / f"{name}{suffix}"
        code, err = restyle(source, output, model, "--chunk-seconds", "1")
        assert code == 0, err
        assert_whole(facts(source), facts(output), suffix)


def test_every_run_checks_its_output_against_the_input(corpus, model, tmp_path):
    from restyle import JobSpec, run
    from restyle.config import Settings

    report = run(
        corpus["mp4: AAC + AC-3 + MP3 and a timecode"],
        tmp_path / "out.mkv",
        JobSpec(model="onnx", model_file=str(model)),
        settings=Settings(workers=1, chunk_seconds=0.4),
    )
    check = report.output_check
    assert check["ok"] and check["frames"] == [25, 25] and check["duration_s"] == [1.0, 1.0]
    assert len(check["av_offsets_s"]) == 3
    assert all(abs(before - after) <= 0.002 for before, after in check["av_offsets_s"])
    assert check["av_offsets_s"][0][0] == pytest.approx(-0.0213, abs=0.001)  # AAC priming, kept
