"""The local engine hands each chunk's result back as soon as it is done, not when the whole job is."""
from __future__ import annotations

import time

import pytest

from restyle.engines.local import LocalEngine
from restyle.handlers.base import ModelSpec
from restyle.runtime import Runtime
from tests.handlers.test_onnx_image import negative_model


def nap(seconds: float, model, batch, report) -> float:
    time.sleep(seconds)
    report(1)
    return seconds


@pytest.mark.slow
def test_results_arrive_as_they_finish(tmp_path):
    spec = ModelSpec.onnx(negative_model(str(tmp_path / "negative.onnx")))
    engine = LocalEngine(workers=2)
    frames = []
    results = engine.map(nap, spec, Runtime("cpu", threads=1), [4.0, 0.2], frames.append)
    first = next(results)
    arrived = time.monotonic()
    assert first == 0.2  # the quick item, while the slow one still runs
    assert next(results) == 4.0
    assert time.monotonic() - arrived > 2.0
    assert list(results) == []
