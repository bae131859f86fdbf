"""A quantized ONNX file (QONNX or QDQ) → `QuantizedModel`, formats from the file.

Mapping (docs/interchange.md): the quantizer on the model input gives the input format; a
weight's or bias's quantizer gives its format and integers; the first quantizer after a CONV/FC
layer (directly, or after the ReLU / max pooling / flatten / dropout that follows it) gives the
layer's output format. Everything the contract cannot reproduce exactly is refused, naming the
node and the value; the one known deviation — the file's activation quantizers round half to
even, the contract's data shift rounds half up — is recorded in `meta['imported']` (it matters
only on exact ties, and files written by deepfpga's exporter avoid it; see `export.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.hw.arch import stays_float
from deepfpga.interchange.qgraph import Stripped, quant_kind, strip_quantizers
from deepfpga.interchange.quantspec import MAX_DATA_BITS, QSpec
from deepfpga.ir import INPUT, Conv2d, Graph, Layer, Linear
from deepfpga.quant.fixedpoint import FixedFormat
from deepfpga.quant.qmodel import PASSTHROUGH_KINDS, LayerFormats, QuantizedModel


@dataclass(frozen=True)
class Imported:
    """`qmodel`: the quantized model; `graph`: the float graph with the dequantized weights
    (what analysis and the float baseline use); `kind`: 'qonnx' or 'qdq'."""

    qmodel: QuantizedModel
    graph: Graph
    kind: str
    notes: tuple[str, ...]


def is_quantized_onnx(model: Any) -> bool:
    """Whether an ONNX ModelProto holds QONNX Quant or QDQ nodes."""
    return quant_kind(model) is not None


def _model_proto(source: str | os.PathLike[str] | bytes | Any, label: str) -> tuple[Any, str]:
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source, label
    from deepfpga.frontends.onnx_file import read_onnx

    return read_onnx(source)


def load_quantized_onnx(source: str | os.PathLike[str] | bytes | Any, *,
                        requantize: bool = False, name: str | None = None,
                        label: str = "<model>") -> Imported:
    """Import a quantized ONNX model (path, bytes or ModelProto). `requantize`: round scales to
    the nearest power of two (and per-channel weight scales to one) instead of refusing."""
    from deepfpga.frontends.onnx_import import import_onnx

    model, label = _model_proto(source, label)
    try:
        st = strip_quantizers(model, requantize=requantize)
    except InputError as e:
        raise InputError(f"{label}: {e}") from None
    graph = import_onnx(st.model.SerializeToString(), name=name)
    try:
        q, notes = _quantized(graph, st, label)
    except InputError as e:
        raise InputError(f"{label}: {e}") from None
    return Imported(q, graph, st.kind, tuple(notes))


def load_prequantized(spec: str | os.PathLike[str]) -> Imported | None:
    """The imported model when `spec` names a quantized .onnx file, else None (the ordinary
    loaders then handle, or refuse, it)."""
    p = Path(spec)
    if p.suffix.lower() != ".onnx" or not p.is_file():
        return None
    import onnx

    try:
        model = onnx.load_model_from_string(p.read_bytes())
    except Exception:  # the ordinary ONNX loader names what is wrong
        return None
    if quant_kind(model) is None:
        return None
    return load_quantized_onnx(model, label=str(p))


def onnx_graph(source: str | os.PathLike[str] | bytes, name: str | None = None) -> Graph:
    """Any ONNX file as a float graph: a plain one through the importer, a quantized one
    (QONNX / QDQ) with its quantizers removed and its weights dequantized (`float_graph`)."""
    from deepfpga.frontends.onnx_file import read_onnx
    from deepfpga.frontends.onnx_import import import_model

    model, label = read_onnx(source)      # read once, whichever importer takes it
    if quant_kind(model) is not None:
        return float_graph(model, name)
    return import_model(model, label, name)


def float_graph(model: Any, name: str | None = None) -> Graph:
    """The float graph of any quantized ModelProto (quantizers removed, weights dequantized
    with the file's own scales and zero points), for analysis and re-quantization."""
    from deepfpga.frontends.onnx_import import import_onnx
    from deepfpga.interchange.dequant import dequantized_model

    return import_onnx(dequantized_model(model).SerializeToString(), name=name)


class _Formats:
    def __init__(self, graph: Graph, st: Stripped):
        self.g = graph
        self.st = st
        self.layer_names = {la.name for la in graph.layers}
        self.specs: dict[str, list[QSpec]] = {}
        for tensor, specs in st.act.items():
            self.specs.setdefault(self.owner(tensor), []).extend(specs)
        self.out: dict[str, FixedFormat] = {}
        self.nonneg: dict[str, bool] = {INPUT: False}
        self.ties: list[str] = []
        self.half_lsb: list[str] = []

    def owner(self, tensor: str) -> str:
        """The layer whose output the ONNX tensor is (through nodes the importer folds)."""
        seen = set()
        while tensor != self.st.input_name:
            node_name = self.st.producer.get(tensor)
            if node_name is None or node_name in seen:
                raise InputError(f"quantizer on {tensor!r}, which no supported layer computes")
            seen.add(node_name)
            if node_name in self.layer_names:
                return node_name
            node = self.st.nodes[node_name]
            ins = [i for i in node.input if i and i not in self.st.consts
                   and i not in self.st.floats]
            if not ins:
                raise InputError(f"quantizer on {tensor!r}, a constant expression")
            tensor = ins[0]
        return INPUT

    def fmt(self, name: str) -> FixedFormat:
        return self.out[name]

    # a quantizer downstream of a format that leaves every value unchanged
    def check_noop(self, where: str, cur: FixedFormat, nonneg: bool, sp: QSpec) -> None:
        lo_cur = 0.0 if nonneg else np.ldexp(float(cur.qmin), -cur.fl)
        hi_cur = np.ldexp(float(cur.qmax), -cur.fl)
        ok = (sp.fl >= cur.fl and np.ldexp(float(sp.lo), -sp.fl) <= lo_cur
              and np.ldexp(float(sp.hi), -sp.fl) >= hi_cur)
        if not ok:
            raise InputError(
                f"node {sp.node!r} requantizes the output of {where!r} from {cur} to"
                f" {sp.fmt} (range [{sp.lo}, {sp.hi}]); deepfpga requantizes only in CONV/FC"
                " layers (after the bias, before the next layer)"
            )

    def defining(self, where: str, sp: QSpec, nonneg: bool) -> FixedFormat:
        """The output format a quantizer gives a CONV/FC layer, if the contract reproduces it."""
        if not sp.full_range and not (nonneg and sp.hi == sp.fmt.qmax):
            raise InputError(
                f"node {sp.node!r}: range [{sp.lo}, {sp.hi}] on the output of {where!r}, which"
                " can be negative there; deepfpga saturates to the full signed range (exact only"
                " after a ReLU)"
            )
        if sp.rounding == "ROUND" or (sp.rounding == "HALF_UP" and not nonneg):
            self.ties.append(where)
        elif sp.rounding != "HALF_UP":
            raise InputError(f"node {sp.node!r}: rounding_mode {sp.rounding} on the output of"
                             f" {where!r}; deepfpga rounds to nearest (half up)")
        return sp.fmt

    def downstream(self, layer: Layer) -> tuple[QSpec, bool] | None:
        """The first quantizer on the pass-through chain after `layer`, and whether a ReLU
        comes before it."""
        name, nonneg = layer.name, False
        while True:
            readers = self.g.consumers(name)
            if len(readers) != 1 or readers[0].kind not in PASSTHROUGH_KINDS:
                return None
            nxt = readers[0]
            nonneg = nonneg or nxt.kind == "relu"
            if self.specs.get(nxt.name):
                return self.specs[nxt.name][0], nonneg
            name = nxt.name


def _const_spec(st: Stripped, tensor: str | None) -> tuple[np.ndarray, QSpec] | None:
    return None if tensor is None else st.consts.get(tensor)


def _param_tensors(st: Stripped, layer: Layer) -> tuple[str | None, str | None]:
    """The ONNX constants that became the layer's weight and bias."""
    node = st.nodes[layer.name]
    w = node.input[1] if len(node.input) > 1 else None
    b = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.op_type == "MatMul":  # the importer folds a following Add(constant) into the bias
        for other in st.nodes.values():
            if other.op_type == "Add" and node.output[0] in other.input:
                b = next((i for i in other.input if i != node.output[0]), None)
    return w, b


def _exact_ints(v: np.ndarray, fl: int, what: str) -> np.ndarray:
    """Integers q with v = q·2^-fl, refused when v is not on that grid (e.g. Gemm alpha)."""
    s = np.ldexp(np.asarray(v, dtype=np.float64), fl)
    q = np.rint(s)
    if not np.array_equal(q, s):
        raise InputError(f"{what}: values are not multiples of 2^{-fl} (a scaled Gemm, or"
                         " integers beyond float32's 2^24)")
    return q.astype(np.int64)


def _narrowest(q: np.ndarray, fl: int) -> tuple[np.ndarray, FixedFormat]:
    """The same values q·2^-fl in the fewest bits: trailing zero bits dropped, then the
    smallest signed width (biases are plain integers; their width only bounds them)."""
    q = np.asarray(q, dtype=np.int64)
    nz = q[q != 0]
    while nz.size and not np.any(nz & 1) and fl > -64:
        q, nz, fl = q >> 1, nz >> 1, fl - 1
    hi = int(np.abs(q).max(initial=0))
    bw = max(2, int(hi).bit_length() + 1)
    if bw > 32:
        raise InputError(f"bias integers up to {hi} need {bw} bits (at most 32)")
    return q, FixedFormat(bw, fl)


def _bias(st: Stripped, layer: Layer, tensor: str | None, param: np.ndarray | None,
          fl_acc: int, out_spec: QSpec, fl_out: int, requantize: bool,
          notes: list[str]) -> tuple[np.ndarray, FixedFormat, bool] | None:
    """The bias integers and format, and whether they carried the exporter's half LSB."""
    if param is None:
        return None
    found = _const_spec(st, tensor)
    where = f"layer {layer.name!r}: bias"
    if found is None:  # an unquantized float bias: exact only on the accumulator's grid
        try:
            q = _exact_ints(param, fl_acc, where)
        except InputError:
            if not requantize:
                raise InputError(f"{where} is float and not a multiple of the accumulator's"
                                 f" step 2^{-fl_acc} (--requantize rounds it)") from None
            q = np.rint(np.ldexp(param.astype(np.float64), fl_acc)).astype(np.int64)
            notes.append(f"{layer.name}: float bias rounded to 2^{-fl_acc}")
        return _narrowest(q, fl_acc) + (False,)
    _, sp = found
    q = _exact_ints(param, sp.fl, where)
    fl_b = sp.fl
    if _is_half_lsb(q, fl_b, fl_acc, fl_out, out_spec):  # undone exactly
        return _narrowest((q - 1) >> 1, fl_acc) + (True,)
    if fl_b > fl_acc:
        k = fl_b - fl_acc
        if np.any(q & ((1 << k) - 1)):
            raise InputError(f"{where} has fl {fl_b} > fl_in + fl_w = {fl_acc}; the contract"
                             " adds biases at the accumulator's precision or coarser")
        q, fl_b = q >> k, fl_acc
    return _narrowest(q, fl_b) + (False,)


def _bias_excess(st: Stripped, tensor: str | None, param: np.ndarray | None, fl_acc: int,
                 fl_out: int, out_spec: QSpec) -> int:
    """How many bits a quantized bias is finer than the accumulator (0: it fits, or it is the
    exporter's half LSB that `_bias` undoes)."""
    found = _const_spec(st, tensor)
    if found is None or param is None:
        return 0
    sp = found[1]
    q = _exact_ints(param, sp.fl, "bias")
    if _is_half_lsb(q, sp.fl, fl_acc, fl_out, out_spec):
        return 0
    nz = q[q != 0]
    fl = sp.fl
    while nz.size and not np.any(nz & 1) and fl > fl_acc:
        nz, fl = nz >> 1, fl - 1
    return max(0, fl - fl_acc) if nz.size else 0


def _is_half_lsb(q: np.ndarray, fl_b: int, fl_acc: int, fl_out: int, out_spec: QSpec) -> bool:
    """deepfpga's exporter adds half an accumulator LSB so that round-half-even equals the
    contract's round half up (see export.py): odd integers at fl_acc + 1 before a rounding
    requantizer that rounds half to even."""
    return (fl_b == fl_acc + 1 and q.size > 0 and bool(np.all(q & 1)) and fl_acc > fl_out
            and out_spec.rounding == "ROUND")


def _weighted(fm: _Formats, layer: Conv2d | Linear, requantize: bool, notes: list[str]
              ) -> tuple[LayerFormats, dict[str, np.ndarray]]:
    st, params = fm.st, fm.g.params.get(layer.name, {})
    src = layer.inputs[0]
    fin = fm.fmt(src)
    w_t, b_t = _param_tensors(st, layer)
    found = _const_spec(st, w_t)
    if found is None:
        raise InputError(f"layer {layer.name!r}: weights are not quantized (no quantizer on"
                         f" {w_t!r})")
    _, wsp = found
    w = _exact_ints(params["weight"], wsp.fl, f"layer {layer.name!r}: weight")
    wfmt = FixedFormat(wsp.bits if wsp.signed else wsp.bits + 1, wsp.fl)
    own = fm.specs.get(layer.name, [])
    if own:
        out_spec, nonneg = own[0], False
    else:
        d = fm.downstream(layer)
        if d is None:
            raise InputError(f"output of layer {layer.name!r} is not quantized before the next"
                             " layer; deepfpga needs every CONV/FC output in fixed point")
        out_spec, nonneg = d
    fout = fm.defining(layer.name, out_spec, nonneg)
    fl_acc = fin.fl + wfmt.fl
    k = _bias_excess(st, b_t, params.get("bias"), fl_acc, fout.fl, out_spec)
    if k:
        # Brevitas adds a bias finer than the accumulator in float. Exactly the same is the
        # contract's sum at a k-bit finer accumulator: the weights' integers shifted left by k.
        if wfmt.bw + k > MAX_DATA_BITS:
            raise InputError(f"layer {layer.name!r}: bias is {k} bit(s) finer than fl_in + fl_w"
                             f" = {fl_acc} and the weights ({wfmt}) cannot widen by {k} bits")
        notes.append(f"{layer.name}: weights {wfmt} held as Q{wfmt.bw + k}.{wfmt.fl + k}"
                     f" (the same values) so that the bias's fl {fl_acc + k} is the"
                     " accumulator's")
        w, wfmt, fl_acc = w << k, FixedFormat(wfmt.bw + k, wfmt.fl + k), fl_acc + k
    b = _bias(st, layer, b_t, params.get("bias"), fl_acc, out_spec, fout.fl, requantize, notes)
    for sp in own[1:]:
        fm.check_noop(layer.name, fout, False, sp)
    arrays = {"weight": w}
    bfmt = None
    if b is not None:
        arrays["bias"], bfmt, half_lsb = b
        if half_lsb:
            fm.half_lsb.append(layer.name)
            if fm.ties and fm.ties[-1] == layer.name:
                fm.ties.pop()
    fm.nonneg[layer.name] = False
    return LayerFormats(fin, fout, wfmt, bfmt), arrays


def _quantized(graph: Graph, st: Stripped, label: str) -> tuple[QuantizedModel, list[str]]:
    fm = _Formats(graph, st)
    notes = list(st.notes)
    requantize = st.requantize
    in_specs = fm.specs.get(INPUT, [])
    if not in_specs:
        raise InputError(f"the model input {st.input_name!r} is not quantized")
    isp = in_specs[0]
    if isp.rounding != "ROUND":
        raise InputError(f"node {isp.node!r}: the input is quantized with {isp.rounding};"
                         " deepfpga quantizes inputs rounding half to even")
    if not isp.full_range:
        notes.append(f"input quantizer {isp.node!r} clips to [{isp.lo}, {isp.hi}]; deepfpga"
                     f" saturates to {isp.fmt} (the same for inputs inside that range)")
    fm.out[INPUT] = isp.fmt
    for sp in in_specs[1:]:
        fm.check_noop("the input", isp.fmt, False, sp)
    formats: dict[str, LayerFormats] = {}
    weights: dict[str, dict[str, np.ndarray]] = {}
    for layer in graph.layers:
        if isinstance(layer, Conv2d | Linear):
            formats[layer.name], weights[layer.name] = _weighted(fm, layer, requantize, notes)
            fm.out[layer.name] = formats[layer.name].output
            continue
        fin = fm.fmt(layer.inputs[0])
        own = fm.specs.get(layer.name, [])
        if layer.kind in PASSTHROUGH_KINDS:
            nonneg = fm.nonneg[layer.inputs[0]] or layer.kind == "relu"
            for sp in own:
                fm.check_noop(layer.name, fin, nonneg, sp)
            fm.nonneg[layer.name] = nonneg
            formats[layer.name] = LayerFormats(fin, fin)
        elif (layer.host_only and own) or stays_float(layer, graph.outputs):
            fout = own[0].fmt if own else fin  # an unquantized final host layer stays float
            formats[layer.name] = LayerFormats(fin, fout)
            fm.nonneg[layer.name] = False
        else:
            raise InputError(f"layer {layer.name!r} ({layer.kind}) has no fixed-point form in"
                             " deepfpga (conv, fc, relu, max pooling, flatten, dropout; host"
                             " layers when quantized or at the end)")
        fm.out[layer.name] = formats[layer.name].output
    if fm.half_lsb:
        notes.append(f"half-LSB rounding bias (deepfpga's export) in {', '.join(fm.half_lsb)}:"
                     " round half up, exactly")
    if fm.ties:
        notes.append(
            f"{len(fm.ties)} requantizer(s) in the file round exact ties otherwise than"
            f" deepfpga's half up ({', '.join(fm.ties)}; QuantizeLinear and QONNX ROUND round"
            " half to even): results differ only where a value lies exactly halfway between"
            " two output steps")
    meta = {"imported": {"format": st.kind, "source": label, "notes": notes,
                         "round_half_even_layers": fm.ties},
            "quantizer": {"method": f"imported ({st.kind})", "calib_size": 0}}
    q = QuantizedModel(graph.without_weights(), fm.out[INPUT], formats, weights, meta)
    return q, notes


def summary_rows(q: QuantizedModel) -> Sequence[list[Any]]:
    """Per-layer formats as table rows (layer, kind, input, weight, bias, output)."""
    return [[la.name, la.kind, *(str(getattr(q.formats[la.name], k) or "-")
                                 for k in ("input", "weight", "bias", "output"))]
            for la in q.graph.layers]
