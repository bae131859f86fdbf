"""Read the quantizers out of a quantized ONNX graph (QONNX `Quant` or QDQ) and strip them.

What remains is a float ONNX graph the ordinary importer reads (weights replaced by their exact
dequantized values q·2^-fl), plus annotations: the quantizers each float tensor passes through
(`act`), and the integers and quantizer of every quantized constant (`consts`). Nodes are renamed
to the layer names the importer will give them, so annotations find their layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.interchange.quantspec import (
    MAX_CONST_BITS,
    MAX_DATA_BITS,
    NUMPY_INT_TYPES,
    ONNX_INT_TYPES,
    QSpec,
    check_bits,
    check_rounding,
    check_zero_point,
    fl_of_scale,
    scalar,
)
from deepfpga.ir.graph import INPUT

QONNX_DOMAINS = frozenset({"qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas"})
QONNX_OPS = frozenset({"Quant", "IntQuant"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def quant_kind(model: Any) -> str | None:
    """'qonnx', 'qdq' or None: which quantizers an ONNX ModelProto holds."""
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    if any(op in QONNX_OPS and dom in QONNX_DOMAINS for dom, op in ops):
        return "qonnx"
    if any(op in QDQ_OPS and dom in ("", "ai.onnx") for dom, op in ops):
        return "qdq"
    return None


@dataclass(frozen=True)
class Stripped:
    model: Any                                   # the float ModelProto
    kind: str
    input_name: str
    requantize: bool = False
    act: dict[str, list[QSpec]] = field(default_factory=dict)
    consts: dict[str, tuple[np.ndarray, QSpec]] = field(default_factory=dict)
    floats: set[str] = field(default_factory=set)  # unquantized float constants
    nodes: dict[str, Any] = field(default_factory=dict)  # layer-to-be name -> NodeProto
    producer: dict[str, str] = field(default_factory=dict)  # tensor -> node name
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _IntAct:
    """An integer activation between QuantizeLinear and DequantizeLinear."""

    src: str
    spec: QSpec


def _node_label(node: Any, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def _layer_name(node: Any, index: int, taken: set[str]) -> str:
    """The importer's naming (deepfpga.frontends.onnx_import), made unique here."""
    base = node.name.lstrip("/").replace("/", "_") or f"{node.op_type.lower()}_{index}"
    cand, i = base, 1
    while cand in taken:
        cand = f"{base}_{i}"
        i += 1
    taken.add(cand)
    return cand


