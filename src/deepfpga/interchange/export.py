"""A `QuantizedModel` → QDQ ONNX (runs in onnxruntime) or QONNX (`Quant` nodes).

Each CONV/FC layer becomes DequantizeLinear'd integer weights and bias, the float Conv/Gemm, and a
quantizer to the layer's output format; pass-through layers are the float ops between. The float
ops see exact values (q·2^-fl), so the only thing a QDQ runtime can do differently from the
arithmetic contract is rounding: QuantizeLinear (and QONNX ROUND) round half to even, the
contract's data shift rounds half up. With `half_lsb=True` (the default) every layer whose shift
rounds (s = fl_acc - fl_out > 0) gets half an accumulator LSB added to its bias, stored at
fl_acc + 1: then acc + 1/2 never lies on a tie, and round-half-even of (acc + 1/2)/2^s is exactly
floor(acc/2^s + 1/2), the contract's result. What remains inexact is float32 itself: sums of
2^24 accumulator steps or more may round in the runtime (docs/interchange.md has the measurement).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.ir import INPUT, Conv2d, Linear, MaxPool2d, Softmax
from deepfpga.quant.fixedpoint import FixedFormat, align_bias
from deepfpga.quant.qmodel import QuantizedModel

FORMATS = ("qdq", "qonnx")
QONNX_DOMAIN = "qonnx.custom_op.general"
_F32_EXACT = 1 << 24


class _Builder:
    def __init__(self, kind: str):
        self.kind = kind
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.n = 0
        self.wide = False  # any 16-bit integers: QDQ needs opset 21

    def uniq(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, name: str, a: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain, **attrs))
        return out

    def scale(self, fl: int) -> str:
        return self.init(self.uniq("scale"), np.array(np.ldexp(1.0, -fl), dtype=np.float32))

    def quant(self, x: str, fmt: FixedFormat, name: str) -> str:
        """x rounded (half to even) and saturated to fmt, back in float."""
        if self.kind == "qonnx":
            return self.node("Quant", [x, self.scale(fmt.fl), self.init(self.uniq("zero"),
                             np.array(0.0, np.float32)), self.init(self.uniq("bits"),
                             np.array(float(fmt.bw), np.float32))], name, QONNX_DOMAIN,
                             signed=1, narrow=0, rounding_mode="ROUND")
        if fmt.bw > 16:
            raise InputError(f"{name}: {fmt.bw}-bit data has no QDQ type (at most 16)")
        dt = np.int8 if fmt.bw <= 8 else np.int16
        self.wide = self.wide or fmt.bw > 8
        sc, zp = self.scale(fmt.fl), self.init(self.uniq("zero"), np.array(0, dt))
        q = self.node("QuantizeLinear", [x, sc, zp], f"{name}_q")
        y = self.node("DequantizeLinear", [q, sc, zp], f"{name}_dq")
        if fmt.bw in (8, 16):
            return y
        # a narrower width inside the int8/int16 container: saturate the exact float values
        # (onnxruntime has no integer Clip for int16)
        lo, hi = (np.array(np.ldexp(float(v), -fmt.fl), np.float32) for v in (fmt.qmin, fmt.qmax))
        return self.node("Clip", [y, self.init(self.uniq("lo"), lo),
                                  self.init(self.uniq("hi"), hi)], f"{name}_clip")

    def const(self, ints: np.ndarray, fmt: FixedFormat, name: str) -> str:
        """Integers standing for ints·2^-fl as a float tensor of the graph."""
        ints = np.asarray(ints, dtype=np.int64)
        if self.kind == "qonnx":
            if ints.size and int(np.abs(ints).max()) >= _F32_EXACT:
                raise InputError(f"{name}: integers of 2^24 or more are not exact in QONNX's"
                                 " float32 constants")
            x = self.init(name, np.ldexp(ints.astype(np.float64), -fmt.fl).astype(np.float32))
            return self.quant(x, fmt, f"{name}_quant")
        dt = np.int8 if fmt.bw <= 8 else np.int16 if fmt.bw <= 16 else np.int32
        self.wide = self.wide or dt == np.int16
        q = self.init(name, ints.astype(dt))
        return self.node("DequantizeLinear", [q, self.scale(fmt.fl),
                                              self.init(self.uniq("zero"), np.array(0, dt))],
                         f"{name}_dq")


def _bias(q: QuantizedModel, layer: Conv2d | Linear, half_lsb: bool
          ) -> tuple[np.ndarray, FixedFormat] | None:
    """The bias as exported: aligned to fl_acc, plus half an LSB (at fl_acc + 1) where the
    layer's shift rounds."""
    f = q.formats[layer.name]
    s = f.fl_acc - f.output.fl
    o = layer.out_channels if isinstance(layer, Conv2d) else layer.out_features
    arrays = q.weights[layer.name]
    if "bias" in arrays:
        assert f.bias is not None
        b = align_bias(arrays["bias"], f.bias.fl, f.fl_acc)
    elif half_lsb and s > 0:
        b = np.zeros(o, dtype=np.int64)
    else:
        return None
    fl = f.fl_acc
    if half_lsb and s > 0:
        b, fl = 2 * b + 1, fl + 1
    hi = int(np.abs(b).max(initial=0))
    if hi >= 1 << 31:
        raise InputError(f"layer {layer.name!r}: exported bias needs more than 32 bits")
    return b, FixedFormat(32, fl)


