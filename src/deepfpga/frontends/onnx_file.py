"""Reading an ONNX file: the protobuf, its external data, its initializers and its one input.

Everything wrong with the file itself (not a protobuf, missing external data, a graph without
inputs, a sequence input, an unreadable initializer) is an InputError naming the file and the
thing; what the importer cannot represent is the importer's business.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from deepfpga.errors import InputError

Shape = tuple[int, ...]


def read_onnx(source: str | os.PathLike[str] | bytes) -> tuple[Any, str]:
    """(ModelProto with external data loaded, label for messages)."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    if isinstance(source, bytes | bytearray):
        data, label, base = bytes(source), "<bytes>", None
    else:
        p = Path(source)
        if not p.is_file():
            raise InputError(f"no such file: {p}")
        data, label, base = p.read_bytes(), str(p), p.resolve().parent
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises several types on garbage
        raise InputError(f"{label}: not an ONNX model ({type(e).__name__})") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise InputError(f"{label}: not an ONNX model (no graph)")
    if not model.graph.node:
        raise InputError(f"{label}: the ONNX graph has no nodes")
    # Initializers and Constant-node values may keep their bytes in files next to the model:
    # they are resolved against the model's directory, never the current one.
    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
        if a.HasField("t")]
    for t in tensors:
        if not uses_external_data(t):
            continue
        if base is None:
            raise InputError(f"{label}: tensor {t.name!r} keeps its data in an external file;"
                             " give the model as a path, not bytes")
        try:
            load_external_data_for_tensor(t, str(base))
        except Exception as e:  # missing file, escaping path, out-of-bounds offset, ...
            raise InputError(f"{label}: external data of tensor {t.name!r} cannot be read"
                             f" from {base}: {e}") from None
    return model, label


def initializers(model: Any, label: str) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {}
    for t in model.graph.initializer:
        try:
            out[t.name] = np.asarray(numpy_helper.to_array(t))
        except Exception as e:  # wrong byte count, unknown data type, ...
            raise InputError(f"{label}: initializer {t.name!r} is unreadable"
                             f" ({type(e).__name__}: {e})") from None
    return out


def input_shape(model: Any, initializers: set[str], label: str) -> tuple[str, Shape, int | None]:
    """(name, per-sample shape, fixed batch size or None) of the model's one input."""
    from onnx import TensorProto

    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise InputError(f"{label}: the ONNX graph has no inputs")
    if len(inputs) != 1:
        raise InputError(f"{label}: expected one model input, found {[i.name for i in inputs]}")
    inp = inputs[0]
    kind = inp.type.WhichOneof("value")
    if kind != "tensor_type":
        raise InputError(f"{label}: input {inp.name!r} is a {kind or 'untyped value'}, not a"
                         " tensor")
    ttype = inp.type.tensor_type
    if ttype.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                               TensorProto.BFLOAT16):
        known = ttype.elem_type in TensorProto.DataType.values()
        etype = TensorProto.DataType.Name(ttype.elem_type) if known else ttype.elem_type
        raise InputError(f"{label}: input {inp.name!r} has element type {etype}; a float"
                         " tensor expected")
    if not ttype.HasField("shape"):
        raise InputError(f"{label}: input {inp.name!r} has no shape")
    dims = ttype.shape.dim
    if len(dims) not in (2, 4):
        raise InputError(f"{label}: input {inp.name!r} must be (N, F) or (N, C, H, W),"
                         f" has rank {len(dims)}")
    per_sample = []
    for d in dims[1:]:
        if not d.HasField("dim_value") or d.dim_value <= 0:
            raise InputError(f"{label}: input {inp.name!r} has a non-fixed per-sample dimension"
                             f" ({d.dim_param or '?'})")
        per_sample.append(int(d.dim_value))
    batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") else None
    return inp.name, tuple(per_sample), batch
