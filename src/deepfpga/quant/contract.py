"""The arithmetic contract (docs/arithmetic.md), step by step: the project's oracle.

Read this file beside the document; each public function is one of its steps:

- "Float to fixed": `quantize_input` (round half even, saturate; NaN/inf refused);
- step 1, exact integer accumulators: `conv_acc`, `fc_acc` (the exact products come from the
  engine in `gemm.py`/`patches.py`, which proves its own exactness), and the per-layer
  accumulator-width proof `accumulator_bound`, `check_accumulator`;
- steps 2-4, bias shift, optional ReLU, data shift with saturation: `finish` (vectorised in
  `_finish_rows`);
- step 5, max pooling: `maxpool_int`;
- the element-wise (residual) add: `add_int` (vectorised in `_add_t`).

A whole model is run layer by layer by `executor.ReferenceExecutor`, with these same steps.
Public functions take and return numpy arrays of integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir.layers import _window_out
from deepfpga.quant.fixedpoint import (
    FixedFormat,
    align_bias,
    count_saturated,
    shift_left_saturate,
    to_fixed,
)
from deepfpga.quant.gemm import ACC_INT64_LIMIT, Method, prepare_matrix
from deepfpga.quant.intarrays import _bits_of_range, _int_tensor, _np, _pair, _range_of
from deepfpga.quant.patches import _conv_acc_t, _fc_acc_t, conv_matrix
from deepfpga.quant.qmodel import LayerFormats, QuantizedModel


# --------------------------------------------------------------------------------------------
# accumulator bound (contract step 1)
# --------------------------------------------------------------------------------------------
def _row_abs_sums(w2d: torch.Tensor) -> list[int]:
    """Σ_k |w[o, k]| per output o, as exact Python integers."""
    if w2d.shape[1] == 0:
        return [0] * int(w2d.shape[0])
    # |w| <= 2^63 would overflow; formats keep |w| <= 2^31 and rows are far below 2^31 entries.
    return [int(v) for v in w2d.abs().sum(dim=1).tolist()]


def accumulator_bound(w_int: np.ndarray, bias_int_aligned: np.ndarray | None,
                      data_bw: int) -> int:
    """Contract step 1: max over outputs o of Σ|w[o]|·2^(data_bw-1) + |bias[o]|.

    `w_int` has the output dimension first ((O, C, kh, kw) or (O, F)); `bias_int_aligned` is the
    bias already shifted to the accumulator's fractional length (or None). No partial or final
    sum of the layer, for any input in a `data_bw`-bit format, exceeds the returned value.
    """
    w = _int_tensor(w_int, "weights")
    if w.ndim < 1:
        raise ShapeError("weights need an output dimension")
    sums = _row_abs_sums(w.reshape(w.shape[0], -1))
    if bias_int_aligned is None:
        biases = [0] * len(sums)
    else:
        b = _int_tensor(bias_int_aligned, "bias").reshape(-1)
        if b.shape[0] != len(sums):
            raise ShapeError(f"bias has {b.shape[0]} entries for {len(sums)} outputs")
        biases = [abs(int(v)) for v in b.tolist()]
    scale = 1 << (int(data_bw) - 1)
    return max((s * scale + b for s, b in zip(sums, biases, strict=True)), default=0)


def check_accumulator(layer_name: str, bound: int, acc_bits: int) -> None:
    """Refuse a layer whose accumulator bound does not fit a signed `acc_bits`-bit register."""
    limit = (1 << (int(acc_bits) - 1)) - 1
    if bound > limit:
        raise InputError(
            f"layer {layer_name!r}: accumulator may reach {bound} (needs"
            f" {_bits_of_range(-bound, bound)} bits), more than the {acc_bits}-bit accumulator"
            f" holds (max {limit})"
        )


def conv_acc(x: np.ndarray, w: np.ndarray, stride: int | Sequence[int] = 1,
             padding: int | Sequence[int] = 0, *, method: Method = "auto") -> np.ndarray:
    """Contract step 1 for a convolution: exact int64 accumulators (N, O, Ho, Wo).

    `x` (N, C, H, W) and `w` (O, C, kh, kw) are integer arrays; zero padding pads with 0. The
    method ('auto' picks the fastest exact one for the actual operand ranges; 'i8', 'f64',
    'split', 'int64' force one and are refused where they would not be exact) never changes the
    result, only the speed.
    """
    xt = _int_tensor(x, "conv input", keep_dtype=True)
    wt = _int_tensor(w, "conv weights", keep_dtype=True)
    if wt.ndim != 4:
        raise ShapeError(f"conv weights: expected (O, C, kh, kw), got shape {tuple(wt.shape)}")
    if xt.ndim != 4 or xt.shape[1] != wt.shape[1]:
        raise ShapeError(
            f"conv input: expected (N, {wt.shape[1]}, H, W), got shape {tuple(xt.shape)}"
        )
    lo, hi = _range_of(xt)
    pw = prepare_matrix(conv_matrix(wt), x_bits=_bits_of_range(lo, hi),
                        x_absmax=max(-lo, hi), method=method)
    acc = _conv_acc_t(xt, pw, (int(wt.shape[2]), int(wt.shape[3])), _pair(stride),
                      _pair(padding))
    return np.ascontiguousarray(_np(acc))


def fc_acc(x: np.ndarray, w: np.ndarray, *, method: Method = "auto") -> np.ndarray:
    """Contract step 1 for a fully connected layer: exact int64 accumulators (N, O) for integer
    `x` (N, F) and `w` (O, F)."""
    xt = _int_tensor(x, "fc input", keep_dtype=True)
    wt = _int_tensor(w, "fc weights", keep_dtype=True)
    if wt.ndim != 2 or xt.ndim != 2 or xt.shape[1] != wt.shape[1]:
        raise ShapeError(
            f"fc: input {tuple(xt.shape)} and weights {tuple(wt.shape)} do not fit"
            " (expected (N, F) and (O, F))"
        )
    lo, hi = _range_of(xt)
    pw = prepare_matrix(wt, x_bits=_bits_of_range(lo, hi), x_absmax=max(-lo, hi), method=method)
    return _np(_fc_acc_t(xt, pw))


# --------------------------------------------------------------------------------------------
# steps 2-5
# --------------------------------------------------------------------------------------------
def _round_const(s: int) -> int:
    """The rounding constant 2^(s-1) of a right shift by s (0 when there is none)."""
    return 1 << (s - 1) if 0 < s < 63 else 0


def _finish_rows(acc: np.ndarray, bias_round: np.ndarray | None, s: int, out: FixedFormat,
                 relu: bool, count_negative: bool, dest: np.ndarray) -> int:
    """Contract steps 2-4 on accumulators with the output channel last, written into `dest`.

    `acc` (owned, modified) is int32 or int64 — int32 only when |acc + bias| + 2^(s-1) < 2^31 —
    or float64 holding exact integers; |acc + bias| < 2^62. `bias_round` is the bias aligned to
    the accumulator plus the rounding constant `_round_const(s)` (None: no bias). ReLU is applied
    as the lower clamp after the shift: shift and rounding are monotone and map acc <= 0 to
    values <= 0, so this equals ReLU before the shift. Returns the number of saturated values
    (`count_negative=False`: only those clipped at qmax, as after a fused ReLU).
    """
    if acc.dtype.kind == "f":
        acc = acc.astype(np.int64)
    if acc.size == 0:
        return 0
    if s < 0:
        acc = acc.astype(np.int64, copy=False)
        if bias_round is not None:
            acc += bias_round
        if relu:
            np.maximum(acc, 0, out=acc)
        y, n_over, n_under = shift_left_saturate(acc, -s, out)
        dest[...] = y
        return n_over + (n_under if count_negative and not relu else 0)
    if bias_round is not None:
        acc += bias_round.astype(acc.dtype)
    elif s > 0:
        acc += _round_const(s)
    if s >= 63:
        acc[...] = 0  # |acc| < 2^62 <= 2^(s-1): (acc + 2^(s-1)) >> s is 0
    elif s > 0:
        np.right_shift(acc, s, out=acc)  # arithmetic shift: floor((acc + 2^(s-1)) / 2^s)
    lower = 0 if relu else out.qmin
    mx = int(acc.max())
    mn = int(acc.min()) if not relu else 0  # with a ReLU the clamp below always runs
    n = int(np.count_nonzero(acc > out.qmax)) if mx > out.qmax else 0
    if count_negative and not relu and mn < out.qmin:
        n += int(np.count_nonzero(acc < out.qmin))
    if relu or mn < lower or mx > out.qmax:
        np.clip(acc, lower, out.qmax, out=acc)
    dest[...] = acc
    return n


def _bias_round(bias_aligned: np.ndarray | None, s: int) -> np.ndarray | None:
    if bias_aligned is None:
        return None
    return bias_aligned + _round_const(s) if s >= 0 else bias_aligned


def _requantize_channels(acc: torch.Tensor, bias_aligned: np.ndarray | None, fl_acc: int,
                         out: FixedFormat, relu: bool, count_negative: bool = True
                         ) -> tuple[torch.Tensor, int]:
    """Steps 2-4 on int64 accumulators with the channel on axis 1 ((N, O) or (N, O, H, W))."""
    s = fl_acc - out.fl
    rows = acc.movedim(1, -1)
    shape = rows.shape
    flat = np.array(_np(rows.reshape(-1, shape[-1])), dtype=np.int64)  # an owned copy
    dest = np.empty_like(flat)
    n = _finish_rows(flat, _bias_round(bias_aligned, s), s, out, relu, count_negative, dest)
    return torch.from_numpy(dest).reshape(shape).movedim(-1, 1), n


def finish(acc: np.ndarray, bias: np.ndarray | None, fmts: LayerFormats,
           relu: bool) -> tuple[np.ndarray, int]:
    """Contract steps 2-4: `acc` at fl_in + fl_w, plus `bias` (in fmts.bias, aligned exactly),
    optional ReLU, data shift to fmts.output (round half up) and saturation.

    `acc` has the output channel on axis 1 ((N, O) or (N, O, H, W)). Returns the integers of the
    output format (int64) and how many values saturated.
    """
    if fmts.weight is None:
        raise InputError("finish needs the layer's weight format (fl_acc = fl_in + fl_w)")
    a = _int_tensor(acc, "accumulator")
    if a.ndim < 2:
        raise ShapeError(f"accumulator needs a batch and a channel axis, got {tuple(a.shape)}")
    b = None
    if bias is not None:
        if fmts.bias is None:
            raise InputError("bias given but the layer has no bias format")
        braw = _int_tensor(bias, "bias").reshape(-1)
        if braw.shape[0] != a.shape[1]:
            raise ShapeError(f"bias has {braw.shape[0]} entries for {a.shape[1]} channels")
        b = align_bias(_np(braw), fmts.bias.fl, fmts.fl_acc)
    lo, hi = _range_of(a)
    big = max(-lo, hi) + (int(np.abs(b).max()) if b is not None and b.size else 0)
    if big >= ACC_INT64_LIMIT:
        raise InputError(f"accumulator magnitude {big} reaches 2^62, beyond any accumulator")
    y, n = _requantize_channels(a, b, fmts.fl_acc, fmts.output, relu)
    return np.ascontiguousarray(_np(y)), n


# --------------------------------------------------------------------------------------------
# element-wise add (residual connections)
# --------------------------------------------------------------------------------------------
def add_fl(fls: Sequence[int]) -> int:
    """The common fractional length of an add's operands: the finest, so aligning is exact."""
    return max(fls)


