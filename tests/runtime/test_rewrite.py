"""The exact graph rewrites: the same frames as the shipped network, and OpenVINO's fused kernels where they help."""

import copy

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from restyle.errors import ModelError
from restyle.handlers.styles import _model_file, style_weights
from restyle.media.sample import packaged_photo
from restyle.runtime import rewrite
from restyle.runtime.sessions import import_openvino

openvino = import_openvino()


@pytest.fixture(scope="module")
def network() -> onnx.ModelProto:
    return onnx.load(str(_model_file("multistyle26")))


@pytest.fixture(scope="module")
def photo_frames() -> np.ndarray:
    """Two frames of a real photograph (matplotlib's) at 320x180 (odd crops: two places in the picture), as the
    network takes them: (2, 3, 180, 320) on 0..1."""
    picture = np.asarray(Image.open(packaged_photo()).convert("RGB").resize((400, 470)))
    crops = [picture[40:220, 20:340], picture[260:440, 70:390]]
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)


def run(graph: onnx.ModelProto, frames: np.ndarray, weights: np.ndarray | None):
    """Each frame through ``graph`` on OpenVINO's CPU at f32, as restyle compiles it; and the compiled graph."""
    core = openvino.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(core.read_model(graph.SerializeToString(), b""), "CPU", config)
    feeds = [{"image": f[None]} | ({"style_weights": weights} if weights is not None else {}) for f in frames]
    return np.concatenate([compiled(feed)[0] for feed in feeds]), compiled


def pixels(out: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(out * 255 + 0.5, 0, 255)).astype(np.int16)


def layer_types(compiled) -> list[str]:
    return [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops()]


@pytest.mark.parametrize("style", ["7", "3:0.5,17:0.5"])
def test_restyles_rewrite_gives_the_shipped_networks_frames_with_its_norms_fused(network, photo_frames, style):
    weights = style_weights(style)
    shipped, _ = run(network, photo_frames, weights)
    ours = copy.deepcopy(network)
    # Every instance norm of the network; a float graph has no quantizer to move ahead of its pads.
    assert rewrite.for_openvino(ours) == {"norms-as-mvn": 18, "quantize-before-pad": 0}
    rewrite.bake_input(ours, "style_weights", weights)
    onnx.checker.check_model(ours)
    out, compiled = run(ours, photo_frames, None)
    # The same frames to float rounding: OpenVINO's MVN sums in another order (measured 1.4e-4 at most on 0..1).
    assert out.shape == shipped.shape
    assert float(np.abs(out - shipped).max()) < 1e-3
    off = np.abs(pixels(out) - pixels(shipped))
    assert off.max() <= 1 and (off > 0).mean() < 0.001
    # ... by OpenVINO's fused kernel: one MVN per norm, its scale, shift and ReLU folded in, no Reduce left.
    kinds = layer_types(compiled)
    assert kinds.count("MVN") == 18 and "Reduce" not in kinds


def test_the_norm_rewrite_alone_keeps_the_style_an_input(network, photo_frames):
    weights = style_weights("12")
    shipped, _ = run(network, photo_frames, weights)
    ours = copy.deepcopy(network)
    rewrite.norms_as_mvn(ours)
    out, compiled = run(ours, photo_frames, weights)
    assert float(np.abs(out - shipped).max()) < 1e-3 and layer_types(compiled).count("MVN") == 18
    other, _ = run(ours, photo_frames, style_weights("3"))
    assert np.abs(pixels(other) - pixels(out)).mean() > 10  # the style still comes in per call


def test_reflect_pads_as_slices_are_the_same_function_to_the_bit(network, photo_frames):
    weights = style_weights("7")
    shipped, _ = run(network, photo_frames, weights)
    ours = copy.deepcopy(network)
    assert rewrite.reflect_pads_as_slices(ours) == 18
    assert not any(node.op_type == "Pad" for node in ours.graph.node)
    out, compiled = run(ours, photo_frames, weights)
    assert np.array_equal(out, shipped)
    assert "Pad" not in layer_types(compiled)


