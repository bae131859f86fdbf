"""Run a quantized ONNX file as its producer meant it, in onnxruntime: the reference for what
`--requantize` changes. QDQ files run as they are; QONNX `Quant` nodes (which onnxruntime does not
know) become the same quantizers in standard ops: constants quantized here with the file's own
scale, zero point and rounding, activations as QuantizeLinear (+ Clip) → DequantizeLinear.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.interchange.qgraph import QONNX_DOMAINS, QONNX_OPS, quant_kind


def _qonnx_to_qdq(model: Any) -> Any:
    import onnx
    from onnx import helper, numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            if "value" in a:
                values[n.output[0]] = numpy_helper.to_array(a["value"])
    nodes, inits, wide = [], [], False
    for k, n in enumerate(model.graph.node):
        if not (n.op_type in QONNX_OPS and n.domain in QONNX_DOMAINS):
            nodes.append(n)
            continue
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        mode = a.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        scale, zp, bits = (np.asarray(values[i], dtype=np.float64) for i in n.input[1:4])
        b = int(bits.reshape(-1)[0])
        lo = (-(1 << (b - 1)) + int(narrow)) if signed else 0
        hi = (1 << (b - 1)) - 1 if signed else (1 << b) - 1 - int(narrow)
        x = n.input[0]
        if x in values:  # a constant: the Quant evaluated here, exactly as its sample code
            from deepfpga.interchange.quantspec import ROUNDING

            v = np.clip(np.asarray(values[x], dtype=np.float64) / scale + zp, lo, hi)
            q = (ROUNDING.get(mode, np.rint)(v) - zp) * scale
            values[n.output[0]] = q.astype(np.float32)
            inits.append(numpy_helper.from_array(q.astype(np.float32), n.output[0]))
            continue
        if mode != "ROUND":
            raise InputError(f"node {n.name!r}: rounding_mode {mode} has no QDQ form")
        if b > 16:
            raise InputError(f"node {n.name!r}: {b}-bit activations have no QDQ form")
        dt = (np.int8 if signed else np.uint8) if b <= 8 else (np.int16 if signed else np.uint16)
        wide = wide or b > 8
        tag = f"__qdq{k}"
        if scale.size > 1:
            raise InputError(f"node {n.name!r}: per-channel activation scales")
        inits += [numpy_helper.from_array(scale.reshape(()).astype(np.float32), f"{tag}_s"),
                  numpy_helper.from_array(np.array(zp.reshape(-1)[0], dt), f"{tag}_z"),
                  numpy_helper.from_array(np.array(lo, dt), f"{tag}_lo"),
                  numpy_helper.from_array(np.array(hi, dt), f"{tag}_hi")]
        nodes += [helper.make_node("QuantizeLinear", [x, f"{tag}_s", f"{tag}_z"], [f"{tag}_q"]),
                  helper.make_node("Clip", [f"{tag}_q", f"{tag}_lo", f"{tag}_hi"], [f"{tag}_c"]),
                  helper.make_node("DequantizeLinear", [f"{tag}_c", f"{tag}_s", f"{tag}_z"],
                                   [n.output[0]])]
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.graph.initializer.extend(inits)
    keep = [o for o in m.opset_import if o.domain not in QONNX_DOMAINS]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx") and wide:
            o.version = max(o.version, 21)
    return m


def file_runner(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a float batch to the file's first output, in onnxruntime."""
    import onnx
    import onnxruntime as ort

    if quant_kind(model) == "qonnx":
        model = _qonnx_to_qdq(model)
    else:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    # exporters often fix the batch at 1 and list the weights as inputs: batch free, weights not
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    for v in (*model.graph.input, *model.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"
    so = ort.SessionOptions()
    so.log_severity_level = 3  # warnings about the file's own form are not ours to print
    # The file's semantics, not onnxruntime's rewrites: its bias quantization pass re-rounds a
    # float bias next to QDQ nodes to int32 at scale_in·scale_w (dropping, e.g., the half LSB
    # of deepfpga's export when a QONNX bias arrives here as float).
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run(None, {name: np.asarray(x, dtype=np.float32)})[0])

    return run
