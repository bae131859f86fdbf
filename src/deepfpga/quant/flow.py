"""The quantization flow (paper §5): dynamic precision, greedy layer by layer, and the static
baseline.

Dynamic (default):
1. The graph is prepared (batch norm folded, dropout removed) and the widths resolved
   (`deepfpga.quant.bits`).
2. Weights: per CONV/FC layer the fl minimising Σ|W − Q(W)| (`deepfpga.quant.weights`).
3. Feature maps, greedy in topological order on the calibration batch. The network input's fl is
   chosen first (to_fixed candidates against the float input). Then, with everything upstream
   already in fixed point, for each CONV/FC layer: the bias fl (≤ fl_in + fl_w, after the input
   fl is known), the exact integer accumulator ONCE (reference `conv_acc`/`fc_acc` + aligned
   bias), and each candidate output fl is only a requantize of it, scored against the float
   reference (`deepfpga.quant.activations`). The error is measured where the accelerator writes
   the layer out: after the ReLU / max-pool / flatten that directly follow it (they inherit its
   format and commute with the data shift, so they are applied to the accumulator once). The
   chosen format's integer output (reference `finish`) feeds the next layers; nothing upstream is
   ever recomputed.
   Host-only layers (softmax, LRN, avgpool, add) run in float on the dequantized inputs and get
   an output format chosen the same way (to_fixed candidates).
Static: one fl for all weights (minimising their summed error), one for all biases (≤ the common
fl_acc) and one for the input and every feature map, minimising the total error over all
layers: each data-fl candidate is a full fixed-point pass.

The float reference of a layer is the float network's own activation (float input, float
upstream), so errors do not compound unseen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepfpga.cli.output import progress
from deepfpga.errors import InputError, ShapeError
from deepfpga.ir import INPUT, Conv2d, Flatten, Graph, Layer, Linear, MaxPool2d, ReLU
from deepfpga.ir.float_exec import apply_layer, run_float, run_layer
from deepfpga.ir.passes import prepare_for_quantization
from deepfpga.quant import activations as act
from deepfpga.quant.bits import BitPreset, LayerBits, Overrides, get_preset, resolve_bits
from deepfpga.quant.fixedpoint import FixedFormat, align_bias, to_fixed
from deepfpga.quant.qmodel import PASSTHROUGH_KINDS, LayerFormats, QuantizedModel
from deepfpga.quant.reference import conv_acc, fc_acc, finish, maxpool_int
from deepfpga.quant.weights import WEIGHT_METRICS, FlChoice, choose_fl, search_fl

METHOD_VERSION = 1

Chooser = Callable[[str, act.Quantizer, act.Scorer, "int | None", int], act.FmChoice]
BiasFl = Callable[[str, int], FlChoice]


@dataclass(frozen=True)
class _Weights:
    """A weighted layer's quantized weights and float bias (the bias fl needs fl_in first)."""

    w: np.ndarray
    fmt: FixedFormat
    choice: FlChoice
    bias: np.ndarray | None
    bias_bw: int | None


@dataclass
class _Walk:
    formats: dict[str, FixedFormat] = field(default_factory=dict)
    bias: dict[str, tuple[np.ndarray, FixedFormat, FlChoice]] = field(default_factory=dict)
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    float_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    total_error: float = 0.0


