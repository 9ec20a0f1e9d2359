import numpy as np
import pytest
from PIL import Image

from restyle.errors import ModelError
from restyle.models import ModelSpec, Runtime, load_model
from restyle.models.styles import ArbitraryStyle

RUNTIME = Runtime("cpu", threads=2)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:90, 0:161]
    base = np.stack([xx * 255 // 160, yy * 255 // 89, (xx + yy) % 256], axis=-1).astype(np.uint8)
    noisy = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    return np.stack([base, noisy])


def test_multistyle_restyles_odd_sized_frames(frames):
    model = load_model(ModelSpec.styles("7"), RUNTIME)
    out = model.predict(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames).mean() > 20  # really restyled, not passed through


def test_multistyle_batches_give_the_same_frames_as_one_by_one(frames):
    model = load_model(ModelSpec.styles("3:0.5,12:0.5"), RUNTIME)
    together = model.predict(frames)
    apart = np.concatenate([model.predict(frames[i : i + 1]) for i in range(len(frames))])
    assert np.abs(together.astype(int) - apart).max() <= 1


def test_styles_differ_and_strength_mixes_the_original_back(frames):
    seven = load_model(ModelSpec.styles("7"), RUNTIME).predict(frames)
    twelve = load_model(ModelSpec.styles("12"), RUNTIME).predict(frames)
    assert np.abs(seven.astype(int) - twelve).mean() > 10
    none = load_model(ModelSpec.styles("7", strength=0.0), RUNTIME).predict(frames)
    assert np.array_equal(none, frames)


@pytest.mark.parametrize("style", ["26", "-1", "seven", "3:0.5,40:0.5"])
def test_unknown_styles_are_refused(style):
    with pytest.raises(ModelError, match="0 to 25|bad style"):
        ModelSpec.styles(style).check()


def test_style_image_runs_at_the_frames_own_size(frames, tmp_path):
    picture = tmp_path / "waves.png"
    yy, xx = np.mgrid[0:200, 0:300]
    Image.fromarray((np.stack([np.sin(xx / 7), np.cos(yy / 5), np.sin((xx + yy) / 11)], -1) * 127 + 128).astype(np.uint8)).save(picture)
    model = load_model(ModelSpec.with_style_image(picture), RUNTIME)
    assert isinstance(model, ArbitraryStyle) and model.dynamic  # the fixed 384x384 graph was made dynamic
    assert "full resolution" in model.description
    out = model.predict(frames)
    assert out.shape == frames.shape
    assert np.abs(out.astype(int) - frames).mean() > 10


def test_unreadable_style_image_is_refused(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    with pytest.raises(ModelError, match="cannot read style image"):
        ModelSpec.with_style_image(bad).check()
    with pytest.raises(ModelError, match="not found"):
        ModelSpec.with_style_image(tmp_path / "missing.jpg").check()