class _Reader:
    def __init__(self, model: Any, requantize: bool):
        from onnx import numpy_helper

        self.requantize = requantize
        self.values: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.alias: dict[str, str] = {}
        self.ints: dict[str, tuple[np.ndarray, QSpec | None]] = {}  # integer constants
        self.int_acts: dict[str, _IntAct] = {}

    def res(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def is_int(self, name: str) -> bool:
        """An integer tensor: between QuantizeLinear and DequantizeLinear, or a constant."""
        name = self.res(name)
        v = self.values.get(name)
        return name in self.int_acts or name in self.ints or (v is not None
                                                               and v.dtype.kind in "iu")

    def const(self, node: Any, i: int, what: str, label: str) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        v = self.values.get(self.res(node.input[i]))
        if v is None:
            raise InputError(f"node {label!r}: {what} is not a constant")
        return v

    def spec(self, scale: np.ndarray | None, bits: int, signed: bool, narrow: bool,
             rounding: str, label: str, const: np.ndarray | None = None) -> QSpec:
        if scale is None:
            raise InputError(f"node {label!r}: no scale")
        flat = np.asarray(scale, dtype=np.float64).reshape(-1)
        if flat.size > 1 and not np.all(flat == flat[0]) and self.requantize and const is not None:
            # per-channel weights: one power-of-two scale that just avoids overflow
            from deepfpga.quant.weights import overflow_free_fl

            fl = overflow_free_fl(const, bits if signed else bits + 1)
            return QSpec(0 if fl is None else fl, bits, signed, narrow, rounding, label,
                         f"per-channel scales -> 2^{-(fl or 0)}")
        fl, note = fl_of_scale(scalar(flat, "scale", label), label, self.requantize)
        return QSpec(fl, bits, signed, narrow, rounding, label, note)


def _int_type(zp: np.ndarray | None, attrs: dict[str, Any], label: str) -> tuple[int, bool]:
    out_t = attrs.get("output_dtype", 0)
    if out_t:
        if out_t not in ONNX_INT_TYPES:
            raise InputError(f"node {label!r}: output_dtype {out_t} is not an integer type")
        return ONNX_INT_TYPES[out_t]
    if zp is None:
        return 8, False  # QuantizeLinear's default: uint8
    key = str(np.asarray(zp).dtype)
    if key not in NUMPY_INT_TYPES:
        raise InputError(f"node {label!r}: zero point of type {key} (integer types only)")
    return NUMPY_INT_TYPES[key]


def strip_quantizers(model: Any, requantize: bool = False) -> Stripped:
    """Split a quantized ModelProto into a float model and quantizer annotations."""
    import onnx
    from onnx import helper, numpy_helper

    kind = quant_kind(model)
    if kind is None:
        raise InputError("model holds no quantizers (Quant, QuantizeLinear/DequantizeLinear)")
    rd = _Reader(model, requantize)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(f"expected one model input, found {[i.name for i in inputs]}")
    out = Stripped(model=None, kind=kind, input_name=inputs[0].name, requantize=requantize)
    taken = {INPUT}
    kept: list[Any] = []
    for index, node in enumerate(model.graph.node):
        label = _node_label(node, index)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "Constant" and "value" in attrs:
            rd.values[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        if op in QONNX_OPS and node.domain in QONNX_DOMAINS:
            _quant(rd, out, node, attrs, label)
        elif op == "QuantizeLinear":
            _quantize_linear(rd, out, node, attrs, label)
        elif op == "Clip" and rd.is_int(node.input[0]):
            _int_clip(rd, node, attrs, label)
        elif op == "Clip" and rd.res(node.input[0]) != node.input[0] \
                and rd.res(node.input[0]) in out.act:
            _float_clip(rd, out, node, attrs, label)
        elif op == "DequantizeLinear":
            _dequantize_linear(rd, out, node, attrs, label)
        else:
            name = _layer_name(node, index, taken)
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.name = name
            del new.input[:]
            new.input.extend(rd.res(i) if i else "" for i in node.input)
            kept.append(new)
            out.nodes[name] = new
            for o in node.output:
                out.producer[o] = name
    _check_quantized_edges(out, model)
    return dataclasses.replace(out, model=_float_model(model, rd, out, kept))


def _quant(rd: _Reader, out: Stripped, node: Any, attrs: dict[str, Any], label: str) -> None:
    """QONNX Quant(x, scale, zeropt, bitwidth)."""
    check_zero_point(rd.const(node, 2, "zero point", label), label)
    bw = rd.const(node, 3, "bit width", label)
    if bw is None:
        raise InputError(f"node {label!r}: Quant without bit width")
    rounding = attrs.get("rounding_mode", b"ROUND")
    rounding = check_rounding(rounding.decode() if isinstance(rounding, bytes) else rounding,
                              label)
    signed, narrow = bool(attrs.get("signed", 1)), bool(attrs.get("narrow", 0))
    x = rd.res(node.input[0])
    if x in rd.values:  # a weight or a bias
        bits = check_bits(scalar(bw, "bit width", label), label, MAX_CONST_BITS)
        sp = rd.spec(rd.const(node, 1, "scale", label), bits, signed, narrow, rounding, label,
                     const=rd.values[x])
        _const_result(rd, out, node.output[0], sp.quantize(rd.values[x]), sp)
        return
    bits = check_bits(scalar(bw, "bit width", label), label, MAX_DATA_BITS)
    sp = rd.spec(rd.const(node, 1, "scale", label), bits, signed, narrow, rounding, label)
    _act_result(rd, out, node.output[0], x, sp)


def _quantize_linear(rd: _Reader, out: Stripped, node: Any, attrs: dict[str, Any],
                     label: str) -> None:
    zp = rd.const(node, 2, "zero point", label)
    check_zero_point(zp, label)
    bits, signed = _int_type(zp, attrs, label)
    x = rd.res(node.input[0])
    const = rd.values.get(x)
    sp = rd.spec(rd.const(node, 1, "scale", label), bits, signed, False, "ROUND", label,
                 const=const)
    if const is not None:
        rd.ints[node.output[0]] = (sp.quantize(const), sp)
        return
    if bits > MAX_DATA_BITS:
        raise InputError(f"node {label!r}: {bits}-bit activations (at most {MAX_DATA_BITS})")
    rd.int_acts[node.output[0]] = _IntAct(x, sp)


def _int_clip(rd: _Reader, node: Any, attrs: dict[str, Any], label: str) -> None:
    src = rd.res(node.input[0])
    lo = rd.const(node, 1, "min", label)
    hi = rd.const(node, 2, "max", label)
    lo_i = int(attrs.get("min", -2**62) if lo is None else scalar(lo, "min", label))
    hi_i = int(attrs.get("max", 2**62) if hi is None else scalar(hi, "max", label))
    if src in rd.int_acts:
        a = rd.int_acts[src]
        rd.int_acts[node.output[0]] = _IntAct(a.src, a.spec.with_range(lo_i, hi_i, label))
        return
    ints, sp = _int_const(rd, src, label)
    # the quantizer (and its scale) stays the one that made the integers
    rd.ints[node.output[0]] = (np.clip(ints, lo_i, hi_i), sp.with_range(lo_i, hi_i, sp.node))


def _float_clip(rd: _Reader, out: Stripped, node: Any, attrs: dict[str, Any],
                label: str) -> None:
    """Clip right after a quantizer, to values on its grid: a narrower bit width."""
    src = rd.res(node.input[0])
    last = out.act[src][-1]
    lo = rd.const(node, 1, "min", label)
    hi = rd.const(node, 2, "max", label)
    bounds = []
    for v, default in ((lo, attrs.get("min")), (hi, attrs.get("max"))):
        if v is None and default is None:
            raise InputError(f"node {label!r}: Clip without bounds")
        x = np.ldexp(scalar(v, "bound", label) if v is not None else float(default), last.fl)
        if x != np.rint(x):
            raise InputError(f"node {label!r}: Clip bound {x:g}·2^-{last.fl} is not on the grid"
                             f" of {last.node!r}")
        bounds.append(int(x))
    out.act[src][-1] = last.with_range(bounds[0], bounds[1], last.node)
    rd.alias[node.output[0]] = src


def _int_const(rd: _Reader, src: str, label: str) -> tuple[np.ndarray, QSpec]:
    """An integer constant and its quantizer (for a plain initializer: its type's range; the
    scale comes from the DequantizeLinear reading it)."""
    if src in rd.ints:
        return rd.ints[src]
    v = rd.values.get(src)
    if v is None or v.dtype.kind not in "iu":
        raise InputError(f"node {label!r}: reads {src!r}, which is neither a QuantizeLinear"
                         " output nor an integer constant")
    key = str(v.dtype)
    if key not in NUMPY_INT_TYPES:
        raise InputError(f"node {label!r}: integers of type {key}")
    bits, signed = NUMPY_INT_TYPES[key]
    return v.astype(np.int64), QSpec(0, bits, signed, False, "ROUND", "")


def _dequantize_linear(rd: _Reader, out: Stripped, node: Any, attrs: dict[str, Any],
                       label: str) -> None:
    src = rd.res(node.input[0])
    zp = rd.const(node, 2, "zero point", label)
    check_zero_point(zp, label)
    scale = rd.const(node, 1, "scale", label)
    if src in rd.int_acts:
        a = rd.int_acts[src]
        sp = rd.spec(scale, a.spec.bits, a.spec.signed, a.spec.narrow, "ROUND", label)
        if sp.fl != a.spec.fl:
            raise InputError(f"node {label!r}: dequantizes with scale 2^{-sp.fl} what"
                             f" {a.spec.node!r} quantized with 2^{-a.spec.fl} (a rescaling)")
        _act_result(rd, out, node.output[0], a.src, a.spec)
        return
    ints, q = _int_const(rd, src, label)
    flat = np.asarray(scale, dtype=np.float64).reshape(-1) if scale is not None else None
    if (flat is not None and flat.size > 1 and rd.requantize
            and not np.all(flat == flat[0])):
        axis = int(attrs.get("axis", 1))
        shape = [1] * ints.ndim
        shape[axis] = flat.size
        deq = ints * flat.reshape(shape)
        sp = rd.spec(flat, q.bits, q.signed, q.narrow, "ROUND", label, const=deq)
        _const_result(rd, out, node.output[0], sp.quantize(deq), sp)
        return
    sp = rd.spec(scale, q.bits, q.signed, q.narrow, "ROUND", label)
    if q.node and sp.fl != q.fl and not sp.requantized:
        raise InputError(f"node {label!r}: dequantizes with scale 2^{-sp.fl} what {q.node!r}"
                         f" quantized with 2^{-q.fl} (a rescaling)")
    _const_result(rd, out, node.output[0], ints, sp)


def _const_result(rd: _Reader, out: Stripped, name: str, ints: np.ndarray, sp: QSpec) -> None:
    out.consts[name] = (ints, sp)
    rd.values[name] = np.ldexp(ints.astype(np.float64), -sp.fl).astype(np.float32)
    if sp.requantized:
        out.notes.append(f"{sp.node}: {sp.requantized}")


def _act_result(rd: _Reader, out: Stripped, name: str, src: str, sp: QSpec) -> None:
    out.act.setdefault(src, []).append(sp)
    rd.alias[name] = src
    if sp.requantized:
        out.notes.append(f"{sp.node}: {sp.requantized}")


def _check_quantized_edges(out: Stripped, model: Any) -> None:
    """A quantized tensor must not also be read unquantized (the quantizer would then belong to
    one edge, not to the tensor)."""
    for node in model.graph.node:
        if node.op_type in QONNX_OPS | QDQ_OPS or node.op_type == "Constant":
            continue
        for i in node.input:
            if i in out.act:
                raise InputError(f"tensor {i!r} is read both quantized and unquantized"
                                 f" (by {node.name or node.op_type!r})")


def _float_model(model: Any, rd: _Reader, out: Stripped, kept: list[Any]) -> Any:
    import onnx
    from onnx import numpy_helper

    used = {i for n in kept for i in n.input if i}
    g = onnx.GraphProto()
    g.name = model.graph.name
    g.node.extend(kept)
    for name in sorted(used):
        if name in rd.values:
            v = rd.values[name]
            if name not in out.consts and v.dtype.kind == "f":
                out.floats.add(name)
            g.initializer.append(numpy_helper.from_array(np.asarray(v), name))
    g.input.extend(i for i in model.graph.input if i.name == out.input_name)
    for o in model.graph.output:
        new = onnx.ValueInfoProto()
        new.CopyFrom(o)
        new.name = rd.res(o.name)
        g.output.append(new)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.CopyFrom(g)
    return m
