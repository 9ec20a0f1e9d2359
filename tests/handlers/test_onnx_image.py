import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from restyle import machine
from restyle.errors import ModelError
from restyle.handlers import JobSpec, Runtime, check, get_handler, load
from restyle.handlers.base import params_of
from restyle.runtime.base import providers
from testing.models import negative_model


def upscaling_model(path, factor=2):
    """A real super-resolution-shaped model: nearest-neighbour upscaling by ``factor`` (ONNX Resize)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H2", "W2"])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, factor, factor])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    graph = helper.make_graph([node], "upscale", [x], [y], [scales])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def onnx_spec(path, **fields):
    return JobSpec(model="onnx", model_file=str(path), **fields)


@pytest.fixture()
def frames():
    return np.random.default_rng(1).integers(0, 256, (3, 37, 51, 3), dtype=np.uint8)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("value_range", [1.0, 255.0])
def test_any_onnx_model_runs_on_frames(tmp_path, frames, value_range, backend):
    spec = onnx_spec(
        negative_model(tmp_path / "neg.onnx", value_range=value_range), params={"value_range": value_range}
    )
    model = load(spec, Runtime("cpu", backend=backend))
    assert np.array_equal(model.predict(frames, params_of(spec)), 255 - frames)


def test_a_fixed_size_model_gets_frames_resized(tmp_path, frames):
    spec = onnx_spec(negative_model(tmp_path / "fixed.onnx", size=(1, 3, 64, 64)))
    out = load(spec, Runtime("cpu")).predict(frames, params_of(spec))
    assert out.shape == frames.shape
    assert np.abs(out.astype(int) - (255 - frames)).mean() < 60  # resized there and back: close, not exact


def test_a_super_resolution_model_gives_pictures_at_its_own_size(tmp_path, frames):
    spec = onnx_spec(upscaling_model(tmp_path / "x2.onnx"))
    handler = get_handler("onnx")
    assert handler.output_size(spec, 51, 37) == (102, 74)
    model = load(spec, Runtime("cpu"))
    out = model.predict(frames, params_of(spec))
    assert out.shape == (3, 74, 102, 3)
    assert np.array_equal(out[:, ::2, ::2], frames)  # every input pixel, now a 2x2 block
    assert np.array_equal(out[:, 1::2, 1::2], frames)


def test_models_that_do_not_fit_the_kind_are_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "flat", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "flat.onnx")
    with pytest.raises(ModelError, match="not an image->image model"):
        check(onnx_spec(tmp_path / "flat.onnx"))
    with pytest.raises(ModelError, match="takes 1 channels"):
        check(onnx_spec(negative_model(tmp_path / "grey.onnx", size=("N", 1, "H", "W"))))
    with pytest.raises(ModelError, match="value_range"):
        check(onnx_spec(negative_model(tmp_path / "neg.onnx"), params={"value_range": -3}))


def test_a_missing_or_broken_model_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        check(onnx_spec(tmp_path / "none.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ModelError, match="not a usable ONNX model"):
        check(onnx_spec(tmp_path / "junk.onnx"))


def test_an_unknown_model_name_lists_the_handlers():
    with pytest.raises(ModelError, match="unknown model 'nope'.*onnx, style-image, styles, tensors, yolo"):
        check(JobSpec(model="nope"))


def test_cuda_without_a_gpu_build_is_a_clear_error():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA: the fallback message cannot be shown here")
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        providers(Runtime("cuda"), machine.here())
    assert providers(Runtime("auto"), machine.here()) == ["CPUExecutionProvider"]
