"""Any quantized ONNX file (QDQ or QONNX, any scale, zero point or per-channel scales) as the
float model it approximates: constants replaced by their dequantized values (the file's own
arithmetic), activation quantizers dropped. For analysis and for re-quantizing with deepfpga's
own quantizer (`deepfpga analyze` / `quantize` on such files); the exact import is onnx_quant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.interchange.qgraph import QONNX_DOMAINS, QONNX_OPS
from deepfpga.interchange.quantspec import ROUNDING


def _along(p: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-axis parameter shaped to broadcast against an ndim-d tensor."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0 or p.size == 1 or ndim == 0:
        return p.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = p.size
    return p.reshape(shape)


def _qonnx_const(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, bits: int,
                 attrs: dict[str, Any]) -> np.ndarray:
    signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
    mode = attrs.get("rounding_mode", b"ROUND")
    mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
    lo = (-(1 << (bits - 1)) + int(narrow)) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - int(narrow)
    v = np.clip(x / scale + zp, lo, hi)
    return (ROUNDING.get(mode, np.rint)(v) - zp) * scale


def dequantized_model(model: Any) -> Any:
    """The float ModelProto of a quantized one (see the module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    alias: dict[str, str] = {}

    def res(n: str) -> str:
        while n in alias:
            n = alias[n]
        return n

    def val(node: Any, i: int) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        return values.get(res(node.input[i]))

    kept = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op, x = node.op_type, res(node.input[0]) if node.input else ""
        const = values.get(x)
        quantizer = (op in QONNX_OPS and node.domain in QONNX_DOMAINS) or op in (
            "QuantizeLinear", "DequantizeLinear")
        if op == "Constant" and "value" in attrs:
            values[node.output[0]] = numpy_helper.to_array(attrs["value"])
        elif quantizer and const is None:
            alias[node.output[0]] = x  # an activation quantizer: the float value flows on
        elif op == "Clip" and const is None and x != node.input[0]:
            alias[node.output[0]] = x  # a Clip between quantizer nodes
        elif quantizer or (op == "Clip" and const is not None and const.dtype.kind in "iu"):
            axis = int(attrs.get("axis", 1))
            scale, zp = val(node, 1), val(node, 2)
            c = np.asarray(const)
            if op == "Clip":
                lo, hi = val(node, 1), val(node, 2)
                out = np.clip(c, lo if lo is not None else c.min(), hi if hi is not None
                              else c.max())
            elif scale is None:
                raise InputError(f"node {node.name or op!r}: no scale")
            elif op == "QuantizeLinear":
                z = np.zeros((), np.uint8) if zp is None else zp
                info = np.iinfo(z.dtype)
                q = np.rint(c / _along(scale, c.ndim, axis)) + _along(z, c.ndim, axis)
                out = np.clip(q, info.min, info.max).astype(z.dtype)
            elif op == "DequantizeLinear":
                z = np.zeros(()) if zp is None else zp
                out = ((c.astype(np.float64) - _along(z, c.ndim, axis))
                       * _along(scale, c.ndim, axis)).astype(np.float32)
            else:
                bits = int(np.asarray(val(node, 3)).reshape(-1)[0])
                out = _qonnx_const(c.astype(np.float64), np.asarray(scale, np.float64),
                                   np.asarray(zp, np.float64), bits, attrs).astype(np.float32)
            values[node.output[0]] = out
        else:
            new = onnx.NodeProto()
            new.CopyFrom(node)
            del new.input[:]
            new.input.extend(res(i) if i else "" for i in node.input)
            kept.append(new)
    used = {i for n in kept for i in n.input if i}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.node[:]
    m.graph.node.extend(kept)
    del m.graph.initializer[:]
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(values[n]), n)
                               for n in sorted(used) if n in values)
    original = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in original]
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    for o in m.graph.output:
        o.name = res(o.name)
    return m
