"""Real ONNX models made on the spot for tests and benchmarks (nothing downloaded)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def negative_model(path, size=("N", 3, "H", "W"), value_range=1.0):
    """A real ONNX image->image model: y = range - x (a photographic negative). ``size`` may be any shape."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(size))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(size))
    top = helper.make_tensor("top", TensorProto.FLOAT, [], [value_range])
    graph = helper.make_graph([helper.make_node("Sub", ["top", "x"], ["y"])], "negative", [x], [y], [top])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
