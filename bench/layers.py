"""Where a frame's time goes, by layer type (OpenVINO's performance counters), with and without the exact rewrites.

    python bench/layers.py                     # 640x360, one thread, 15 interleaved rounds, f32 and int8
    python bench/layers.py --rounds 30 --size 1280x720 --style 3

Every variant of multistyle26 is compiled as restyle compiles it (OpenVINO CPU, one thread, one
stream, LATENCY, f32 hint, int8's float part at bf16 where the CPU has it natively, PERF_COUNT on)
and run on the same real frame (matplotlib's photo), round by round, interleaved: on a shared
machine only figures of one run compare, and the medians are printed. Per variant: the CPU time
of a frame (the process's, with one inference thread: what the work costs whoever else shares
the cores), its wall time, the time of each
layer type (OpenVINO counts layers in wall time: on a loaded host they swell together), the
kernel OpenVINO ran the padding and norms with, and how far its frame is from the original
graph's (max abs difference of the float outputs on 0..1, and of the uint8 pixels).

The variants (restyle/runtime/rewrite.py): the graph as shipped; each rewrite alone; the style
weights baked in (``bake``); what restyle runs (``norms-as-mvn + bake``); the reflect pads as
slices; and, for timing only, the pads as zero pads (not the same function: OpenVINO folds a
zero pad into the convolution, so it is the floor under any rewrite of the reflect pad). The
int8 network gets the same three that restyle's choice is made from; on a CPU with native bf16
the bf16 network as restyle runs it too, and the int8 network with its float part at f32 (as a CPU
without bf16 runs it; restyle runs it at bf16 there). Every row's difference is against f32 as shipped, so the
int8 and bf16 rows show how far each precision is from float (and that OpenVINO 2026.4 gets the
int8 graph as exported wrong: restyle compiles it rewritten).

``--write`` records the CPU ms a frame of f32, int8 and (where native) bf16, each as restyle
runs it, in restyle/runtime/fidelity.json, for this CPU's int8 class: ``--precision auto`` runs
int8 only where it is at least ``fidelity.INT8_MIN_SPEEDUP`` times faster than the precision it
would run otherwise there (f32, or bf16 on a CPU with native bf16).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from restyle import machine as restyle_machine
from restyle.handlers.styles import _model_file, style_weights
from restyle.runtime import quantize, rewrite

Edit = Callable[[onnx.ModelProto, np.ndarray], None]
RESTYLES = " + ".join((*rewrite.APPLIED, "bake"))  # what restyle runs on OpenVINO at every precision


def _zero_pads(graph: onnx.ModelProto, weights: np.ndarray) -> None:
    for node in graph.graph.node:
        for attribute in node.attribute:
            if node.op_type == "Pad" and attribute.name == "mode":
                attribute.s = b"constant"


def _edits(*names: str) -> Edit:
    def edit(graph: onnx.ModelProto, weights: np.ndarray) -> None:
        for name in names:
            if name == "bake":
                rewrite.bake_input(graph, "style_weights", weights)
            elif name == "zero-pads":
                _zero_pads(graph, weights)
            else:
                rewrite.REWRITES[name](graph)

    return edit


VARIANTS: dict[str, Edit] = {
    "as shipped": _edits(),
    "norms-as-mvn": _edits("norms-as-mvn"),
    "bake": _edits("bake"),
    "norms-as-mvn + bake": _edits("norms-as-mvn", "bake"),
    RESTYLES: _edits(*rewrite.APPLIED, "bake"),
    "reflect-pads-as-slices": _edits("reflect-pads-as-slices"),
    "reflect-pads-as-slices + norms-as-mvn + bake": _edits("reflect-pads-as-slices", "norms-as-mvn", "bake"),
    "zero pads (timing only, not exact)": _edits("zero-pads"),
}
INT8_VARIANTS = ("as shipped", "bake", "norms-as-mvn + bake", RESTYLES)
INT8_F32 = "int8, float part f32"  # on a CPU with native bf16: int8 as a CPU without it runs it, for comparison
# OpenVINO's precision hint per network: int8's QDQ carries its own arithmetic, the hint is its float part's (bf16
# where the CPU has it natively, as restyle compiles it: Machine.int8_float_part).
HINTS = {"f32": "f32", "bf16": "bf16", "int8": restyle_machine.here().int8_float_part, INT8_F32: "f32"}


def frame(width: int, height: int) -> np.ndarray:
    """A real photograph (matplotlib's), cropped to the aspect and scaled to ``width`` x ``height``, as the network
    takes it: (1, 3, H, W) on 0..1."""
    import cv2
    from PIL import Image

    from restyle.media.sample import packaged_photo

    picture = np.asarray(Image.open(packaged_photo()).convert("RGB"))
    ph, pw = picture.shape[:2]
    h = min(ph, round(pw * height / width))
    w = round(h * width / height)
    top, left = (ph - h) // 2, (pw - w) // 2
    scaled = cv2.resize(picture[top : top + h, left : left + w], (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)


def compile_variant(graph: onnx.ModelProto, edit: Edit, weights: np.ndarray, threads: int, precision: str = "f32"):
    from restyle.runtime.sessions import import_openvino

    openvino = import_openvino()  # without its converter's telemetry

    graph = copy.deepcopy(graph)
    edit(graph, weights)
    core = openvino.Core()
    config = {
        "PERF_COUNT": True,
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
        "INFERENCE_PRECISION_HINT": precision,  # bf16 for the bf16 network; int8 is in its graph (QDQ)
    }
    compiled = core.compile_model(core.read_model(graph.SerializeToString(), b""), "CPU", config)
    return compiled, compiled.create_infer_request()


def measure(sources: dict[str, onnx.ModelProto], x: np.ndarray, weights: np.ndarray, rounds: int, threads: int):
    """Per variant: wall ms per round, ms per layer type per round, the kernels of note, the output."""
    requests = {}
    for (network, name), graph in sources.items():
        compiled, request = compile_variant(graph, VARIANTS[name], weights, threads, HINTS[network])
        requests[(network, name)] = (compiled, request)
    outputs, kernels = {}, defaultdict(set)
    for key, (compiled, request) in requests.items():
        outputs[key] = np.array(request.infer(_feeds(compiled, x, weights))[0])  # also the warm-up
    wall: dict = defaultdict(list)
    cpu: dict = defaultdict(list)
    layers: dict = defaultdict(lambda: defaultdict(list))
    for _ in range(rounds):
        for key, (compiled, request) in requests.items():  # interleaved: each round runs every variant once
            feeds = _feeds(compiled, x, weights)
            started, used = time.perf_counter(), time.process_time()
            request.infer(feeds)
            wall[key].append((time.perf_counter() - started) * 1000)
            cpu[key].append((time.process_time() - used) * 1000)
            spent: dict[str, float] = defaultdict(float)
            for layer in request.profiling_info:
                spent[layer.node_type] += layer.real_time.total_seconds() * 1000
                if layer.node_type in ("Pad", "Concatenation", "MVN", "Gather", "StridedSlice"):
                    kernels[key].add(f"{layer.node_type} {layer.exec_type}")
            for kind, ms in spent.items():
                layers[key][kind].append(ms)
    return wall, cpu, layers, kernels, outputs


def _feeds(compiled, x: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    names = {port.get_any_name() for port in compiled.inputs}
    return {"image": x, "style_weights": weights} if "style_weights" in names else {"image": x}


def _pixels(out: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(out * 255.0 + 0.5, 0, 255)).astype(np.uint8)


def report(wall, cpu, layers, kernels, outputs) -> None:
    kinds = sorted(
        {k for per in layers.values() for k in per},
        key=lambda k: -max(statistics.median(per[k]) for per in layers.values() if k in per),
    )
    shown = [k for k in kinds if max(statistics.median(p[k]) for p in layers.values() if k in p) >= 0.5]
    print(
        "| network | variant | frame CPU ms | frame wall ms | "
        + " | ".join(shown)
        + " | max abs diff | uint8 levels off (share) |"
    )
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in shown) + " | --- | --- |")
    for network, name in wall:
        # Every network against f32 as shipped: an int8 or bf16 row shows its own distance from float.
        reference = outputs[("f32", "as shipped")]
        out = outputs[(network, name)]
        off = np.abs(_pixels(out).astype(int) - _pixels(reference))
        cells = [
            f"{statistics.median(layers[(network, name)][k]):.1f}" if k in layers[(network, name)] else "-"
            for k in shown
        ]
        print(
            f"| {network} | {name} | {statistics.median(cpu[(network, name)]):.1f} | "
            f"{statistics.median(wall[(network, name)]):.1f} | "
            + " | ".join(cells)
            + f" | {float(np.abs(out - reference).max()):.2g} | {off.max()} ({float((off > 0).mean()):.2%}) |"
        )
    print("\nkernels of note (OpenVINO's exec types):")
    for key, found in kernels.items():
        print(f"  {key[0]} {key[1]}: {', '.join(sorted(found))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds; medians are printed")
    parser.add_argument("--size", default="640x360", help="the frame, WIDTHxHEIGHT")
    parser.add_argument("--style", default="7", help="the style (or blend) baked in")
    parser.add_argument("--threads", type=int, default=1, help="OpenVINO's threads (restyle: one per worker)")
    parser.add_argument("--no-int8", action="store_true", help="the f32 network only")
    parser.add_argument(
        "--write",
        action="store_true",
        help="write f32's and int8's CPU ms a frame, as restyle runs them, into restyle/runtime/fidelity.json "
        "for this CPU's int8 class (--precision auto runs int8 only where it is faster there)",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    facts = restyle_machine.here()
    from restyle.runtime.sessions import import_openvino

    openvino = import_openvino()  # without its converter's telemetry

    print(f"# layers of multistyle26, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")
    print(
        f"# OpenVINO {openvino.get_version()}; int8 class {facts.int8_class}; bf16 {facts.bf16}; "
        f"flags avx2 {'avx2' in facts.flags}, avx512f {'avx512f' in facts.flags}, "
        f"avx512_vnni {'avx512_vnni' in facts.flags}, amx_int8 {'amx_int8' in facts.flags}"
    )
    print(f"# command: python bench/layers.py {' '.join(sys.argv[1:])}")
    print(
        f"# {width}x{height}, style {args.style}, {args.threads} thread(s), {args.rounds} interleaved rounds, medians"
    )
    f32 = onnx.load(str(_model_file("multistyle26")))
    sources = {("f32", name): f32 for name in VARIANTS}
    int8_path, why = quantize.int8_file("multistyle26")
    if not args.no_int8 and int8_path is not None:
        int8 = onnx.load(str(int8_path))
        sources |= {("int8", name): int8 for name in INT8_VARIANTS}
    elif not args.no_int8:
        print(f"# no int8 network: {why}")
    if facts.bf16:  # a CPU with native bf16: auto weighs int8 against bf16 there, so both are measured
        sources[("bf16", RESTYLES)] = f32
        if ("int8", RESTYLES) in sources:
            sources[(INT8_F32, RESTYLES)] = sources[("int8", RESTYLES)]
    weights = style_weights(args.style)
    figures = measure(sources, frame(width, height), weights, args.rounds, args.threads)
    report(*figures)
    if args.write:
        cpu = figures[1]
        bf16 = cpu.get(("bf16", RESTYLES))
        write_speed(
            statistics.median(cpu[("f32", RESTYLES)]),
            statistics.median(cpu[("int8", RESTYLES)]),
            statistics.median(bf16) if bf16 else None,
            f"{width}x{height}, style {args.style}, {args.threads} thread(s), median of {args.rounds}",
        )


def write_speed(f32_ms: float, int8_ms: float, bf16_ms: float | None, what: str) -> None:
    """f32's, int8's (and on a CPU with native bf16, bf16's) CPU ms a frame, as restyle compiles each, into the
    fidelity table's part for this CPU's int8 class (its fidelity rows are left as bench/fidelity.py measured
    them)."""
    import json

    from restyle.runtime import fidelity

    table = json.loads(fidelity.TABLE.read_text())
    isa = restyle_machine.here().int8_class
    parts = table["networks"]["multistyle26"].setdefault("int8", {}).setdefault("by_isa", {})
    part = {k: v for k, v in parts.get(isa, {}).items() if k != "note"}
    part["speed"] = {
        "f32_cpu_ms": round(f32_ms, 1),
        "int8_cpu_ms": round(int8_ms, 1),
        **({"bf16_cpu_ms": round(bf16_ms, 1)} if bf16_ms else {}),
        "what": f"CPU ms a frame as restyle compiles each ({RESTYLES}), {what}",
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d}",
        "machine": machine(),
        "command": "python bench/layers.py " + " ".join(sys.argv[1:]),
    }
    if restyle_machine.isa_cap():  # a class imitated on a newer CPU: say so beside the figures
        part["speed"]["isa_cap"] = f"{restyle_machine.ISA_ENV}={restyle_machine.isa_cap()}"
    parts[isa] = part
    fidelity.TABLE.write_text(json.dumps(table, indent=1) + "\n")
    bf16 = f", bf16 {bf16_ms:.1f}" if bf16_ms else ""
    print(f"wrote the {isa} speed figures (f32 {f32_ms:.1f}, int8 {int8_ms:.1f}{bf16} CPU ms) to {fidelity.TABLE}")


if __name__ == "__main__":
    main()
