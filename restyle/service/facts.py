"""What a door checks a job against instead of the files themselves: each file is read once, when it is added.

A registered model is loaded and checked by its handler when an admin registers it; what its
handler looks at again for each job (its inputs, outputs, metadata, the names of its weights) is
kept then, as the same ONNX graph with every weight made an empty tensor: a few KB where the file
may be 500 MB. A job's door runs the handler's check on that graph, so a burst of submissions
naming a large model costs the API process no more memory than one naming a small one.

A style picture is decoded once too, when it is saved or uploaded (``catalogue.check_picture``:
its size is kept); a door gives the handler's check a 1x1 stand-in in its place, and only the
worker that runs the job decodes the picture itself.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

STAND_IN = "picture.png"  # a checked picture's stand-in at the door


def weightless(path: Path) -> bytes | None:
    """The ONNX model at ``path`` with every tensor (initializers, constants' values) emptied: its graph, inputs,
    outputs and metadata as they are. None for a file that is not ONNX (a plugin's kind): nothing to keep."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's errors for a file that is no ONNX model
        return None
    for tensor in _get_all_tensors(model):
        for field in ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data"):
            tensor.ClearField(field)
        tensor.ClearField("uint64_data")
        tensor.ClearField("external_data")
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.dims[:]
        tensor.dims.append(0)  # an empty tensor: valid for the checker, no bytes
    return model.SerializeToString()


def graph_file(folder: Path, sha256: str, graph: bytes) -> Path:
    """The weightless graph as a file for the handler's check: ``<folder>/<sha256>.onnx`` (the name the model's
    own file has in the system store), written once (its name is its content's hash, so it is never stale)."""
    path = folder / f"{sha256}.onnx"
    if not path.is_file():
        _write(path, graph)
    return path


def stand_in_picture(folder: Path) -> Path:
    """A 1x1 PNG in place of a picture that was checked when it came in."""
    path = folder / STAND_IN
    if not path.is_file():
        import io

        from PIL import Image

        out = io.BytesIO()
        Image.new("RGB", (1, 1), "white").save(out, "PNG")
        _write(path, out.getvalue())
    return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
