"""Fractional-length search for float tensors quantized on the host (weights, biases).

For a bit width bw, pick the fl minimising Σ|x − Q(x)| (or Σ(x − Q(x))² with `metric="l2"`),
where Q(x) = sat_bw(rint(x·2^fl))·2^(−fl) is the contract's float-to-fixed conversion.

Neighbourhood searched, and why it finds the exact optimum over all integers fl:
- fl0 is the largest fl at which no value saturates ("just avoids overflow of max|x|").
- Below fl0 nothing can be better: for fl < fl0 nothing saturates either, and the grid
  2^(−fl)·Z is a subset of 2^(−fl0)·Z, so rounding to the finer grid is, element by element, at
  least as close. The search therefore never goes below fl0.
- Above fl0 the grid is finer but the largest values clip. The error at fl is at least the
  clipping error alone, Σ over clipped values of their distance to the largest representable
  value, and that bound only grows with fl. The search walks up fl0, fl0+1, … and stops at the
  first fl whose clipping bound reaches the best error found: no higher fl can win. In practice
  this visits 2–4 candidates.
- `max_fl` caps the search (bias: fl_b ≤ fl_in + fl_w). If fl0 > max_fl the answer is max_fl,
  by the argument above.
Ties go to the smallest fl (fewest clipped values). An all-zero tensor has no error at any fl;
it gets min(bw − 1, max_fl).

`search_fl` takes several tensors (each with its own width) at once and minimises their summed
error with one fl: that is the static-precision baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError
from deepfpga.quant.fixedpoint import FixedFormat, to_fixed

WEIGHT_METRICS = ("l1", "l2")
# Safety cap on the upward walk; the clipping bound stops it long before in practice.
_MAX_STEPS = 80


@dataclass(frozen=True)
class FlChoice:
    """The chosen fl, its summed error, and every candidate evaluated as (fl, error)."""

    fl: int
    error: float
    candidates: tuple[tuple[int, float], ...]
    fl_overflow_free: int | None


def _check_metric(metric: str) -> str:
    if metric not in WEIGHT_METRICS:
        raise InputError(f"unknown weight metric {metric!r} (use {' or '.join(WEIGHT_METRICS)})")
    return metric


def overflow_free_fl(x: np.ndarray, bw: int) -> int | None:
    """Largest fl at which to_fixed(x, (bw, fl)) clips nothing; None for an all-zero tensor."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return None
    hi, lo = float(x.max()), float(x.min())
    m = max(abs(hi), abs(lo))
    if m == 0.0:
        return None
    fmt_q = FixedFormat(bw, 0)

    def fits(fl: int) -> bool:
        return (np.rint(np.ldexp(hi, fl)) <= fmt_q.qmax
                and np.rint(np.ldexp(lo, fl)) >= fmt_q.qmin)

    fl = math.floor(math.log2(fmt_q.qmax / m))
    while not fits(fl):
        fl -= 1
    while fits(fl + 1):
        fl += 1
    return fl


def quant_error(x: np.ndarray, fmt: FixedFormat, metric: str = "l1") -> float:
    """Σ|x − Q(x)| (l1) or Σ(x − Q(x))² (l2), in float64."""
    x = np.asarray(x, dtype=np.float64)
    d = np.ldexp(to_fixed(x, fmt).astype(np.float64), -fmt.fl) - x
    return float(np.abs(d).sum() if metric == "l1" else np.square(d).sum())


def _clip_bound(x: np.ndarray, fmt: FixedFormat, metric: str) -> float:
    """Lower bound of quant_error: the error of the clipped values alone."""
    hi = np.ldexp(float(fmt.qmax), -fmt.fl)
    lo = np.ldexp(float(fmt.qmin), -fmt.fl)
    over = np.maximum(x - hi, 0.0) + np.maximum(lo - x, 0.0)
    return float(over.sum() if metric == "l1" else np.square(over).sum())


def search_fl(tensors: Sequence[tuple[np.ndarray, int]], metric: str = "l1",
              max_fl: int | None = None) -> FlChoice:
    """One fl for all `(values, bw)` pairs minimising their summed error (see module doc)."""
    _check_metric(metric)
    if not tensors:
        raise InputError("search_fl needs at least one tensor")
    arrays = [(np.asarray(x, dtype=np.float64).ravel(), int(bw)) for x, bw in tensors]
    for x, _ in arrays:
        if not np.all(np.isfinite(x)):
            raise InputError("cannot quantize a tensor with NaN or infinite values")
    fl0s = [f for f in (overflow_free_fl(x, bw) for x, bw in arrays) if f is not None]
    if not fl0s:  # all zero: every fl is exact
        fl = max(bw for _, bw in arrays) - 1
        fl = fl if max_fl is None else min(fl, max_fl)
        return FlChoice(fl, 0.0, ((fl, 0.0),), None)
    fl0 = min(fl0s)
    start = fl0 if max_fl is None else min(fl0, max_fl)

    def total(fl: int) -> float:
        return sum(quant_error(x, FixedFormat(bw, fl), metric) for x, bw in arrays)

    def bound(fl: int) -> float:
        return sum(_clip_bound(x, FixedFormat(bw, fl), metric) for x, bw in arrays)

    best_fl, best = start, total(start)
    cands = [(start, best)]
    fl = start
    for _ in range(_MAX_STEPS):
        fl += 1
        if (max_fl is not None and fl > max_fl) or bound(fl) >= best:
            break
        e = total(fl)
        cands.append((fl, e))
        if e < best:
            best_fl, best = fl, e
    return FlChoice(best_fl, best, tuple(cands), fl0)


def choose_fl(x: np.ndarray, bw: int, metric: str = "l1", max_fl: int | None = None) -> FlChoice:
    """Per-tensor (dynamic) fl of one weight or bias tensor."""
    return search_fl([(x, bw)], metric, max_fl)
