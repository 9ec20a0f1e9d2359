import numpy as np
import pytest
from PIL import Image

from restyle.errors import ModelError
from restyle.handlers import ModelSpec, Runtime, load_model
from restyle.handlers.styles import ArbitraryStyle

RUNTIME = Runtime("cpu", threads=2)
BACKENDS = ["onnxruntime", "openvino"]  # CI installs both; OpenVINO is the optional extra


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:90, 0:161]
    base = np.stack([xx * 255 // 160, yy * 255 // 89, (xx + yy) % 256], axis=-1).astype(np.uint8)
    noisy = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    return np.stack([base, noisy])


@pytest.mark.parametrize("backend", BACKENDS)
def test_multistyle_restyles_odd_sized_frames(frames, backend):
    model = load_model(ModelSpec.styles("7"), Runtime("cpu", threads=2, backend=backend))
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


def test_openvino_gives_onnxruntimes_frames_within_40_db(frames):
    from tests.conftest import psnr

    ours = load_model(ModelSpec.styles("7"), Runtime("cpu", threads=2, backend="openvino")).predict(frames)
    theirs = load_model(ModelSpec.styles("7"), Runtime("cpu", threads=2, backend="onnxruntime")).predict(frames)
    assert psnr(ours, theirs) >= 40


def test_bf16_runs_on_openvino_and_is_refused_on_onnxruntime(frames):
    from tests.conftest import psnr

    exact = load_model(ModelSpec.styles("7"), Runtime("cpu", threads=2)).predict(frames)
    fast = load_model(ModelSpec.styles("7"), Runtime("cpu", threads=2, precision="bf16")).predict(frames)
    assert 20 <= psnr(fast, exact)  # bf16 where the CPU has it (lossy), float32 elsewhere (exact)
    with pytest.raises(ModelError, match="needs the openvino backend"):
        Runtime("cpu", backend="onnxruntime", precision="bf16").backend_name


@pytest.mark.parametrize("backend", BACKENDS)
def test_style_image_runs_at_the_frames_own_size(frames, tmp_path, backend):
    picture = tmp_path / "waves.png"
    yy, xx = np.mgrid[0:200, 0:300]
    Image.fromarray((np.stack([np.sin(xx / 7), np.cos(yy / 5), np.sin((xx + yy) / 11)], -1) * 127 + 128).astype(np.uint8)).save(picture)
    model = load_model(ModelSpec.with_style_image(picture), Runtime("cpu", threads=2, backend=backend))
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