# --- helpers -------------------------------------------------------------------------------
def _check_calib(graph: Graph, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise InputError(f"calibration data must be numeric, got dtype {a.dtype}")
    if a.ndim != len(graph.input_shape) + 1 or tuple(a.shape[1:]) != graph.input_shape:
        raise ShapeError(
            f"calibration data of shape {a.shape} does not fit graph {graph.name!r}:"
            f" expected (N, {', '.join(map(str, graph.input_shape))})"
        )
    if a.shape[0] == 0:
        raise InputError("calibration data is empty")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise InputError("calibration data contains NaN or infinite values")
    return a


def _fused_chain(g: Graph, layer: Layer) -> list[Layer]:
    """Pass-through layers that directly follow `layer` (single reader each): they keep its
    format, so its output is measured at the end of this chain."""
    chain: list[Layer] = []
    cur = layer
    while cur.name not in g.outputs:
        readers = g.consumers(cur.name)
        if len(readers) != 1 or readers[0].kind not in PASSTHROUGH_KINDS:
            break
        cur = readers[0]
        chain.append(cur)
    return chain


def _passthrough_any_int(layer: Layer, v: np.ndarray) -> np.ndarray:
    """relu / maxpool / flatten on integers of any range (used on accumulators for scoring)."""
    if isinstance(layer, ReLU):
        return np.maximum(v, 0)
    if isinstance(layer, MaxPool2d):
        t = F.max_pool2d(torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)),
                         layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
        return t.numpy()
    if isinstance(layer, Flatten):
        return v.reshape(v.shape[0], -1)
    return v  # dropout