def _add_t(xs: Sequence[torch.Tensor], fls: Sequence[int], out: FixedFormat, relu: bool,
           count_negative: bool = True) -> tuple[torch.Tensor, int]:
    """Add steps 1-3 on integer tensors of one shape (batch first, channel on axis 1 or the
    only feature axis): exact aligned sum at `add_fl(fls)`, optional ReLU, data shift."""
    fl_c = add_fl(fls)
    acc: torch.Tensor | None = None
    for x, fl in zip(xs, fls, strict=True):
        k = fl_c - fl
        lo, hi = _range_of(x)
        big = max(-lo, hi)
        if big and (k > 61 or big > 1 << (61 - k)):
            raise InputError(f"add operand shifted left by {k} leaves the 2^62 range")
        a = x.to(torch.int64) << k
        acc = a if acc is None else acc.add_(a)
    assert acc is not None
    if acc.ndim < 2:
        raise ShapeError(f"add operands need a batch axis and values, got {tuple(acc.shape)}")
    return _requantize_channels(acc, None, fl_c, out, relu, count_negative)


def add_int(xs: Sequence[np.ndarray], fls: Sequence[int], out: FixedFormat,
            relu: bool = False) -> tuple[np.ndarray, int]:
    """The element-wise add: each operand `xs[i]` (integers at fractional length `fls[i]`)
    shifted left to the common `add_fl(fls)` (exact), the exact sum, optional ReLU, then the
    data shift of step 4 to `out` (round half up) with saturation. Returns the int64 integers
    of `out` and how many values saturated (after the ReLU, if any, as for a fused ReLU)."""
    if len(xs) < 2 or len(xs) != len(fls):
        raise InputError(f"add needs 2+ operands with one fractional length each, got"
                         f" {len(xs)} operands and {len(fls)} lengths")
    ts = [_int_tensor(x, f"add operand {i}") for i, x in enumerate(xs)]
    if any(t.shape != ts[0].shape for t in ts):
        raise ShapeError(f"add operands differ in shape: {[tuple(t.shape) for t in ts]}")
    y, n = _add_t(ts, [int(f) for f in fls], out, relu, count_negative=not relu)
    return np.ascontiguousarray(_np(y)), n


