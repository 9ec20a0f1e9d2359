"""The fidelity bar, the table --precision auto follows, and the first-frame check for networks it does not cover."""

import numpy as np
import pytest

from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of
from restyle.runtime import fidelity
from tests.conftest import pretend_machine


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    yy, xx = np.mgrid[0:120, 0:200]
    flat = np.full((120, 200, 3), 150, np.uint8)
    flat[:, 100:] = np.stack([np.sin(xx / 3) * 100 + 128] * 3, -1)[:, 100:].astype(np.uint8)  # half flat, half texture
    return flat


def test_identical_pictures_pass_and_a_colour_cast_on_flat_areas_fails(picture):
    assert fidelity.judge(picture, picture).passed
    cast = picture.copy()
    cast[:, :100] += 6  # a visible tint where the picture is flat
    verdict = fidelity.judge(picture, cast)
    assert verdict.flat_psnr_db is not None and verdict.flat_psnr_db < fidelity.FLAT_PSNR_BAR
    assert not verdict.passed


def test_scrambled_structure_fails_the_luma_ssim_bar(picture):
    noise = np.random.default_rng(0).permutation(picture.reshape(-1, 3)).reshape(picture.shape)
    assert not fidelity.judge(picture, noise).passed


def test_auto_follows_the_cpu_and_the_table(monkeypatch):
    auto = Runtime("cpu", precision="auto")
    pretend_machine(monkeypatch, bf16=False, has_openvino=True)
    assert (auto.choose("multistyle26").backend, auto.choose("multistyle26").precision) == ("openvino", "f32")
    pretend_machine(monkeypatch, bf16=True, has_openvino=True)
    assert auto.choose("someones.onnx").precision == "check"
    monkeypatch.setattr(fidelity, "verdict", lambda network, *rest: fidelity.Verdict(False, 0.5, 20.0))
    assert auto.choose("multistyle26").precision == "f32" and "failed" in auto.choose("multistyle26").reason
    # bf16 passes, int8 is not covered (where it is, and beats bf16, int8 runs: tests/runtime/test_int8.py).
    monkeypatch.setattr(
        fidelity,
        "verdict",
        lambda network, precision="bf16", *rest: fidelity.Verdict(True, 0.97, 41.0) if precision == "bf16" else None,
    )
    assert auto.choose("multistyle26").precision == "bf16"
    assert Runtime("cpu", precision="f32").choose("multistyle26").precision == "f32"


def test_the_shipped_table_covers_every_style():
    styles = fidelity.table()["networks"]["multistyle26"]["bf16"]["cases"]
    assert len(styles) == 26
    assert all(set(row) >= {"luma_ssim", "flat_psnr_db", "passed"} for row in styles.values())


def test_a_network_outside_the_table_is_checked_on_its_first_frame(tmp_path, monkeypatch):
    from tests.handlers.test_onnx_image import negative_model

    pretend_machine(monkeypatch, bf16=True)  # the check runs wherever OpenVINO does
    frames = np.random.default_rng(2).integers(0, 256, (1, 40, 64, 3), dtype=np.uint8)
    spec = JobSpec(model="onnx", model_file=str(negative_model(tmp_path / "neg.onnx")))
    model = load(spec, Runtime("cpu", precision="auto"))
    out = model.predict(frames, params_of(spec))
    assert "check on the first frame" in model._session.provider  # decided by the first call
    assert fidelity.judge(255 - frames, out).passed


def test_a_verdict_is_for_the_cases_a_job_runs_on_its_cpus_int8_class(monkeypatch):
    rows = {"style 3": {"passed": False, "luma_ssim": 0.85, "flat_psnr_db": 29.1}}
    rows |= {"style 7": {"passed": True, "luma_ssim": 0.95, "flat_psnr_db": 39.4}}
    rows |= {"style 9": {"passed": True, "luma_ssim": 0.91, "flat_psnr_db": None}}
    avx2 = {"passed": False, "worst": {"luma_ssim": 0.85, "flat_psnr_db": 29.1}, "cases": rows}
    parts = {"avx2": avx2, "vnni": {"note": "not measured: run it on a CPU of this class"}}
    monkeypatch.setattr(fidelity, "table", lambda: {"networks": {"multistyle26": {"int8": {"by_isa": parts}}}})
    assert fidelity.verdict("multistyle26", "int8", ("style 7",), "avx2") == fidelity.Verdict(True, 0.95, 39.4)
    blend = fidelity.verdict("multistyle26", "int8", ("style 7", "style 9"), "avx2")
    assert blend == fidelity.Verdict(True, 0.91, 39.4)  # every blended style passes: the worst of their figures
    assert not fidelity.verdict("multistyle26", "int8", ("style 3", "style 7"), "avx2").passed
    assert not fidelity.verdict("multistyle26", "int8", None, "avx2").passed  # the whole network: all must pass
    assert fidelity.verdict("multistyle26", "int8", ("style 7",), "vnni") is None  # a class nobody measured
    assert fidelity.verdict("multistyle26", "int8", ("style 7",), "amx") is None
    assert fidelity.verdict("multistyle26", "int8", ("style 8",), "avx2") is None  # a style the table lacks


def test_the_shipped_int8_table_is_by_int8_class_and_names_the_classes_it_did_not_measure():
    from restyle.machine import INT8_CLASSES

    parts = fidelity.table()["networks"]["multistyle26"]["int8"]["by_isa"]
    assert set(parts) == set(INT8_CLASSES)
    measured = {isa for isa, part in parts.items() if "cases" in part}
    assert "avx2" in measured
    assert len(parts["avx2"]["cases"]) == 26 and parts["avx2"]["measured"]["command"].startswith("python bench/")
    for isa in set(INT8_CLASSES) - measured:
        assert "not measured" in parts[isa]["note"]
