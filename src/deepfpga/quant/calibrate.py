"""The feature-map walk of the quantization flow, streamed over the calibration images.

The walk (see `deepfpga.quant.flow`) decides formats layer by layer, each with everything
upstream already in fixed point. Here every layer is computed batch by batch, so memory does not
grow with the calibration set:

- a layer's fixed-point and float outputs for ALL images are kept (in the format's integer type
  and float32) in memory while they fit `_STORE_BYTES`; beyond that they are spilled batch by
  batch to a temporary file and read back per batch. Every layer is computed once for every
  image (work linear in the layers), memory stays bounded, large sets cost disk space instead.
- per weighted layer, pass A computes the exact accumulators (+ bias, through the fused
  ReLU/pool chain) and the float reference per batch and keeps their range; the candidates are
  then scored `activations.WINDOW` at a time with `activations.StreamScorer` sums over the
  batches (accumulators and references are cached between the passes when they fit
  `_CACHE_BYTES`, else recomputed); no candidate re-runs the network.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepfpga.errors import InputError
from deepfpga.ir import INPUT, Conv2d, Graph, Layer, Linear, MaxPool2d, ReLU
from deepfpga.ir.float_exec import apply_layer, run_layer
from deepfpga.progress import progress
from deepfpga.quant import activations as act
from deepfpga.quant.bits import LayerBits
from deepfpga.quant.contract import add_int, maxpool_int
from deepfpga.quant.fixedpoint import FixedFormat, align_bias, to_fixed
from deepfpga.quant.gemm import Workspace, exact_gemm, prepare_matrix
from deepfpga.quant.patches import conv_matrix, conv_patches, fc_patches
from deepfpga.quant.qmodel import PASSTHROUGH_KINDS
from deepfpga.quant.weights import FlChoice

# Values of the largest per-image map in one batch (its float64 temporaries are 8x this).
_BATCH_ELEMS = 1 << 21
# All-image tensors kept between layers, and the per-layer cache between scoring passes.
_STORE_BYTES = 256 << 20
_CACHE_BYTES = 192 << 20



def calibration_bytes(graph: Graph, images: int) -> int:
    """An upper estimate of the memory calibrating `graph` on `images` images needs: the images
    themselves (float and fixed point, kept for the whole walk), the two budgets above, and one
    batch's float64 temporaries (maps beyond the budget go to a temporary file, not memory).
    Measured on fmnist-vgg: 571 MB peak RSS at 1,000 images and 655 MB at 60,000 (this
    estimate: 0.6 and 1.1 GiB)."""
    per_image = math.prod(graph.input_shape) * (4 + 8)
    return images * per_image + _STORE_BYTES + _CACHE_BYTES + 8 * 8 * _BATCH_ELEMS


Evaluate = act.Evaluator
Chooser = Callable[[str, Evaluate, "int | None", int], act.FmChoice]
BiasFl = Callable[[str, int], FlChoice]


@dataclass(frozen=True)
class Weights:
    """A weighted layer's quantized weights and float bias (the bias fl needs fl_in first)."""

    w: np.ndarray
    fmt: FixedFormat
    choice: FlChoice
    bias: np.ndarray | None
    bias_bw: int | None


@dataclass
class Walk:
    formats: dict[str, FixedFormat] = field(default_factory=dict)
    bias: dict[str, tuple[np.ndarray, FixedFormat, FlChoice]] = field(default_factory=dict)
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    float_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    total_error: float = 0.0


