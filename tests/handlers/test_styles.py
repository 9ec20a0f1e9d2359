import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from restyle import machine
from restyle.errors import ModelError
from restyle.handlers import JobSpec, Runtime, check, load
from restyle.handlers.base import params_of
from restyle.handlers.styles import ArbitraryStyle
from restyle.pipeline.chunk import with_strength

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
    model = load(JobSpec(style="7"), Runtime("cpu", threads=2, backend=backend))
    out = model.predict(frames, params_of(JobSpec(style="7")))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames).mean() > 20  # really restyled, not passed through


def test_multistyle_batches_give_the_same_frames_as_one_by_one(frames):
    spec = JobSpec(style="3:0.5,12:0.5")
    model = load(spec, RUNTIME)
    together = model.predict(frames, params_of(spec))
    apart = np.concatenate([model.predict(frames[i : i + 1], params_of(spec)) for i in range(len(frames))])
    assert np.abs(together.astype(int) - apart).max() <= 1


def test_one_loaded_network_serves_every_style_and_strength(frames):
    network = load(JobSpec(style="7"), RUNTIME)  # the style is a per-call parameter, not part of what is loaded
    seven = network.predict(frames, params_of(JobSpec(style="7")))
    twelve = network.predict(frames, params_of(JobSpec(style="12")))
    assert np.abs(seven.astype(int) - twelve).mean() > 10
    assert np.array_equal(with_strength(frames, network.predict(frames, params_of(JobSpec(style="7"))), 0.0), frames)
    assert np.array_equal(network.predict(frames, params_of(JobSpec(style="7"))), seven)  # back to 7: the same frames
    fresh_twelve = load(JobSpec(style="12"), RUNTIME).predict(frames, params_of(JobSpec(style="12")))
    assert np.array_equal(fresh_twelve, twelve)


# The JobSpec refuses them at every door (issue 21); the handler's own check still does, for a spec made unchecked.
@pytest.mark.parametrize("style", ["3:nan", "0:inf", "0:1e39,1:1", "2:-1", "4:1e3000"])
def test_non_finite_and_absurd_style_weights_are_refused(style):
    with pytest.raises(ValidationError, match="must be a number from 0 to|bad style spec"):
        JobSpec(style=style)
    with pytest.raises(ModelError, match="must be a number from 0 to"):
        check(JobSpec.model_construct(style=style))


@pytest.mark.parametrize("style", ["26", "-1", "seven", "3:0.5,40:0.5"])
def test_unknown_styles_are_refused(style):
    with pytest.raises(ValidationError, match="0 to 25|bad style"):
        JobSpec(style=style)
    with pytest.raises(ModelError, match="0 to 25|bad style"):
        check(JobSpec.model_construct(style=style))


def test_openvino_gives_onnxruntimes_frames_within_40_db(frames):
    from tests.conftest import psnr

    ours = load(JobSpec(style="7"), Runtime("cpu", threads=2, backend="openvino")).predict(
        frames, params_of(JobSpec(style="7"))
    )
    theirs = load(JobSpec(style="7"), Runtime("cpu", threads=2, backend="onnxruntime")).predict(
        frames, params_of(JobSpec(style="7"))
    )
    assert psnr(ours, theirs) >= 40


def test_bf16_runs_on_openvino_and_is_refused_on_onnxruntime(frames):
    from tests.conftest import psnr

    with pytest.raises(ModelError, match="needs the openvino backend"):
        Runtime("cpu", backend="onnxruntime", precision="bf16").choose("multistyle26")
    if not machine.here().bf16:
        pytest.skip("this CPU has no native bf16 (AMX-BF16 or AVX-512 BF16): OpenVINO would run a bf16 hint at f32")
    model = load(JobSpec(style="7"), Runtime("cpu", threads=2, precision="bf16"))
    assert model.session("7").precision == "bf16"  # what the compiled model runs at, read back from OpenVINO
    exact = load(JobSpec(style="7"), Runtime("cpu", threads=2)).predict(frames, params_of(JobSpec(style="7")))
    fast = model.predict(frames, params_of(JobSpec(style="7")))
    assert 20 <= psnr(fast, exact) < float("inf")  # lossy, but the same picture