def _passthrough_data(layer: Layer, y: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    """The real pass-through on fixed-point data, as the reference executor computes it."""
    if isinstance(layer, MaxPool2d):
        return maxpool_int(y, layer.kernel, layer.stride, layer.padding, layer.ceil_mode,
                           qmin=fmt.qmin)
    return _passthrough_any_int(layer, y)


def _host_float(layer: Layer, xs: list[np.ndarray], fls: list[int]) -> np.ndarray:
    """A host-only layer on dequantized inputs, in float64 as the reference executor runs it."""
    vals = [torch.from_numpy(np.ldexp(np.asarray(x, dtype=np.float64), -fl))
            for x, fl in zip(xs, fls, strict=True)]
    with torch.inference_mode():
        return apply_layer(layer, {}, vals).numpy()


def _mean_abs(d: np.ndarray) -> float:
    return float(np.abs(d).mean()) if d.size else 0.0


def _rel_l1(q: np.ndarray, r: np.ndarray) -> float:
    den = float(np.abs(r).sum())
    return float(np.abs(q - r).sum()) / den if den > 0 else 0.0


def _choice_dict(c: act.FmChoice, fmt: FixedFormat) -> dict[str, Any]:
    return {
        "bw": fmt.bw, "fl": fmt.fl, "error": c.error, "saturated": c.saturated,
        "fl_overflow_free": c.fl_overflow_free,
        "candidates": [[k.fl, k.error, k.saturated] for k in c.candidates],
    }


def _tensor_dict(x: np.ndarray, q: np.ndarray, fmt: FixedFormat, c: FlChoice) -> dict[str, Any]:
    deq = np.ldexp(q.astype(np.float64), -fmt.fl)
    x64 = np.asarray(x, dtype=np.float64)
    return {
        "bw": fmt.bw, "fl": fmt.fl, "error": _mean_abs(deq - x64), "rel_error": _rel_l1(deq, x64),
        "fl_overflow_free": c.fl_overflow_free,
        "candidates": [[fl, e] for fl, e in c.candidates],
    }


# --- the walk: one fixed-point pass with a per-layer format chooser ---------------------------
def _walk(g: Graph, plan: Mapping[str, LayerBits], x: np.ndarray,
          wq: Mapping[str, _Weights], bias_fl: BiasFl, choose: Chooser, metric: str,
          show_progress: bool = False) -> _Walk:
    out = _Walk()
    last_use: dict[str, int] = {}
    for i, layer in enumerate(g.layers):
        for s in layer.inputs:
            last_use[s] = i
    keep = set(g.outputs)
    fenv: dict[str, np.ndarray] = {INPUT: x}
    qenv: dict[str, np.ndarray] = {}

    # The network input: to_fixed candidates against the float input itself.
    bw_in = plan[INPUT].data
    c = choose(INPUT, act.float_quantizer(x, bw_in), act.make_scorer(x, metric),
               act.overflow_free_fl_float(x, bw_in), bw_in)
    fmt_in = FixedFormat(bw_in, c.fl)
    out.formats[INPUT] = fmt_in
    qenv[INPUT] = to_fixed(x, fmt_in, "calibration input")
    out.report[INPUT] = {"kind": "input", "output": _choice_dict(c, fmt_in)}
    out.total_error += c.error * (x.size if metric != "kl" else 1)

    done: set[str] = set()
    layers = progress(g.layers, total=len(g.layers), desc="calibrating",
                      quiet=not show_progress)
    for i, layer in enumerate(layers):
        if layer.name in done:
            _free(fenv, qenv, layer.inputs, last_use, i, keep)
            continue
        bits = plan[layer.name]
        src = layer.inputs[0]
        if layer.kind in PASSTHROUGH_KINDS:
            fmt = out.formats[src]
            out.formats[layer.name] = fmt
            qenv[layer.name] = _passthrough_data(layer, qenv[src], fmt)
            fenv[layer.name] = run_layer(g, layer, [fenv[src]])
            out.report[layer.name] = {"kind": layer.kind, "inherits": src}
        elif isinstance(layer, Conv2d | Linear):
            _weighted(g, layer, bits, wq[layer.name], bias_fl, choose, metric, out, fenv, qenv,
                      done)
        elif layer.host_only:
            v = _host_float(layer, [qenv[s] for s in layer.inputs],
                            [out.formats[s].fl for s in layer.inputs])
            ref = run_layer(g, layer, [fenv[s] for s in layer.inputs])
            c = choose(layer.name, act.float_quantizer(v, bits.data), act.make_scorer(ref, metric),
                       act.overflow_free_fl_float(v, bits.data), bits.data)
            fmt = FixedFormat(bits.data, c.fl)
            out.formats[layer.name] = fmt
            qenv[layer.name] = to_fixed(v, fmt, f"output of {layer.name}")
            fenv[layer.name] = ref
            out.report[layer.name] = {"kind": layer.kind, "output": _choice_dict(c, fmt)}
            out.total_error += c.error * (ref.size if metric != "kl" else 1)
        else:
            raise InputError(f"layer {layer.name!r}: kind {layer.kind!r} cannot be quantized"
                             " (batch norm must be folded into a conv first)")
        _free(fenv, qenv, layer.inputs, last_use, i, keep)
    for name in g.outputs:
        out.outputs[name] = qenv[name]
        out.float_outputs[name] = fenv[name]
    return out


def _free(fenv: dict[str, np.ndarray], qenv: dict[str, np.ndarray], inputs: tuple[str, ...],
          last_use: Mapping[str, int], i: int, keep: set[str]) -> None:
    for s in inputs:
        if last_use.get(s) == i and s not in keep:
            fenv.pop(s, None)
            qenv.pop(s, None)


def _weighted(g: Graph, layer: Conv2d | Linear, bits: LayerBits, w: _Weights, bias_fl: BiasFl,
              choose: Chooser, metric: str, out: _Walk, fenv: dict[str, np.ndarray],
              qenv: dict[str, np.ndarray], done: set[str]) -> None:
    src = layer.inputs[0]
    fmt_in = out.formats[src]
    fl_acc = fmt_in.fl + w.fmt.fl
    xq = qenv[src]
    if isinstance(layer, Conv2d):
        acc = conv_acc(xq, w.w, layer.stride, layer.padding)
    else:
        acc = fc_acc(xq, w.w)
    b_int = bfmt = None
    if w.bias is not None and w.bias_bw is not None:
        bc = bias_fl(layer.name, fl_acc)
        bfmt = FixedFormat(w.bias_bw, bc.fl)
        b_int = to_fixed(w.bias, bfmt, f"bias of {layer.name}")
        out.bias[layer.name] = (b_int, bfmt, bc)
    acc = np.asarray(acc, dtype=np.int64)
    if b_int is not None:
        shape = (1, -1) + (1,) * (acc.ndim - 2)
        acc_b = acc + align_bias(b_int, bfmt.fl, fl_acc).reshape(shape)
    else:
        acc_b = acc

    # Float reference through the fused chain; the accumulator through the same chain.
    chain = _fused_chain(g, layer)
    refs = [run_layer(g, layer, [fenv[src]])]
    scored = acc_b
    for c_layer in chain:
        refs.append(run_layer(g, c_layer, [refs[-1]]))
        scored = _passthrough_any_int(c_layer, scored)
    c = choose(layer.name, act.acc_quantizer(scored, fl_acc, bits.data),
               act.make_scorer(refs[-1], metric),
               act.acc_overflow_free_fl(scored, fl_acc, bits.data), bits.data)
    del scored, acc_b
    fmt = FixedFormat(bits.data, c.fl)
    fmts = LayerFormats(fmt_in, fmt, w.fmt, bfmt)
    # A ReLU right after the layer is fused as on the accelerator (contract step 3), so values
    # it clears are not counted as saturated; the ReLU layer itself then changes nothing.
    y, nsat = finish(acc, b_int, fmts, bool(chain) and isinstance(chain[0], ReLU))
    del acc
    out.formats[layer.name] = fmt
    qenv[layer.name] = y
    fenv[layer.name] = refs[0]
    rep = _choice_dict(c, fmt)
    rep["measured_at"] = chain[-1].name if chain else layer.name
    rep["saturated_layer"] = int(nsat)
    out.report[layer.name] = {"kind": layer.kind, "output": rep}
    out.total_error += c.error * (refs[-1].size if metric != "kl" else 1)
    prev = layer.name
    for c_layer, ref in zip(chain, refs[1:], strict=True):
        out.formats[c_layer.name] = fmt
        qenv[c_layer.name] = _passthrough_data(c_layer, qenv[prev], fmt)
        fenv[c_layer.name] = ref
        out.report[c_layer.name] = {"kind": c_layer.kind, "inherits": prev}
        done.add(c_layer.name)
        # The chain's intermediates are read only by the next chain member.
        if prev not in g.outputs:
            qenv.pop(prev, None)
            fenv.pop(prev, None)
        prev = c_layer.name


# --- choosers ----------------------------------------------------------------------------------
def _dynamic_chooser(name: str, quantize: act.Quantizer, score: act.Scorer, fl0: int | None,
                     bw: int) -> act.FmChoice:
    return act.search(quantize, score, fl0, bw)


def _fixed_chooser(fl: int) -> Chooser:
    def choose(name: str, quantize: act.Quantizer, score: act.Scorer, fl0: int | None,
               bw: int) -> act.FmChoice:
        q, n = quantize(fl)
        cand = act.FmCandidate(fl, score(q, FixedFormat(bw, fl)), n)
        return act.FmChoice(fl, cand.error, n, (cand,), fl0)

    return choose


# --- public API ----------------------------------------------------------------------------------
def quantize(graph: Graph, calib_x: np.ndarray, bits: str | BitPreset = "8",
             static: bool = False, metric: str = "l1",
             overrides: Overrides | None = None, progress: bool = False, *,
             weight_metric: str = "l1") -> QuantizedModel:
    """Quantize `graph` (with float weights) on the calibration batch `calib_x` (N, C, H, W).

    `bits`: preset `16`, `8` or `8/4`; `overrides`: {layer: {data_bits|weight_bits|bias_bits: n}}
    (see `deepfpga.quant.bits`); `static`: the one-fl-for-everything baseline; `metric`: l1, l2
    or kl for feature maps; `weight_metric`: l1 or l2 for weights and biases. The calibration
    report (per-layer widths, fls, errors, candidates) is in `qmodel.meta`.
    """
    preset = get_preset(bits)
    act.check_metric(metric)
    if weight_metric not in WEIGHT_METRICS:
        raise InputError(f"unknown weight metric {weight_metric!r}"
                         f" (use {' or '.join(WEIGHT_METRICS)})")
    graph.require_weights()
    g = prepare_for_quantization(graph)
    g.require_weights()
    x = _check_calib(g, calib_x)
    plan = resolve_bits(g, preset, overrides)
    weighted = [layer for layer in g.layers if isinstance(layer, Conv2d | Linear)]
    if not weighted:
        raise InputError(f"graph {g.name!r} has no CONV or FC layer to quantize")

    def wchoice(fl_of: Callable[[Layer], FlChoice]) -> dict[str, _Weights]:
        res = {}
        for layer in weighted:
            p = g.params[layer.name]
            c = fl_of(layer)
            fmt = FixedFormat(plan[layer.name].weight, c.fl)  # type: ignore[arg-type]
            res[layer.name] = _Weights(to_fixed(p["weight"], fmt, f"weights of {layer.name}"),
                                       fmt, c, p.get("bias"), plan[layer.name].bias)
        return res

    if not static:
        wq = wchoice(lambda layer: choose_fl(g.params[layer.name]["weight"],
                                             plan[layer.name].weight,  # type: ignore[arg-type]
                                             weight_metric))
        walk = _walk(g, plan, x, wq,
                     lambda name, fl_acc: choose_fl(g.params[name]["bias"],
                                                    plan[name].bias,  # type: ignore[arg-type]
                                                    weight_metric, max_fl=fl_acc),
                     _dynamic_chooser, metric, progress)
        static_info = None
    else:
        walk, wq, static_info = _static(g, plan, x, weighted, wchoice, metric, weight_metric,
                                        progress)
    return _assemble(g, plan, x, wq, walk, preset, static, metric, weight_metric, overrides,
                     static_info)


def _static(g: Graph, plan: Mapping[str, LayerBits], x: np.ndarray, weighted: list[Layer],
            wchoice: Callable[[Callable[[Layer], FlChoice]], dict[str, _Weights]], metric: str,
            weight_metric: str, show_progress: bool
            ) -> tuple[_Walk, dict[str, _Weights], dict[str, Any]]:
    wc = search_fl([(g.params[la.name]["weight"], plan[la.name].weight) for la in weighted],
                   weight_metric)
    wq = wchoice(lambda layer: wc)
    biases = [(g.params[la.name]["bias"], plan[la.name].bias) for la in weighted
              if "bias" in g.params[la.name] and plan[la.name].bias is not None]
    fl0 = _static_fl0(g, plan, x)
    tried: list[tuple[int, float]] = []
    best: tuple[int, _Walk] | None = None
    bar = progress(total=None, desc="static fl search", quiet=not show_progress)
    fl = fl0 - act.BELOW
    while fl <= fl0 + act.MAX_ABOVE:
        fl_acc = fl + wc.fl
        bc = search_fl(biases, weight_metric, max_fl=fl_acc) if biases else None
        walk = _walk(g, plan, x, wq, lambda name, fa, bc=bc: bc, _fixed_chooser(fl), metric)
        tried.append((fl, walk.total_error))
        bar.update(1)
        if best is None or walk.total_error < best[1].total_error:
            best = (fl, walk)
        if fl >= fl0 + 1 and fl - best[0] >= act.PATIENCE:
            break
        fl += 1
    bar.close()
    assert best is not None
    info = {"weight_fl": wc.fl, "weight_candidates": [list(c) for c in wc.candidates],
            "data_fl": best[0], "data_fl_overflow_free": fl0,
            "data_candidates": [[f, e] for f, e in tried]}
    return best[1], wq, info


def _static_fl0(g: Graph, plan: Mapping[str, LayerBits], x: np.ndarray) -> int:
    """Largest fl at which no feature map that gets its own format overflows (float pass)."""
    points = [INPUT] + [la.name for la in g.layers if la.kind not in PASSTHROUGH_KINDS]
    maxabs = dict.fromkeys(points, 0.0)
    maxabs[INPUT] = float(np.abs(x).max())
    for i in range(0, x.shape[0], 256):
        acts = run_float(g, x[i:i + 256], return_all=True)
        assert isinstance(acts, dict)
        for name in points[1:]:
            maxabs[name] = max(maxabs[name], float(np.abs(acts[name]).max()))
    fls = [act.overflow_free_fl_float(np.array([m]), plan[n].data) for n, m in maxabs.items()]
    fls = [f for f in fls if f is not None]
    return min(fls) if fls else 0


def _assemble(g: Graph, plan: Mapping[str, LayerBits], x: np.ndarray,
              wq: Mapping[str, _Weights], walk: _Walk, preset: BitPreset, static: bool,
              metric: str, weight_metric: str, overrides: Overrides | None,
              static_info: dict[str, Any] | None) -> QuantizedModel:
    formats: dict[str, LayerFormats] = {}
    weights: dict[str, dict[str, np.ndarray]] = {}
    report = {k: dict(v) for k, v in walk.report.items()}
    for layer in g.layers:
        fin = walk.formats[layer.inputs[0]]
        fout = walk.formats[layer.name]
        if isinstance(layer, Conv2d | Linear):
            w = wq[layer.name]
            arrays = {"weight": w.w}
            bfmt = None
            report[layer.name]["weight"] = _tensor_dict(g.params[layer.name]["weight"], w.w,
                                                        w.fmt, w.choice)
            if layer.name in walk.bias:
                b_int, bfmt, bc = walk.bias[layer.name]
                arrays["bias"] = b_int
                report[layer.name]["bias"] = _tensor_dict(g.params[layer.name]["bias"], b_int,
                                                          bfmt, bc)
            formats[layer.name] = LayerFormats(fin, fout, w.fmt, bfmt)
            weights[layer.name] = arrays
        else:
            formats[layer.name] = LayerFormats(fin, fout)
    meta: dict[str, Any] = {
        "quantizer": {
            "method": "static" if static else "dynamic", "version": METHOD_VERSION,
            "bits": preset.name, "metric": metric, "weight_metric": weight_metric,
            "calib_size": int(x.shape[0]),
            "overrides": {k: dict(v) for k, v in (overrides or {}).items()},
        },
        "bits": {name: b.to_dict() for name, b in plan.items()},
        "layers": report,
        "calibration": _summary(g, walk),
    }
    if static_info is not None:
        meta["static"] = static_info
    return QuantizedModel(g.without_weights(), walk.formats[INPUT], formats, weights, meta)


def _summary(g: Graph, walk: _Walk) -> dict[str, Any]:
    """Error of the network's fixed-point output against float on the calibration batch."""
    name = g.outputs[0]
    q = walk.outputs[name]
    r = np.asarray(walk.float_outputs[name], dtype=np.float64)
    fmt = walk.formats[name]
    deq = np.ldexp(q.astype(np.float64), -fmt.fl)
    res: dict[str, Any] = {
        "output": name, "output_error": _mean_abs(deq - r), "output_rel_error": _rel_l1(deq, r),
        "total_error": float(walk.total_error),
    }
    if r.ndim == 2:
        res["top1_agreement"] = float(np.mean(np.argmax(q, axis=1) == np.argmax(r, axis=1)))
    res["saturated"] = int(sum(
        v["output"].get("saturated_layer", v["output"]["saturated"])
        for v in walk.report.values() if "output" in v
    ))
    return res


def replace_meta(qm: QuantizedModel, **changes: Any) -> QuantizedModel:
    """A copy of `qm` with meta entries replaced (e.g. to record where it came from)."""
    return dataclasses.replace(qm, meta={**qm.meta, **changes})