def fused_chain(g: Graph, layer: Layer) -> list[Layer]:
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
        if (layer.kernel, layer.stride, layer.padding) == ((2, 2), (2, 2), (0, 0)) \
                and v.ndim == 4 and not (layer.ceil_mode and (v.shape[2] | v.shape[3]) & 1):
            # the common 2×2 pool: three maxima of strided views (torch's integer pooling is
            # not vectorised); floor mode drops an odd last row / column, as torch does
            h, w = v.shape[2] // 2 * 2, v.shape[3] // 2 * 2
            return np.maximum(np.maximum(v[:, :, 0:h:2, 0:w:2], v[:, :, 0:h:2, 1:w:2]),
                              np.maximum(v[:, :, 1:h:2, 0:w:2], v[:, :, 1:h:2, 1:w:2]))
        # torch's integer max pooling on contiguous NCHW (int32 when the values fit); its
        # padding never wins, as every window holds a real value (see contract._maxpool_t)
        t = F.max_pool2d(torch.from_numpy(np.ascontiguousarray(v)), layer.kernel,
                         layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
        return t.numpy()
    if layer.kind == "flatten":
        return v.reshape(v.shape[0], -1)
    return v  # dropout


def passthrough_data(layer: Layer, y: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    """The real pass-through on fixed-point data, as the reference executor computes it."""
    if isinstance(layer, MaxPool2d):
        return maxpool_int(y, layer.kernel, layer.stride, layer.padding, layer.ceil_mode,
                           qmin=fmt.qmin)
    return _passthrough_any_int(layer, y)


def host_float(layer: Layer, xs: list[np.ndarray], fls: list[int]) -> np.ndarray:
    """A host-only layer on dequantized inputs, in float64 as the reference executor runs it."""
    vals = [torch.from_numpy(np.ldexp(np.asarray(x, dtype=np.float64), -fl))
            for x, fl in zip(xs, fls, strict=True)]
    with torch.inference_mode():
        return apply_layer(layer, {}, vals).numpy()


def _compact(q: np.ndarray, fmt: FixedFormat) -> np.ndarray:
    return np.asarray(q).astype(fmt.dtype, copy=False)


class _Acc:
    """Exact accumulators of one layer (weights prepared once for every batch), bias added."""

    def __init__(self, layer: Conv2d | Linear, w: np.ndarray, fin: FixedFormat,
                 bias_aligned: np.ndarray | None, ws: Workspace):
        self.layer = layer
        wt = torch.from_numpy(np.ascontiguousarray(w))
        self.pw = prepare_matrix(conv_matrix(wt) if isinstance(layer, Conv2d) else wt,
                                 x_bits=fin.bw)
        self.bias = bias_aligned
        self.ws = ws  # conv scratch memory, shared by every layer and batch of the walk

    def __call__(self, xq: np.ndarray, with_bias: bool = True) -> np.ndarray:
        # xq is in the input format (made by finish / to_fixed): no range check needed.
        xt = torch.from_numpy(np.ascontiguousarray(xq))
        what = f"input of layer {self.layer.name!r}"
        with torch.inference_mode():
            if isinstance(self.layer, Conv2d):
                patches, (n, ho, wo) = conv_patches(xt, self.pw, self.layer.kernel,
                                                     self.layer.stride, self.layer.padding,
                                                     False, what, self.ws)
                acc = exact_gemm(patches, self.pw, self.ws).numpy().reshape(n, ho, wo, -1)
                acc = acc.transpose(0, 3, 1, 2).copy()  # always a copy: ws is reused
            else:
                acc = exact_gemm(fc_patches(xt, self.pw, False, what), self.pw).numpy()
        if with_bias and self.bias is not None:
            acc += self.bias.reshape((1, -1) + (1,) * (acc.ndim - 2))
        return acc


class _Spilled:
    """A tensor's (integers, float32 reference) batches in a temporary file (deleted when
    closed): appended once in batch order, read back per batch (`os.pread`: no file position
    shared between readers, and the page cache does not count in the process's memory)."""

    def __init__(self, qdtype: np.dtype, shape: tuple[int, ...]):
        # kept open for the walk, closed (and so deleted) by `close`
        self.file = tempfile.TemporaryFile(prefix="deepfpga-calib-")  # noqa: SIM115
        self.qdtype = np.dtype(qdtype)
        self.shape = shape              # per image
        self.parts: list[tuple[int, int]] = []  # per batch: (file offset, images)
        self.size = 0

    def append(self, q: np.ndarray, f: np.ndarray) -> None:
        qb = np.ascontiguousarray(q, dtype=self.qdtype)
        fb = np.ascontiguousarray(f, dtype=np.float32)
        self.parts.append((self.size, int(qb.shape[0])))
        for a in (qb, fb):
            self.file.write(memoryview(a).cast("B"))
            self.size += a.nbytes
        self.file.flush()   # `get` reads the file itself, not its buffer

    def get(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        off, n = self.parts[b]
        per = math.prod(self.shape)
        nq = n * per * self.qdtype.itemsize
        raw = os.pread(self.file.fileno(), nq + 4 * n * per, off)
        q = np.frombuffer(raw, dtype=self.qdtype, count=n * per).reshape(n, *self.shape)
        f = np.frombuffer(raw, dtype=np.float32, offset=nq).reshape(n, *self.shape)
        return q, f

    def close(self) -> None:
        self.file.close()


class _Data:
    """The walk's tensors for all images: kept in memory, or spilled to a temporary file."""

    def __init__(self, g: Graph, x: np.ndarray, qx: np.ndarray, batches: list[tuple[int, int]]):
        self.g = g
        self.batches = batches
        self.n = int(x.shape[0])
        self.kept: dict[str, tuple[np.ndarray, np.ndarray]] = {INPUT: (qx, x)}
        self.spilled: dict[str, _Spilled] = {}

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes of all-image tensors stay within `_STORE_BYTES`."""
        return sum(q.nbytes + f.nbytes for q, f in self.kept.values()) + size <= _STORE_BYTES

    def get(self, name: str, b: int) -> tuple[np.ndarray, np.ndarray]:
        if name in self.kept:
            q, f = self.kept[name]
            a, e = self.batches[b]
            return q[a:e], f[a:e]
        return self.spilled[name].get(b)

    def put(self, name: str, fmt: FixedFormat, shape: tuple[int, ...],
            make: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> None:
        """Record layer output `name` (per image `shape`), `make(b)` computing batch b: kept
        for all images if it fits, else spilled."""
        size = self.n * math.prod(shape) * (np.dtype(fmt.dtype).itemsize + 4)
        if self.fits(size):
            qs, fs = [], []
            for b in range(len(self.batches)):
                q, f = make(b)
                qs.append(_compact(q, fmt))
                fs.append(np.asarray(f, dtype=np.float32))
            self.kept[name] = (np.concatenate(qs), np.concatenate(fs))
            return
        sp = self.spill(name, fmt, shape)
        for b in range(len(self.batches)):
            sp.append(*make(b))

    def spill(self, name: str, fmt: FixedFormat, shape: tuple[int, ...]) -> _Spilled:
        """An empty spilled tensor `name`, to be appended batch by batch."""
        sp = self.spilled[name] = _Spilled(np.dtype(fmt.dtype), shape)
        return sp

    def free(self, names: set[str]) -> None:
        """Drop tensors no later layer reads."""
        for s in names:
            if s != INPUT:
                self.kept.pop(s, None)
                sp = self.spilled.pop(s, None)
                if sp is not None:
                    sp.close()

    def close(self) -> None:
        self.free(set(self.spilled))


def _batches(g: Graph, n: int) -> list[tuple[int, int]]:
    shapes = g.shapes()
    per_image = max([int(np.prod(g.input_shape))] + [int(np.prod(s)) for s in shapes.values()])
    step = max(1, _BATCH_ELEMS // max(1, per_image))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _evaluator(batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
               candidates: Callable[[np.ndarray], act.Quantizer], scorer: act.StreamScorer,
               bw: int) -> Evaluate:
    """Scores candidate fls over all batches: `batches()` yields (values to quantize, float
    reference) per batch, `candidates(values)(fl)` gives (integers, saturated)."""

    def evaluate(fls: list[int]) -> dict[int, tuple[float, int]]:
        sums: dict[int, np.ndarray] = {}
        sat = dict.fromkeys(fls, 0)
        for v, r in batches():
            quantize = candidates(v)  # one conversion per batch for all candidates
            r64 = np.asarray(r, dtype=np.float64)
            for fl in fls:
                fmt = FixedFormat(bw, fl)
                q, n = quantize(fl)
                part = scorer.partial(q, fmt, r64, consume=q is not v)
                sums[fl] = part if fl not in sums else sums[fl] + part
                sat[fl] += n
        return {fl: (scorer.final(sums[fl], FixedFormat(bw, fl)), sat[fl]) for fl in fls}

    return evaluate


def _acc_candidates(fl_acc: int, bw: int) -> Callable[[np.ndarray], act.Quantizer]:
    return lambda v: act.acc_quantizer(v, fl_acc, bw)


def _float_candidates(bw: int) -> Callable[[np.ndarray], act.Quantizer]:
    return lambda v: act.float_quantizer(v, bw)


def _cached(n_bytes: int, compute: Callable[[int], Any], n_batches: int
            ) -> Callable[[], Iterator[Any]]:
    """Batches of `compute(b)`, kept after the first pass when they fit `_CACHE_BYTES`."""
    cache: list[Any] = []
    keep = n_bytes <= _CACHE_BYTES

    def it() -> Iterator[Any]:
        if cache:
            yield from cache
            return
        for b in range(n_batches):
            item = compute(b)
            if keep:
                cache.append(item)
            yield item

    return it


def walk(g: Graph, plan: Mapping[str, LayerBits], x: np.ndarray, wq: Mapping[str, Weights],
         bias_fl: BiasFl, choose: Chooser, metric: str, show_progress: bool = False) -> Walk:
    """One fixed-point pass over the calibration images `x`, the format of every layer output
    decided by `choose` (greedy, in topological order)."""
    out = Walk()
    n = int(x.shape[0])
    batches = _batches(g, n)
    nb = len(batches)

    # The network input: to_fixed candidates against the float input itself.
    bw_in = plan[INPUT].data
    absmax = float(np.abs(x).max())
    scorer = act.StreamScorer(metric, x.size, absmax)
    xs = lambda: ((x[a:e], x[a:e]) for a, e in batches)  # noqa: E731
    c = choose(INPUT, _evaluator(xs, _float_candidates(bw_in), scorer, bw_in),
               act.overflow_free_fl_float(np.array([x.min(), x.max()]), bw_in), bw_in)
    fmt_in = FixedFormat(bw_in, c.fl)
    out.formats[INPUT] = fmt_in
    qx = np.empty(x.shape, dtype=fmt_in.dtype)
    for a, e in batches:  # batch by batch: to_fixed's float64 temporaries stay small
        qx[a:e] = to_fixed(x[a:e], fmt_in, "calibration input")
    data = _Data(g, x, qx, batches)
    ws = Workspace()
    out.report[INPUT] = {"kind": "input", "output": _choice_dict(c, fmt_in)}
    out.total_error += c.error * (x.size if metric != "kl" else 1)

    try:
        _walk_layers(g, plan, wq, bias_fl, choose, metric, show_progress, out, data, ws)
        for name in g.outputs:
            qs, fs = [], []
            for b in range(nb):
                q, f = data.get(name, b)
                qs.append(np.asarray(q, dtype=np.int64))
                fs.append(f)
            out.outputs[name] = np.concatenate(qs)
            out.float_outputs[name] = np.concatenate(fs)
    finally:
        data.close()
    return out


def _walk_layers(g: Graph, plan: Mapping[str, LayerBits], wq: Mapping[str, Weights],
                 bias_fl: BiasFl, choose: Chooser, metric: str, show_progress: bool, out: Walk,
                 data: _Data, ws: Workspace) -> None:
    """The walk's layers after the input, in topological order (each once over all images)."""
    shapes = {INPUT: g.input_shape, **g.shapes()}
    per_image = {k: int(np.prod(s)) for k, s in shapes.items()}
    last_use: dict[str, int] = {}
    for i, layer in enumerate(g.layers):
        for s in layer.inputs:
            last_use[s] = i
    done: set[str] = set()
    layers = progress(g.layers, total=len(g.layers), desc="calibrating",
                      quiet=not show_progress)
    for i, layer in enumerate(layers):
        if layer.name not in done:
            bits = plan[layer.name]
            if layer.kind in PASSTHROUGH_KINDS:
                fmt = out.formats[layer.inputs[0]]
                out.formats[layer.name] = fmt
                data.put(layer.name, fmt, shapes[layer.name],
                         _make_passthrough(data, g, layer, fmt))
                out.report[layer.name] = {"kind": layer.kind, "inherits": layer.inputs[0]}
            elif isinstance(layer, Conv2d | Linear):
                _weighted(g, layer, bits, wq[layer.name], bias_fl, choose, metric, out, data,
                          per_image, done, ws)
            elif layer.host_only:
                _host(g, layer, bits, choose, metric, out, data, per_image)
            else:
                raise InputError(f"layer {layer.name!r}: kind {layer.kind!r} cannot be"
                                 " quantized (batch norm must be folded into a conv first)")
        data.free({s for s in layer.inputs if last_use.get(s) == i and s not in g.outputs})


def _make_passthrough(data: _Data, g: Graph, layer: Layer, fmt: FixedFormat
                      ) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    def make(b: int) -> tuple[np.ndarray, np.ndarray]:
        q, f = data.get(layer.inputs[0], b)
        return passthrough_data(layer, q, fmt), run_layer(g, layer, [f])
    return make


def _host(g: Graph, layer: Layer, bits: LayerBits, choose: Chooser, metric: str, out: Walk,
          data: _Data, per_image: Mapping[str, int]) -> None:
    fls = [out.formats[s].fl for s in layer.inputs]

    def compute(b: int) -> tuple[np.ndarray, np.ndarray]:
        ins = [data.get(s, b) for s in layer.inputs]
        v = host_float(layer, [q for q, _ in ins], fls)
        return v, run_layer(g, layer, [f for _, f in ins])

    nb = len(data.batches)
    size = data.n * per_image[layer.name] * 12
    pairs = _cached(size, compute, nb)
    lo = hi = 0.0
    absmax = 0.0
    for v, r in pairs():
        if v.size:
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
            absmax = max(absmax, float(np.abs(r).max()))
    scorer = act.StreamScorer(metric, data.n * per_image[layer.name], absmax)
    c = choose(layer.name, _evaluator(pairs, _float_candidates(bits.data), scorer, bits.data),
               act.overflow_free_fl_float(np.array([lo, hi]), bits.data), bits.data)
    fmt = FixedFormat(bits.data, c.fl)
    out.formats[layer.name] = fmt

    def make(b: int) -> tuple[np.ndarray, np.ndarray]:
        ins = [data.get(s, b) for s in layer.inputs]
        if layer.host_integer:      # the add: the contract's integer rule, as the executor
            q_out = add_int([q for q, _ in ins], fls, fmt)[0]
        else:
            q_out = to_fixed(host_float(layer, [q for q, _ in ins], fls), fmt,
                             f"output of {layer.name}")
        return q_out, run_layer(g, layer, [f for _, f in ins])

    data.put(layer.name, fmt, tuple(data.g.shapes()[layer.name]), make)
    out.report[layer.name] = {"kind": layer.kind, "output": _choice_dict(c, fmt)}
    out.total_error += c.error * (data.n * per_image[layer.name] if metric != "kl" else 1)


def _weighted(g: Graph, layer: Conv2d | Linear, bits: LayerBits, w: Weights, bias_fl: BiasFl,
              choose: Chooser, metric: str, out: Walk, data: _Data,
              per_image: Mapping[str, int], done: set[str], ws: Workspace) -> None:
    src = layer.inputs[0]
    fmt_in = out.formats[src]
    fl_acc = fmt_in.fl + w.fmt.fl
    b_int = bfmt = None
    b_al = None
    if w.bias is not None and w.bias_bw is not None:
        bc = bias_fl(layer.name, fl_acc)
        bfmt = FixedFormat(w.bias_bw, bc.fl)
        b_int = to_fixed(w.bias, bfmt, f"bias of {layer.name}")
        out.bias[layer.name] = (b_int, bfmt, bc)
        b_al = align_bias(b_int, bfmt.fl, fl_acc)
    acc_of = _Acc(layer, w.w, fmt_in, b_al, ws)
    chain = fused_chain(g, layer)
    last = chain[-1].name if chain else layer.name

    shape_last = (data.n, *g.shapes()[last])
    # Kept for all images? Then its float reference is filled in by pass A, straight into the
    # kept array (no second copy), and the accumulators are cached if they fit.
    keep = data.fits(data.n * per_image[last] * (np.dtype(FixedFormat(bits.data, 0).dtype)
                                                 .itemsize + 4))
    f_all = np.empty(shape_last, dtype=np.float32) if keep else None
    acc_cache: list[np.ndarray] | None = (
        [] if data.n * per_image[layer.name] * 4 <= _CACHE_BYTES else None)

    def reference(f: np.ndarray) -> np.ndarray:
        ref = run_layer(g, layer, [f])
        for c_layer in chain:
            ref = run_layer(g, c_layer, [ref])
        return ref

    filled = [False] * len(data.batches)
    # A ReLU right after the layer is fused as on the accelerator (contract step 3), so values
    # it clears are not counted as saturated; the ReLU layer itself then changes nothing.
    relu_first = bool(chain) and isinstance(chain[0], ReLU)

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(accumulator + bias, float reference at the chain's end) per batch."""
        for b, (a, e) in enumerate(data.batches):
            have_acc = acc_cache is not None and b < len(acc_cache)
            if have_acc and filled[b]:
                assert acc_cache is not None and f_all is not None
                yield acc_cache[b], f_all[a:e]
                continue
            q, f = data.get(src, b)
            if have_acc:
                assert acc_cache is not None
                acc = acc_cache[b]
            else:
                acc = acc_of(q)
                if acc.size and acc.min() >= -(1 << 31) and acc.max() < (1 << 31):
                    acc = acc.astype(np.int32)  # exact; half the memory
                if relu_first:
                    # a fused ReLU first: every later use (scoring, finish with relu) sees
                    # max(acc, 0) anyway, so apply it once, in place
                    np.maximum(acc, 0, out=acc)
                if acc_cache is not None:
                    acc_cache.append(acc)
            if f_all is not None and filled[b]:
                ref = f_all[a:e]
            else:
                ref = reference(f)
                if f_all is not None:
                    f_all[a:e] = ref
                    filled[b] = True
            yield acc, ref

    rest = chain[1:] if relu_first else chain
    # the accumulators at the chain's end, cached when smaller than them (after a pool) and
    # within the budget
    end_cache: list[np.ndarray] | None = (
        [] if rest and acc_cache is not None
        and data.n * (per_image[layer.name] + per_image[last]) * 4 <= _CACHE_BYTES else None)

    def scored() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for b, (acc, r) in enumerate(pairs()):
            if end_cache is not None and b < len(end_cache):
                yield end_cache[b], r
                continue
            v = acc
            for c_layer in rest:
                v = _passthrough_any_int(c_layer, v)
            if end_cache is not None:
                end_cache.append(v)
            yield v, r

    lo = hi = 0
    absmax = 0.0
    for v, r in scored():
        if v.size:
            lo, hi = min(lo, int(v.min())), max(hi, int(v.max()))
            absmax = max(absmax, float(np.abs(r).max()))
    scorer = act.StreamScorer(metric, data.n * per_image[last], absmax)
    c = choose(layer.name, _evaluator(scored, _acc_candidates(fl_acc, bits.data), scorer,
                                      bits.data),
               act.acc_overflow_free_fl(np.array([lo, hi], dtype=np.int64), fl_acc, bits.data),
               bits.data)
    fmt = FixedFormat(bits.data, c.fl)

    def output(acc: np.ndarray) -> tuple[np.ndarray, int]:
        """The chain end's integers and the layer's saturations, from accumulators that hold
        the aligned bias and (with a fused ReLU) max(acc, 0) already: the data shift with
        saturation is the chosen candidate's (`acc_quantizer`, proved equal to contract step
        4; `finish` with the ReLU fused counts exactly these saturations), then the pooling
        (monotone, contract step 5) on its exact float64 integers."""
        y, k = act.acc_quantizer(acc, fl_acc, fmt.bw)(fmt.fl)
        for c_layer in rest:
            y = _passthrough_any_int(c_layer, y)
        return np.asarray(y).astype(fmt.dtype), k

    out.formats[layer.name] = fmt
    nsat = 0
    q_all = np.empty(shape_last, dtype=fmt.dtype) if keep else None
    spilled = None if keep else data.spill(last, fmt, shape_last[1:])
    for (a, e), (acc, ref) in zip(data.batches, pairs(), strict=True):
        y, k = output(acc)
        nsat += k
        if q_all is not None:
            q_all[a:e] = y
        else:
            assert spilled is not None
            spilled.append(y, ref)
    if q_all is not None and f_all is not None:
        data.kept[last] = (q_all, f_all)

    rep = _choice_dict(c, fmt)
    rep["measured_at"] = last
    rep["saturated_layer"] = int(nsat)
    out.report[layer.name] = {"kind": layer.kind, "output": rep}
    out.total_error += c.error * (data.n * per_image[last] if metric != "kl" else 1)
    prev = layer.name
    for c_layer in chain:
        out.formats[c_layer.name] = fmt
        out.report[c_layer.name] = {"kind": c_layer.kind, "inherits": prev}
        done.add(c_layer.name)
        prev = c_layer.name


def _choice_dict(c: act.FmChoice, fmt: FixedFormat) -> dict[str, Any]:
    return {
        "bw": fmt.bw, "fl": fmt.fl, "error": c.error, "saturated": c.saturated,
        "fl_overflow_free": c.fl_overflow_free,
        "candidates": [[k.fl, k.error, k.saturated] for k in c.candidates],
    }
