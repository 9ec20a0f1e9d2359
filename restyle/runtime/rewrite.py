"""Exact rewrites of an ONNX graph, so that OpenVINO's CPU plugin runs it with fewer, fused kernels.

Each rewrite gives the same function; the float results may differ only by rounding (the order in
which a sum is taken). They are measured layer by layer with OpenVINO's performance counters by
``python bench/layers.py`` (bench/RESULTS.md, "Exact graph rewrites"); only those that were
faster there are applied (:data:`APPLIED`), to the float graph and to the int8 one alike. The
int8 graph (restyle/runtime/quantize.py) quantizes only the convolutions' inputs, so its norms are
float and the same rewrite applies; and OpenVINO 2026.4 needs it there: the int8 graph *as
exported* comes out wrong from OpenVINO (10.7 dB from f32, where onnxruntime runs the same file
at 43.1 dB and OpenVINO the rewritten one at 43.2 dB; bench/RESULTS.md), so restyle never
compiles it unrewritten (tests/runtime/test_int8.py holds the int8 frames near f32's).

* :func:`norms_as_mvn`: the instance norm exported as ``(x - mean) * (1 / sqrt(var + eps))``
  becomes ``(x - mean) / sqrt(var + eps)``, the pattern OpenVINO's MVNFusion recognises: one
  MVN kernel instead of two reductions and four passes of element-wise arithmetic.
* :func:`bake_input`: an input turned into a constant (the 26-style network's style weights,
  fixed for a whole job). With the norms' scale and shift constant, OpenVINO folds them and the
  ReLU into the MVN kernel and keeps the whole graph in one memory layout (NHWC); with them
  computed from an input it runs them apart and reorders every activation twice (measured:
  slower than no rewrite at all). So the two go together.
* :func:`quantize_before_pad` (int8 graphs): the rounding to 8 bits moved from after each reflect pad to
  before it. A pad copies values, so the same numbers are rounded (onnxruntime gives the same output to
  the bit); OpenVINO then fuses the rounding into the MVN kernel, which writes bytes, and pads bytes with
  an int8 kernel: 58.3 -> 50.8 CPU ms a frame at 640x360 on VNNI (bench/layers.py).
* :func:`reflect_pads_as_slices`: reflection padding as two reversed slices and a concat per
  axis. Exact to the bit, but not applied: OpenVINO runs the concat with a reference kernel too,
  and it copies the same bytes the Pad does (bench/layers.py measures it on every run).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from restyle.errors import ModelError

if TYPE_CHECKING:  # onnx is imported where a graph is edited (once per machine: prepared() keeps the result)
    import onnx


def norms_as_mvn(graph: onnx.ModelProto) -> int:
    """``Mul(a, Div(1, Sqrt(v)))`` -> ``Div(a, Sqrt(v))`` wherever the reciprocal has no other use; returns how
    many were rewritten."""

    nodes = graph.graph.node
    producer = {out: node for node in nodes for out in node.output}
    uses: dict[str, int] = {}
    for name in [i for node in nodes for i in node.input] + [o.name for o in graph.graph.output]:
        uses[name] = uses.get(name, 0) + 1
    dropped: set[str] = set()
    for mul in nodes:
        if mul.op_type != "Mul":
            continue
        for side in (0, 1):
            div = producer.get(mul.input[side])
            if div is None or div.op_type != "Div" or uses.get(div.output[0]) != 1:
                continue
            root = producer.get(div.input[1])
            if root is None or root.op_type != "Sqrt" or not _is_one(graph, producer, div.input[0]):
                continue
            mul.op_type = "Div"
            mul.input[:] = [mul.input[1 - side], div.input[1]]
            dropped.add(div.output[0])
            break
    _keep(graph, [node for node in nodes if node.output[0] not in dropped])
    return len(dropped)


def quantize_before_pad(graph: onnx.ModelProto) -> int:
    """``Pad -> QuantizeLinear -> DequantizeLinear`` -> ``QuantizeLinear -> DequantizeLinear -> Pad`` wherever a
    reflect or edge pad feeds only the quantizer; returns how many were moved. The same values: such a pad copies
    values and computes none, so rounding before it or after it rounds the same numbers. OpenVINO then fuses the
    rounding into the norm before it and pads 8-bit values instead of floats. Float graphs have no such pad."""
    nodes = list(graph.graph.node)
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.graph.output}
    after_dequant: dict[int, onnx.NodeProto] = {}  # id(dequantizer) -> the pad that now follows it
    for pad in nodes:
        after = consumers.get(pad.output[0], [])
        if pad.op_type != "Pad" or _pad_mode(pad) not in (b"reflect", b"edge") or pad.output[0] in outputs:
            continue
        if len(after) != 1:  # the pad feeds more than the quantizer
            continue
        quant = after[0]
        then = consumers.get(quant.output[0], [])
        if quant.op_type != "QuantizeLinear" or len(then) != 1 or then[0].op_type != "DequantizeLinear":
            continue
        dequant = then[0]
        for user in consumers.get(dequant.output[0], []):  # the convolution takes the padded values now
            user.input[:] = [pad.output[0] if i == dequant.output[0] else i for i in user.input]
        quant.input[0], pad.input[0] = pad.input[0], dequant.output[0]
        after_dequant[id(dequant)] = pad
    # Each moved pad right after its dequantizer (the order was topological, as ONNX requires; the pad now takes the
    # dequantizer's output, and what took the dequantizer's came after it).
    if after_dequant:
        moved = {id(pad) for pad in after_dequant.values()}
        order = []
        for node in nodes:
            if id(node) not in moved:
                order.append(node)
            if id(node) in after_dequant:
                order.append(after_dequant[id(node)])
        del graph.graph.node[:]
        graph.graph.node.extend(order)
    return len(after_dequant)


def bake_input(graph: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """The graph's input ``name`` made a constant of ``value`` (its dtype and shape as the input declares).
    (A session bakes its own inputs without onnx: ``open_session(..., fixed=...)``.)"""
    from onnx import helper, numpy_helper

    declared = next((i for i in graph.graph.input if i.name == name), None)
    if declared is None:
        raise ModelError(f"cannot bake {name} into the graph: it has no input named {name}")
    dtype = helper.tensor_dtype_to_np_dtype(declared.type.tensor_type.elem_type)
    graph.graph.input.remove(declared)
    graph.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))


def reflect_pads_as_slices(graph: onnx.ModelProto) -> int:
    """Every reflect Pad whose pads are constant as reversed Slices and a Concat per padded axis; returns how
    many were rewritten."""
    from onnx import helper

    nodes, done = [], 0
    producer = {out: node for node in graph.graph.node for out in node.output}
    for node in graph.graph.node:
        pads = _reflect_pads(graph, producer, node)
        if pads is None:
            nodes.append(node)
            continue
        rank, current = len(pads) // 2, node.input[0]
        for axis in range(rank):
            before, after = pads[axis], pads[axis + rank]
            if before or after:
                base = f"{node.name or node.output[0]}/reflect{axis}"
                current = _reflect_axis(nodes, current, base, axis, before, after)
        nodes.append(helper.make_node("Identity", [current], [node.output[0]], name=f"{node.name}/reflected"))
        done += 1
    _keep(graph, nodes)
    return done


def _reflect_axis(nodes: list, x: str, base: str, axis: int, before: int, after: int) -> str:
    """``x`` reflected by ``before`` and ``after`` along ``axis``: [x[before..1], x, x[-2..-1-after]]."""
    from onnx import helper, numpy_helper

    def ints(suffix: str, values: list[int]) -> str:
        name = f"{base}/{suffix}"
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values), name)))
        return name

    parts = []
    if before:
        head = f"{base}/head"
        step = [ints("head_start", [before]), ints("head_end", [0]), ints("axis", [axis]), ints("step", [-1])]
        nodes.append(helper.make_node("Slice", [x, *step], [head]))
        parts.append(head)
    parts.append(x)
    if after:
        tail = f"{base}/tail"
        step = [
            ints("tail_start", [-2]),
            ints("tail_end", [-2 - after]),
            ints("tail_axis", [axis]),
            ints("tail_step", [-1]),
        ]
        nodes.append(helper.make_node("Slice", [x, *step], [tail]))
        parts.append(tail)
    nodes.append(helper.make_node("Concat", parts, [f"{base}/out"], axis=axis))
    return f"{base}/out"


def _reflect_pads(graph: onnx.ModelProto, producer: dict, node: onnx.NodeProto) -> list[int] | None:
    """The pads of a reflect Pad on every axis, where they are constant; else None."""
    if node.op_type != "Pad" or (len(node.input) > 3 and node.input[3]):
        return None
    if _pad_mode(node) != b"reflect" or len(node.input) < 2:
        return None
    pads = constant(graph, producer, node.input[1])
    return None if pads is None else [int(p) for p in pads.ravel()]


def _pad_mode(pad: onnx.NodeProto) -> bytes:
    """A Pad's mode attribute (ONNX's default: constant)."""
    return next((a.s for a in pad.attribute if a.name == "mode"), b"constant")


def constant(graph: onnx.ModelProto, producer: dict, name: str) -> np.ndarray | None:
    """The value of tensor ``name`` where it depends on constants alone (evaluated by onnx's reference
    implementation); None where it depends on an input."""
    import onnx
    from onnx import helper, numpy_helper

    initializers = {i.name: i for i in graph.graph.initializer}
    node = producer.get(name)
    if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
        return numpy_helper.to_array(node.attribute[0].t)
    needed, seen, todo = [], set(), [name]
    while todo:
        current = todo.pop()
        if current in seen or current in initializers or not current:
            continue
        seen.add(current)
        node = producer.get(current)
        if node is None:  # a graph input
            return None
        needed.append(node)
        todo.extend(node.input)
    if not needed:
        return numpy_helper.to_array(initializers[name]) if name in initializers else None
    from onnx.reference import ReferenceEvaluator

    order = [node for node in graph.graph.node if any(node is n for n in needed)]
    used = {i for node in order for i in node.input}
    sub = helper.make_graph(
        order,
        "constant",
        [],
        [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)],
        [initializers[i] for i in used if i in initializers],
    )
    model = helper.make_model(sub, opset_imports=graph.opset_import)
    return np.asarray(ReferenceEvaluator(model).run(None, {})[0])


def _is_one(graph: onnx.ModelProto, producer: dict, name: str) -> bool:
    value = constant(graph, producer, name)
    return value is not None and value.size == 1 and float(value.ravel()[0]) == 1.0


def _keep(graph: onnx.ModelProto, nodes: list) -> None:
    """The graph's nodes replaced by ``nodes``, less those nothing uses any more; shapes inferred before are
    dropped (stale)."""
    wanted = {output.name for output in graph.graph.output}
    kept = []
    for node in reversed(nodes):
        if any(out in wanted for out in node.output):
            kept.append(node)
            wanted.update(node.input)
    del graph.graph.node[:]
    graph.graph.node.extend(reversed(kept))
    del graph.graph.value_info[:]


Rewrite = Callable[["onnx.ModelProto"], int]
REWRITES: dict[str, Rewrite] = {
    "norms-as-mvn": norms_as_mvn,
    "quantize-before-pad": quantize_before_pad,
    "reflect-pads-as-slices": reflect_pads_as_slices,
}
# With the style weights baked in (bake_input); see the module's docstring. quantize-before-pad changes int8 graphs
# only (a float graph has no quantizer).
APPLIED = ("norms-as-mvn", "quantize-before-pad")


def for_openvino(graph: onnx.ModelProto, rewrites: tuple[str, ...] = APPLIED) -> dict[str, int]:
    """``graph`` rewritten in place by ``rewrites`` (names of REWRITES); how many places each changed."""
    return {name: REWRITES[name](graph) for name in rewrites}


def prepared(source: Path, rewrites: tuple[str, ...] = APPLIED, cache: Path | None = None) -> Path:
    """``source`` with a dynamic batch (its first input's first dimension) and ``rewrites``, as an ONNX file in
    restyle's cache: made once per machine (and per source's bytes), then read by OpenVINO directly, so that a
    worker that only runs it never imports onnx (a second of its start-up)."""
    from restyle.runtime.base import cache_dir

    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    folder = cache or cache_dir() / "graphs"
    path = folder / f"{source.stem}.{digest}.{'+'.join(('batch', *rewrites))}.onnx"
    if path.is_file():
        return path
    import onnx

    graph = onnx.load(str(source))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    for_openvino(graph, rewrites)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
        part.write(graph.SerializeToString())
    os.replace(part.name, path)  # whole or absent: workers may race to make it
    return path