def _maxpool_t(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], ceil_mode: bool, pad_value: int) -> torch.Tensor:
    if x.ndim != 4:
        raise ShapeError(f"max pooling needs (N, C, H, W), got shape {tuple(x.shape)}")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    h, w = int(x.shape[2]), int(x.shape[3])
    ho, wo = _window_out(h, kh, sh, ph, ceil_mode), _window_out(w, kw, sw, pw, ceil_mode)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"max pooling window {kh}x{kw} larger than input {h}x{w}")
    # Pad explicitly (left/top by the padding, right/bottom as far as the last window reaches),
    # so the result does not depend on how a library pads: padding never wins a window because
    # every window holds at least one real value (IR: padding <= kernel/2, windows start inside).
    # The maximum is taken over the kh·kw shifted views of the (N, H, W, C) map, which works for
    # every integer type and memory layout (torch's int8 channels-last max_pool2d does not).
    pb = max(0, (ho - 1) * sh + kh - h - ph)
    pr = max(0, (wo - 1) * sw + kw - w - pw)
    xp = x.permute(0, 2, 3, 1)
    if ph or pw or pb or pr:
        xp = F.pad(xp, (0, 0, pw, pr, ph, pb), value=pad_value)
    y: torch.Tensor | None = None
    for ky in range(kh):
        for kx in range(kw):
            view = xp[:, ky:ky + (ho - 1) * sh + 1:sh, kx:kx + (wo - 1) * sw + 1:sw, :]
            y = view.clone() if y is None else torch.maximum(y, view, out=y)
    assert y is not None
    return y.permute(0, 3, 1, 2)