def export_onnx(q: QuantizedModel, kind: str = "qdq", *, half_lsb: bool = True) -> bytes:
    """The model as ONNX bytes: 'qdq' (opset 13, or 21 for 16-bit tensors) or 'qonnx'."""
    import onnx
    from onnx import TensorProto, helper

    if kind not in FORMATS:
        raise InputError(f"unknown export format {kind!r} (known: {', '.join(FORMATS)})")
    g = q.graph
    b = _Builder(kind)
    env = {INPUT: b.quant("input", q.input_format, "input_quant")}
    for layer in g.layers:
        x = env[layer.inputs[0]]
        f = q.formats[layer.name]
        n = layer.name
        if isinstance(layer, Conv2d | Linear):
            assert f.weight is not None
            w = b.const(q.weights[n]["weight"], f.weight, f"{n}_weight")
            ins = [x, w]
            bias = _bias(q, layer, half_lsb)
            if bias is not None:
                ins.append(b.const(bias[0], bias[1], f"{n}_bias"))
            if isinstance(layer, Conv2d):
                ph, pw = layer.padding
                y = b.node("Conv", ins, n, kernel_shape=list(layer.kernel),
                           strides=list(layer.stride), pads=[ph, pw, ph, pw])
            else:
                y = b.node("Gemm", ins, n, transB=1)
            env[n] = b.quant(y, f.output, f"{n}_out")
        elif layer.kind == "relu":
            env[n] = b.node("Relu", [x], n)
        elif isinstance(layer, MaxPool2d):
            ph, pw = layer.padding
            env[n] = b.node("MaxPool", [x], n, kernel_shape=list(layer.kernel),
                            strides=list(layer.stride), pads=[ph, pw, ph, pw],
                            ceil_mode=int(layer.ceil_mode))
        elif layer.kind == "flatten":
            env[n] = b.node("Flatten", [x], n, axis=1)
        elif layer.kind == "dropout":
            env[n] = x
        elif isinstance(layer, Softmax):
            y = b.node("Softmax", [x], n, axis=1)
            env[n] = y if n in g.outputs else b.quant(y, f.output, f"{n}_out")
        else:
            raise InputError(f"layer {n!r} ({layer.kind}) has no ONNX export")
    shapes = g.shapes()
    outputs = []
    for name in g.outputs:
        out = b.node("Identity", [env[name]], f"output_{name}")
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT,
                                                     ["N", *shapes[name]]))
    graph = helper.make_graph(
        b.nodes, g.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *g.input_shape])],
        outputs, b.inits)
    opsets = [helper.make_opsetid("", 21 if b.wide else 13)]
    if kind == "qonnx":
        opsets.append(helper.make_opsetid(QONNX_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="deepfpga")
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def output_integers(q: QuantizedModel, values: np.ndarray, name: str | None = None) -> np.ndarray:
    """An exported model's float output back to the integers of the layer's format."""
    name = name or q.graph.outputs[0]
    return np.rint(np.ldexp(np.asarray(values, dtype=np.float64),
                            q.format_of(name).fl)).astype(np.int64)
