import numpy as np
import pytest
from PIL import Image

from restyle.errors import ModelError
from restyle.handlers import JobSpec, OutputKind, Runtime, check, load
from restyle.handlers.base import params_of
from tests.handlers.test_onnx_image import negative_model


def yolo(path, **params) -> JobSpec:
    return JobSpec(model="yolo", model_file=str(path), params=params)


def test_the_detector_finds_the_face_in_the_photo(detector, photo):
    spec = yolo(detector)
    model = load(spec, Runtime("cpu", threads=2))
    assert model.output == OutputKind.RECORDS and len(model.classes) == 18 and model.input_size == (320, 320)
    picture = np.asarray(Image.open(photo).convert("RGB"))  # 512x600
    (record,) = model.predict(picture[None], params_of(spec))
    faces = [box for box in record["boxes"] if box["class"] == "FACE_FEMALE"]
    assert len(faces) == 1 and faces[0]["class_id"] == 1
    assert faces[0]["score"] == pytest.approx(0.78, abs=0.05)
    assert faces[0]["box"] == pytest.approx([170, 142, 360, 341], abs=8)


def test_the_confidence_threshold_is_a_per_call_parameter(detector, photo):
    model = load(yolo(detector), Runtime("cpu", threads=2))
    picture = np.asarray(Image.open(photo).convert("RGB"))[None]
    assert model.predict(picture, params_of(yolo(detector, confidence=0.95))) == [{"boxes": []}]
    assert model.predict(picture, params_of(yolo(detector, confidence=0.5)))[0]["boxes"]


def test_models_that_are_not_yolo_detectors_are_refused(tmp_path, detector):
    with pytest.raises(ModelError, match="no class names in its metadata"):
        check(yolo(negative_model(tmp_path / "neg.onnx")))
    with pytest.raises(ModelError, match="confidence must be a number from 0 to 1"):
        check(yolo(detector, confidence=7))
    with pytest.raises(ModelError, match="not found"):
        check(yolo(tmp_path / "missing.onnx"))