def test_quantizing_before_the_pad_is_the_same_int8_function_and_lets_openvino_pad_bytes(network, photo_frames):
    import onnxruntime

    from restyle.runtime import quantize

    weights = style_weights("7")
    int8 = onnx.load(str(quantize.int8_file("multistyle26")[0]))
    moved = copy.deepcopy(int8)
    assert rewrite.quantize_before_pad(moved) == 18  # one before each convolution
    onnx.checker.check_model(moved)
    assert rewrite.quantize_before_pad(copy.deepcopy(network)) == 0  # a float graph has no quantizer to move

    def exact(graph: onnx.ModelProto) -> np.ndarray:  # onnxruntime's reference arithmetic for QDQ graphs
        session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate(
            [session.run(None, {"image": f[None], "style_weights": weights})[0] for f in photo_frames]
        )

    assert np.array_equal(exact(moved), exact(int8))  # the same numbers rounded: the same frames, to the bit
    # As restyle compiles it (norms fused too): OpenVINO pads 8-bit values, and its frames stay near f32's.
    rewrite.norms_as_mvn(moved)
    out, compiled = run(moved, photo_frames, weights)
    kernels = {
        op.get_rt_info()["layerType"].astype(str): op.get_rt_info()["runtimePrecision"].astype(str)
        for op in compiled.get_runtime_model().get_ops()
    }
    assert kernels["Pad"] in ("u8", "i8"), kernels
    floats, _ = run(network, photo_frames, weights)
    assert float(np.abs(pixels(out) - pixels(floats)).mean()) < 3


def _tiny(numerator: float, other_use: bool) -> onnx.ModelProto:
    """x * (numerator / sqrt(v)) [+ the reciprocal used again]."""
    nodes = [
        helper.make_node("Constant", [], ["n"], value=helper.make_tensor("n", TensorProto.FLOAT, [], [numerator])),
        helper.make_node("Sqrt", ["v"], ["s"]),
        helper.make_node("Div", ["n", "s"], ["r"]),
        helper.make_node("Mul", ["x", "r"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])]
    if other_use:
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [3]))
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [3]) for name in ("x", "v")]
    return helper.make_model(helper.make_graph(nodes, "tiny", inputs, outputs))


def test_only_a_reciprocal_of_a_square_root_used_once_becomes_a_division():
    from onnx.reference import ReferenceEvaluator

    graph = _tiny(1.0, other_use=False)
    assert rewrite.norms_as_mvn(graph) == 1
    assert [n.op_type for n in graph.graph.node] == ["Sqrt", "Div"]
    x, v = np.array([1.0, -2.0, 3.0], np.float32), np.array([4.0, 9.0, 0.25], np.float32)
    np.testing.assert_allclose(ReferenceEvaluator(graph).run(None, {"x": x, "v": v})[0], x / np.sqrt(v), rtol=1e-7)
    assert rewrite.norms_as_mvn(_tiny(2.0, other_use=False)) == 0  # 2 / sqrt(v) is not a norm's reciprocal
    assert rewrite.norms_as_mvn(_tiny(1.0, other_use=True)) == 0  # the reciprocal is wanted elsewhere too


def test_baking_an_input_the_graph_lacks_is_refused(network):
    with pytest.raises(ModelError, match="no input named strength"):
        rewrite.bake_input(copy.deepcopy(network), "strength", np.ones(1))


def test_a_prepared_file_is_made_once_and_a_session_fixes_the_style_in_it(network, photo_frames, tmp_path):
    from restyle.runtime import Runtime, open_session

    source = _model_file("multistyle26")
    path = rewrite.prepared(source, cache=tmp_path)
    made = path.stat().st_mtime_ns
    assert rewrite.prepared(source, cache=tmp_path) == path and path.stat().st_mtime_ns == made
    assert list(tmp_path.iterdir()) == [path]  # no partial file left behind
    weights = style_weights("7")
    session = open_session(
        Runtime("cpu", backend="openvino", precision="f32"), path, "multistyle26", fixed={"style_weights": weights}
    )
    assert [name for name, _ in session.inputs] == ["image"]
    out = session.run({"image": photo_frames})[0]  # both frames in one call: the batch is dynamic
    baked = copy.deepcopy(network)
    rewrite.for_openvino(baked)
    rewrite.bake_input(baked, "style_weights", weights)
    assert float(np.abs(out - run(baked, photo_frames, None)[0]).max()) < 1e-6
    with pytest.raises(ModelError, match="no input named strength"):
        open_session(Runtime("cpu", backend="openvino", precision="f32"), path, "x", fixed={"strength": weights})
    with pytest.raises(ModelError, match="need the openvino backend"):
        open_session(Runtime("cpu", backend="onnxruntime"), path, "x", fixed={"style_weights": weights})


