"""The local pool: results as each chunk finishes, and workers that keep their loaded networks from job to job."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.engines import LocalEngine
from restyle.handlers import LoadSpec, Runtime
from tests.conftest import decode_frames, psnr
from tests.handlers.test_onnx_image import negative_model

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Nap:
    """An item that sleeps, and its own result: what the engine's Item and Result interfaces ask."""

    seconds: float
    pixels: int = 0
    frames: int = 1

    def ran_on(self, node: str, runtime: str, bytes_in: int) -> Nap:
        return self


def nap(item: Nap, model, batch, report) -> Nap:
    time.sleep(item.seconds)
    report(1)
    return item


def test_results_arrive_as_they_finish(tmp_path):
    load = LoadSpec("onnx", str(negative_model(str(tmp_path / "negative.onnx"))))
    engine = LocalEngine(workers=2)
    frames: list[int] = []
    try:
        results = engine.map(nap, load, Runtime("cpu", threads=1), [Nap(4.0), Nap(0.2)], frames.append)
        first = next(results)
        arrived = time.monotonic()
        assert first.seconds == 0.2  # the quick item, while the slow one still runs
        assert next(results).seconds == 4.0
        assert time.monotonic() - arrived > 2.0
        assert list(results) == []
    finally:
        engine.close()


def test_four_styles_in_a_row_load_the_26_style_network_once_per_worker(clips, tmp_path):
    engine = LocalEngine(workers=2)
    settings = Settings(workers=2, threads=1, chunk_seconds=0.5)
    try:
        reports = [
            run(clips["silent"], tmp_path / f"{style}.mp4", JobSpec(style=style), settings=settings, engine=engine)
            for style in ("1", "7", "3:0.5,12:0.5", "19")
        ]
    finally:
        engine.close()
    assert all(r.chunks >= 4 and r.frames == 48 for r in reports)
    assert 1 <= engine.loads <= engine.workers  # 4 jobs x 2 workers: a reload per style would make 8
    middles = [decode_frames(tmp_path / f"{style}.mp4")[1][24] for style in ("1", "7", "3:0.5,12:0.5", "19")]
    assert max(psnr(a, b) for i, a in enumerate(middles) for b in middles[i + 1 :]) < 25  # four different styles


def test_a_style_picture_and_the_styles_are_two_models_kept_side_by_side(clips, photo, tmp_path):
    engine = LocalEngine(workers=1, max_models=2)
    settings = Settings(workers=1, threads=2, chunk_seconds=1)
    painting = JobSpec(model="style-image", style_image=str(photo))
    for spec in (JobSpec(style="2"), painting, JobSpec(style="5"), painting):
        run(clips["silent"], tmp_path / "out.mp4", spec, settings=settings, engine=engine)
    assert engine.loads == 2