def maxpool_int(y: np.ndarray, kernel: int | Sequence[int], stride: int | Sequence[int],
                padding: int | Sequence[int] = 0, ceil_mode: bool = False, *,
                qmin: int | None = None) -> np.ndarray:
    """Contract step 5: window maxima of integer maps (N, C, H, W), torch's window geometry.

    Padding uses `qmin` (the format's smallest value; default the smallest int64), so it never
    wins over a real value.
    """
    t = _int_tensor(y, "max pooling input")
    pad_value = -(1 << 63) if qmin is None else int(qmin)
    out = _maxpool_t(t, _pair(kernel), _pair(stride), _pair(padding), bool(ceil_mode), pad_value)
    return np.ascontiguousarray(_np(out))

def _check_batch(x: np.ndarray | torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise ShapeError(
            f"{what}: expected a batch of shape (N, {', '.join(map(str, shape))}),"
            f" got {tuple(x.shape)}"
        )


def quantize_input(qmodel: QuantizedModel, x_float: np.ndarray) -> tuple[np.ndarray, int]:
    """Quantize a float batch (N, *input_shape) to the model's input format (round half even,
    saturate). Returns the int64 integers and how many values saturated; NaN/inf are refused."""
    x = np.asarray(x_float)
    if x.dtype.kind not in "fiu":
        raise InputError(f"input: numeric array expected, got dtype {x.dtype}")
    _check_batch(x, qmodel.graph.input_shape, "input")
    fmt = qmodel.input_format
    return to_fixed(x, fmt, "input"), count_saturated(x, fmt)