def test_a_worker_running_the_styles_on_openvino_never_imports_onnx(tmp_path):
    import os
    import subprocess
    import sys

    from restyle.runtime.base import cache_dir

    env = os.environ | {"XDG_CACHE_HOME": str(tmp_path)}
    script = (
        "import sys, numpy as np\n"
        "from restyle.handlers import JobSpec, Runtime, load\n"
        "from restyle.handlers.base import params_of\n"
        "for precision in ('f32', 'int8'):\n"
        "    model = load(JobSpec(style='7'), Runtime('cpu', backend='openvino', precision=precision))\n"
        "    out = model.predict(np.full((1, 40, 64, 3), 90, np.uint8), params_of(JobSpec(style='7')))\n"
        "    assert out.shape == (1, 40, 64, 3) and out.std() > 0, out.std()\n"
        "print('onnx' in sys.modules)\n"
    )
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip() == "True"  # the first run on a machine prepares the graphs (with onnx)...
    assert len(list((tmp_path / cache_dir().name / "graphs").glob("*.onnx"))) == 2
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip() == "False"  # ... every later one reads them: no onnx (a second of start-up)


def _norm(channels: int, height: int, width: int) -> onnx.ModelProto:
    """One instance norm as the 26-style network exports it: (x - mean) * (1 / sqrt(var + eps)) * gamma + beta."""
    rng = np.random.default_rng(0)

    def const(name: str, value) -> onnx.NodeProto:
        tensor = onnx.numpy_helper.from_array(np.asarray(value, np.float32), name)
        return helper.make_node("Constant", [], [name], value=tensor)

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[2, 3], keepdims=1),
        helper.make_node("Sub", ["x", "mean"], ["d"]),
        const("two", 2.0),
        helper.make_node("Pow", ["d", "two"], ["d2"]),
        helper.make_node("ReduceMean", ["d2"], ["var"], axes=[2, 3], keepdims=1),
        const("eps", 1e-5),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["s"]),
        const("one", 1.0),
        helper.make_node("Div", ["one", "s"], ["r"]),
        helper.make_node("Mul", ["d", "r"], ["n"]),
        const("gamma", rng.uniform(0.5, 2, (1, channels, 1, 1))),
        helper.make_node("Mul", ["n", "gamma"], ["g"]),
        const("beta", rng.uniform(-1, 1, (1, channels, 1, 1))),
        helper.make_node("Add", ["g", "beta"], ["y"]),
    ]
    shape = [1, channels, height, width]
    graph = helper.make_graph(
        nodes,
        "norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_fused_norm_is_as_close_to_float64_as_the_shipped_one():
    """The rewritten network's frames differ from the shipped one's by rounding, not by a loss: OpenVINO's MVN
    kernel lands as near the float64 result as the reductions it replaces."""
    shipped = _norm(16, 360, 640)
    x = (np.random.default_rng(1).standard_normal((1, 16, 360, 640)) * 3 + 5).astype(np.float32)  # off-centre
    exact = x.astype(np.float64)
    mean = exact.mean(axis=(2, 3), keepdims=True)
    gamma, beta = (
        onnx.numpy_helper.to_array(n.attribute[0].t) for n in shipped.graph.node if n.output[0] in ("gamma", "beta")
    )
    exact = (exact - mean) / np.sqrt(((exact - mean) ** 2).mean(axis=(2, 3), keepdims=True) + 1e-5) * gamma + beta
    fused = copy.deepcopy(shipped)
    assert rewrite.norms_as_mvn(fused) == 1
    errors = {}
    for name, graph in (("shipped", shipped), ("fused", fused)):
        core = openvino.Core()
        compiled = core.compile_model(
            core.read_model(graph.SerializeToString(), b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        errors[name] = float(np.abs(compiled({"x": x})[0] - exact).max())
        assert ("MVN" in layer_types(compiled)) == (name == "fused")
    assert errors["fused"] <= 1.5 * errors["shipped"] + 1e-6 and errors["fused"] < 1e-4, errors
