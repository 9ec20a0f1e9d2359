import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from restyle.errors import ModelError
from restyle.handlers import ModelSpec, Runtime, load_model


def negative_model(path, size=("N", 3, "H", "W"), value_range=1.0):
    """A real ONNX image->image model: y = range - x (a photographic negative)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(size))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(size))
    top = helper.make_tensor("top", TensorProto.FLOAT, [], [value_range])
    graph = helper.make_graph([helper.make_node("Sub", ["top", "x"], ["y"])], "negative", [x], [y], [top])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture()
def frames():
    return np.random.default_rng(1).integers(0, 256, (3, 37, 51, 3), dtype=np.uint8)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("value_range", [1.0, 255.0])
def test_any_onnx_model_runs_on_frames(tmp_path, frames, value_range, backend):
    path = negative_model(tmp_path / "neg.onnx", value_range=value_range)
    model = load_model(ModelSpec.onnx(path, value_range=value_range), Runtime("cpu", backend=backend))
    assert np.array_equal(model.predict(frames), 255 - frames)


def test_a_fixed_size_model_gets_frames_resized(tmp_path, frames):
    path = negative_model(tmp_path / "fixed.onnx", size=(1, 3, 64, 64))
    out = load_model(ModelSpec.onnx(path), Runtime("cpu")).predict(frames)
    assert out.shape == frames.shape
    assert np.abs(out.astype(int) - (255 - frames)).mean() < 60  # resized there and back: close, not exact


def test_a_model_that_is_not_image_to_image_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "flat", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "flat.onnx")
    with pytest.raises(ModelError, match="not an image->image model"):
        load_model(ModelSpec.onnx(tmp_path / "flat.onnx"), Runtime("cpu"))


def test_a_missing_model_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        ModelSpec.onnx(tmp_path / "none.onnx").check()


def test_cuda_without_a_gpu_build_is_a_clear_error():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA: the fallback message cannot be shown here")
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        Runtime("cuda").providers
    assert Runtime("auto").providers == ["CPUExecutionProvider"]
