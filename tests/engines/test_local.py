"""The local pool keeps its workers and their loaded networks from one job to the next."""
import pytest

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.engines import LocalEngine
from tests.conftest import decode_frames, psnr

pytestmark = pytest.mark.slow


def test_four_styles_in_a_row_load_the_26_style_network_once_per_worker(clips, tmp_path):
    engine = LocalEngine(workers=2)
    settings = Settings(workers=2, threads=1, chunk_seconds=0.5)
    try:
        reports = [run(clips["silent"], tmp_path / f"{style}.mp4", JobSpec(style=style), settings=settings, engine=engine)
                   for style in ("1", "7", "3:0.5,12:0.5", "19")]
    finally:
        engine.close()
    assert all(r.chunks >= 4 and r.frames == 48 for r in reports)
    assert 1 <= engine.loads <= engine.workers  # 4 jobs x 2 workers: a reload per style would make 8
    middles = [decode_frames(tmp_path / f"{style}.mp4")[1][24] for style in ("1", "7", "3:0.5,12:0.5", "19")]
    assert max(psnr(a, b) for i, a in enumerate(middles) for b in middles[i + 1:]) < 25  # four different styles


def test_a_style_picture_and_the_styles_are_two_models_kept_side_by_side(clips, photo, tmp_path):
    engine = LocalEngine(workers=1, max_models=2)
    settings = Settings(workers=1, threads=2, chunk_seconds=1)
    painting = JobSpec(model="style-image", style_image=str(photo))
    for spec in (JobSpec(style="2"), painting, JobSpec(style="5"), painting):
        run(clips["silent"], tmp_path / "out.mp4", spec, settings=settings, engine=engine)
    assert engine.loads == 2
