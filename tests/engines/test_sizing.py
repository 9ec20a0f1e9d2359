"""Workers follow cores and memory; frames a worker cannot hold are refused before any work (issue 12, item 4)."""

import resource
import subprocess
import sys

import pytest

from restyle.config import Settings
from restyle.engines.sizing import WORKER_BASE_BYTES, choose_layout, worker_bytes
from restyle.errors import InputError
from restyle.jobspec import JobSpec
from restyle.media.sample import make_clip
from restyle.pipeline import run
from restyle.runtime import Runtime

HUGE = (4096, 2304)  # exactly the default max_pixels: the probe lets it through


@pytest.fixture(scope="module")
def huge_clip(tmp_path_factory):
    """The attack: a few KB of video, three frames at max_pixels."""
    return make_clip(
        tmp_path_factory.mktemp("huge") / "huge.mp4", width=HUGE[0], height=HUGE[1], rate=25, seconds=0.12, audio=False
    )


def test_a_frame_no_worker_can_hold_is_refused_before_any_work(huge_clip, tmp_path):
    settings = Settings(worker_memory=2 * 1024**3)
    output = tmp_path / "out.mp4"
    with pytest.raises(InputError, match=r"needs about .* GiB in a worker.*largest frame it can take is about"):
        run(huge_clip, output, JobSpec(style=str("7")), settings=settings)
    assert not output.exists()


def test_workers_follow_memory_as_well_as_cores():
    pixels = 1920 * 1080
    one = worker_bytes(Runtime("cpu", precision="f32", backend="onnxruntime"), pixels)
    _, workers = choose_layout(Settings(worker_memory=int(one * 1.5), precision="f32", backend="onnxruntime"), pixels)
    assert workers == 1
    _, workers = choose_layout(Settings(worker_memory=one * 64, precision="f32", backend="onnxruntime"), pixels)
    assert workers >= 1 and workers == min(64, __import__("os").cpu_count())
    assert one > WORKER_BASE_BYTES + 1000 * pixels // 2  # the per-pixel share dominates at 1080p


@pytest.mark.slow
def test_the_estimate_bounds_what_a_worker_really_uses(huge_clip, tmp_path):
    """One worker (the CLI process itself) on the 4096x2304 clip stays under what layout.py budgets for it."""
    settings = Settings()
    runtime, _ = choose_layout(settings, HUGE[0] * HUGE[1])
    budget = worker_bytes(runtime, HUGE[0] * HUGE[1])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "restyle.cli",
            "run",
            str(huge_clip),
            "-o",
            str(tmp_path / "o.mp4"),
            "--workers",
            "1",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    )  # the largest child this test process waited for
    assert peak <= budget, (peak / 2**30, budget / 2**30)