@pytest.mark.parametrize("backend", BACKENDS)
def test_style_image_runs_at_the_frames_own_size(frames, tmp_path, backend):
    picture = tmp_path / "waves.png"
    yy, xx = np.mgrid[0:200, 0:300]
    Image.fromarray(
        (np.stack([np.sin(xx / 7), np.cos(yy / 5), np.sin((xx + yy) / 11)], -1) * 127 + 128).astype(np.uint8)
    ).save(picture)
    spec = JobSpec(model="style-image", style_image=str(picture))
    model = load(spec, Runtime("cpu", threads=2, backend=backend))
    assert isinstance(model, ArbitraryStyle) and model.dynamic  # the fixed 384x384 graph was made dynamic
    assert "full resolution" in model.description
    out = model.predict(frames, params_of(spec))
    assert out.shape == frames.shape
    assert np.abs(out.astype(int) - frames).mean() > 10
    # Another picture through the same loaded network: a different style, no reload.
    other = tmp_path / "flat.png"
    Image.fromarray(np.full((64, 64, 3), (200, 40, 40), np.uint8)).save(other)
    assert (
        np.abs(
            model.predict(frames, params_of(JobSpec(model="style-image", style_image=str(other)))).astype(int) - out
        ).mean()
        > 5
    )


def test_unreadable_style_image_is_refused(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    with pytest.raises(ModelError, match="style image bad.jpg is not a picture restyle reads"):
        check(JobSpec(model="style-image", style_image=str(bad)))
    with pytest.raises(ModelError, match="not found"):
        check(JobSpec(model="style-image", style_image=str(tmp_path / "missing.jpg")))
    with pytest.raises(ModelError, match="needs a picture"):
        check(JobSpec(model="style-image"))


def _table_passing(styles: set[int]) -> dict:
    """A fidelity table whose int8 rows, for this CPU's int8 class, pass exactly ``styles``."""
    rows = {
        f"style {i}": {"passed": i in styles, "luma_ssim": 0.95 if i in styles else 0.85, "flat_psnr_db": 40.0}
        for i in range(26)
    }
    part = {"passed": False, "worst": {"luma_ssim": 0.85, "flat_psnr_db": 40.0}, "cases": rows}
    return {"networks": {"multistyle26": {"int8": {"by_isa": {machine.here().int8_class: part}}}}}


def test_each_style_runs_at_the_precision_its_own_fidelity_row_passes(frames, monkeypatch):
    from restyle.runtime import fidelity
    from tests.conftest import pretend_machine

    pretend_machine(monkeypatch, bf16=False)
    monkeypatch.setattr(fidelity, "table", lambda: _table_passing({7, 12}))
    auto = load(JobSpec(style="7"), Runtime("cpu", threads=2, precision="auto"))
    ran = {style: auto.session(style).precision for style in ("7", "3", "7:0.5,12:0.5", "3:0.5,7:0.5")}
    assert ran == {"7": "int8", "3": "f32", "7:0.5,12:0.5": "int8", "3:0.5,7:0.5": "f32"}  # a blend: all or f32
    # One loaded model, routed per job: each style's frames are those of its precision's own network.
    for style, precision in (("7", "int8"), ("3", "f32")):
        forced = load(JobSpec(style=style), Runtime("cpu", threads=2, backend="openvino", precision=precision))
        routed = auto.predict(frames, params_of(JobSpec(style=style)))
        assert np.array_equal(routed, forced.predict(frames, params_of(JobSpec(style=style))))
    reason = Runtime("cpu", precision="auto").choose("multistyle26", ("style 3",)).reason
    assert "multistyle26 (style 3) failed the int8 fidelity bar on" in reason


def test_a_float_style_is_compiled_with_its_weights_baked_in_and_the_same_frames_as_onnxruntime(frames):
    from tests.conftest import psnr

    model = load(JobSpec(style="21"), Runtime("cpu", threads=2, backend="openvino", precision="f32"))
    ours = model.predict(frames, params_of(JobSpec(style="21")))
    assert "style baked in, norms fused" in model.description
    assert [name for name, _ in model.session("21").inputs] == ["image"]  # the weights are in the graph
    theirs = load(JobSpec(style="21"), Runtime("cpu", threads=2, backend="onnxruntime")).predict(
        frames, params_of(JobSpec(style="21"))
    )
    assert psnr(ours, theirs) >= 40
