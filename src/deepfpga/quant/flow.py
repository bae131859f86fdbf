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
   chosen format's integer output (reference `finish`) feeds the next layers. The images are
   streamed in batches with bounded memory (`deepfpga.quant.calibrate`): upstream outputs are
   kept in memory while they fit a budget and spilled to a temporary file beyond it.
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
from typing import Any

import numpy as np

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir import INPUT, Conv2d, Graph, Layer, Linear
from deepfpga.ir.float_exec import run_float
from deepfpga.ir.passes import prepare_for_quantization
from deepfpga.progress import progress
from deepfpga.quant import activations as act
from deepfpga.quant.bits import BitPreset, LayerBits, Overrides, get_preset, resolve_bits
from deepfpga.quant.calibrate import Chooser, Walk, Weights
from deepfpga.quant.calibrate import walk as run_walk
from deepfpga.quant.fixedpoint import FixedFormat, to_fixed
from deepfpga.quant.qmodel import PASSTHROUGH_KINDS, LayerFormats, QuantizedModel
from deepfpga.quant.weights import WEIGHT_METRICS, FlChoice, choose_fl, search_fl

METHOD_VERSION = 1


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


def _mean_abs(d: np.ndarray) -> float:
    return float(np.abs(d).mean()) if d.size else 0.0


def _rel_l1(q: np.ndarray, r: np.ndarray) -> float:
    den = float(np.abs(r).sum())
    return float(np.abs(q - r).sum()) / den if den > 0 else 0.0


def _tensor_dict(x: np.ndarray, q: np.ndarray, fmt: FixedFormat, c: FlChoice) -> dict[str, Any]:
    deq = np.ldexp(q.astype(np.float64), -fmt.fl)
    x64 = np.asarray(x, dtype=np.float64)
    return {
        "bw": fmt.bw, "fl": fmt.fl, "error": _mean_abs(deq - x64), "rel_error": _rel_l1(deq, x64),
        "fl_overflow_free": c.fl_overflow_free,
        "candidates": [[fl, e] for fl, e in c.candidates],
    }


# --- choosers ----------------------------------------------------------------------------------
def _dynamic_chooser(name: str, evaluate: act.Evaluator, fl0: int | None,
                     bw: int) -> act.FmChoice:
    return act.search_windowed(evaluate, fl0, bw)


def _fixed_chooser(fl: int) -> Chooser:
    def choose(name: str, evaluate: act.Evaluator, fl0: int | None,
               bw: int) -> act.FmChoice:
        e, n = evaluate([fl])[fl]
        cand = act.FmCandidate(fl, e, n)
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

    def wchoice(fl_of: Callable[[Layer], FlChoice]) -> dict[str, Weights]:
        res = {}
        for layer in weighted:
            p = g.params[layer.name]
            c = fl_of(layer)
            fmt = FixedFormat(plan[layer.name].weight, c.fl)  # type: ignore[arg-type]
            res[layer.name] = Weights(to_fixed(p["weight"], fmt, f"weights of {layer.name}"),
                                       fmt, c, p.get("bias"), plan[layer.name].bias)
        return res

    if not static:
        wq = wchoice(lambda layer: choose_fl(g.params[layer.name]["weight"],
                                             plan[layer.name].weight,  # type: ignore[arg-type]
                                             weight_metric))
        walk = run_walk(g, plan, x, wq,
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
            wchoice: Callable[[Callable[[Layer], FlChoice]], dict[str, Weights]], metric: str,
            weight_metric: str, show_progress: bool
            ) -> tuple[Walk, dict[str, Weights], dict[str, Any]]:
    wc = search_fl([(g.params[la.name]["weight"], plan[la.name].weight) for la in weighted],
                   weight_metric)
    wq = wchoice(lambda layer: wc)
    biases = [(g.params[la.name]["bias"], plan[la.name].bias) for la in weighted
              if "bias" in g.params[la.name] and plan[la.name].bias is not None]
    fl0 = _static_fl0(g, plan, x)
    tried: list[tuple[int, float]] = []
    best: tuple[int, Walk] | None = None
    bar = progress(total=None, desc="static fl search", quiet=not show_progress)
    fl = fl0 - act.BELOW
    while fl <= fl0 + act.MAX_ABOVE:
        fl_acc = fl + wc.fl
        bc = search_fl(biases, weight_metric, max_fl=fl_acc) if biases else None
        walk = run_walk(g, plan, x, wq, lambda name, fa, bc=bc: bc, _fixed_chooser(fl), metric)
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
              wq: Mapping[str, Weights], walk: Walk, preset: BitPreset, static: bool,
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


def _summary(g: Graph, walk: Walk) -> dict[str, Any]:
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
