"""Fractional-length search for feature maps: score fixed-point candidates against float.

The flow hands this module, per layer, a function `quantize(fl) -> (integers, n_saturated)` that
is cheap (a requantize of an accumulator computed once, or a `to_fixed` of host-computed floats)
and the float reference of the same tensor. Metrics (error of the dequantized candidate q·2^-fl
against the reference r):
- `l1`: mean |q·2^-fl − r| (default);
- `l2`: mean (q·2^-fl − r)²;
- `kl`: KL(P‖Q) of histograms, TensorRT-style entropy calibration adapted to actual fixed-point
  outputs: P is the histogram of r on `KL_BINS` fine bins over [−max|r|, max|r|]; every fine bin
  belongs to the level its centre rounds to at the candidate fl (levels beyond the format's range
  included); Q gives each level the count of candidate values that fall in that level's bins,
  spread evenly over the level's bins where P is non-zero. Exact zeros (ReLU outputs) are a
  category of their own in both. Reference mass beyond the range meets an empty Q (floored at
  `KL_EPS`), so clipping is penalised; a coarse grid flattens the shape of P within each level.
  KL is small when the grid keeps the shape of P and little is clipped.

Candidates: fl0 is the largest fl at which the values being quantized (the exact accumulator, or
the host-computed floats) do not saturate. The search evaluates fl0 − 1, fl0, fl0 + 1, … and
stops once the best fl lies `PATIENCE` (2) steps below the last one evaluated (at most
`MAX_ABOVE` above fl0). Ties go to the smaller fl.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError
from deepfpga.quant.fixedpoint import FixedFormat, count_saturated, requantize, to_fixed
from deepfpga.quant.weights import overflow_free_fl

FM_METRICS = ("l1", "l2", "kl")
KL_BINS = 2048
# Floor of Q where P has mass: bounds the penalty per bin of clipped or displaced mass.
KL_EPS = 1e-6
PATIENCE = 2
BELOW = 1
MAX_ABOVE = 40

Scorer = Callable[[np.ndarray, FixedFormat], float]
Quantizer = Callable[[int], tuple[np.ndarray, int]]


@dataclass(frozen=True)
class FmCandidate:
    fl: int
    error: float
    saturated: int


@dataclass(frozen=True)
class FmChoice:
    fl: int
    error: float
    saturated: int
    candidates: tuple[FmCandidate, ...]
    fl_overflow_free: int | None


def check_metric(metric: str) -> str:
    if metric not in FM_METRICS:
        raise InputError(f"unknown metric {metric!r} (use one of {', '.join(FM_METRICS)})")
    return metric


def dequantize(q: np.ndarray, fl: int) -> np.ndarray:
    return np.ldexp(np.asarray(q, dtype=np.float64), -fl)


class StreamScorer:
    """A metric accumulated over batches: `partial(q, fmt, ref)` gives a vector of sums for one
    batch (add them up over the batches), `final(sums, fmt)` the error over all of them.

    `n` is the number of reference values in all batches together and `absmax` their largest
    magnitude (the KL histogram's range); both are known before scoring starts.
    """

    def __init__(self, metric: str, n: int, absmax: float, bins: int = KL_BINS):
        self.metric = check_metric(metric)
        self.n = max(int(n), 1)
        self.a = float(absmax)
        self.bins = bins
        if metric == "kl" and self.a > 0:
            self.width = 2.0 * self.a / bins
            self.centres = -self.a + self.width * (np.arange(bins) + 0.5)

    def _bin_of(self, v: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((v + self.a) / self.width), 0, self.bins - 1).astype(np.intp)

    def partial(self, q: np.ndarray, fmt: FixedFormat, ref: np.ndarray,
                consume: bool = False) -> np.ndarray:
        """`consume`: q (float64) may be overwritten, saving a temporary."""
        qf = np.asarray(q).ravel()
        if self.metric != "kl":
            if consume and qf.dtype == np.float64:
                d = np.multiply(qf, 2.0 ** -fmt.fl, out=qf)
            else:
                d = np.multiply(qf, 2.0 ** -fmt.fl, dtype=np.float64)
            d -= np.asarray(ref, dtype=np.float64).ravel()  # in place: one temporary
            (np.square if self.metric == "l2" else np.abs)(d, out=d)
            return np.array([d.sum()])
        if self.a == 0.0:  # a constant-zero reference: only exact zeros are right
            return np.array([float(np.count_nonzero(qf))])
        # Exact zeros (what a ReLU produces) are a category of their own: both formats
        # represent them exactly, and smearing that spike over a level's bins would dominate.
        r = np.asarray(ref, dtype=np.float64).ravel()
        rz, qz = r == 0, qf == 0
        p = np.bincount(self._bin_of(r[~rz]), minlength=self.bins)
        qraw = np.bincount(self._bin_of(dequantize(qf[~qz], fmt.fl)), minlength=self.bins)
        return np.concatenate([p, qraw, [np.count_nonzero(rz), np.count_nonzero(qz)]]
                              ).astype(np.float64)

    def final(self, sums: np.ndarray, fmt: FixedFormat) -> float:
        if self.metric != "kl" or self.a == 0.0:
            return float(sums[0] / self.n)
        b, n = self.bins, self.n
        p, qraw = sums[:b] / n, sums[b:2 * b] / n
        p_zero, q_zero = sums[2 * b] / n, sums[2 * b + 1] / n
        nz = p > 0
        # Bins beyond the representable range belong to levels no candidate value can take:
        # Q is empty there, so clipped reference mass is penalised.
        levels = np.floor(np.ldexp(self.centres, fmt.fl) + 0.5)
        _, ids = np.unique(levels, return_inverse=True)
        per_level = np.bincount(ids, weights=qraw)
        n_nz = np.bincount(ids, weights=nz.astype(np.float64))
        qd = np.where(nz, per_level[ids] / np.maximum(n_nz[ids], 1.0), 0.0)
        kl = float(np.sum(p[nz] * np.log(p[nz] / np.maximum(qd[nz], KL_EPS))))
        if p_zero > 0:
            kl += p_zero * math.log(p_zero / max(q_zero, KL_EPS))
        return float(kl)


def make_scorer(ref: np.ndarray, metric: str = "l1", bins: int = KL_BINS) -> Scorer:
    """A function (integers, format) -> error of q·2^-fl against `ref` under `metric` (one
    batch holding everything; see `StreamScorer`).

    The integers may come as int64 or as integer-valued float64 (see `acc_quantizer`).
    """
    r = np.asarray(ref, dtype=np.float64)
    s = StreamScorer(metric, r.size, float(np.abs(r).max()) if r.size else 0.0, bins)
    return lambda q, fmt: s.final(s.partial(q, fmt, r), fmt)


# Candidates evaluated together: the sequential search (fl0 - 1, fl0, ...) usually stops
# within them (best at fl0 + 1: fl0 - 1 ... fl0 + 3), so a streamed layer is usually scored in
# one pass over its batches.
WINDOW = 5

Evaluator = Callable[[list[int]], dict[int, tuple[float, int]]]


def search_windowed(evaluate: Evaluator, fl0: int | None, bw: int) -> FmChoice:
    """The search of the module doc, with candidates evaluated `WINDOW` at a time:
    `evaluate(fls)` returns {fl: (error, saturated)}. The same candidates are visited and
    reported as by one-at-a-time evaluation; extra ones in the last window are ignored."""
    if fl0 is None:  # nothing non-zero to represent: any fl is exact
        e, n = evaluate([bw - 1])[bw - 1]
        c = FmCandidate(bw - 1, e, n)
        return FmChoice(c.fl, c.error, c.saturated, (c,), None)
    known: dict[int, tuple[float, int]] = {}
    cands: list[FmCandidate] = []
    best: FmCandidate | None = None
    fl, top = fl0 - BELOW, fl0 + MAX_ABOVE
    while fl <= top:
        if fl not in known:
            known.update(evaluate(list(range(fl, min(fl + WINDOW, top + 1)))))
        c = FmCandidate(fl, *known[fl])
        cands.append(c)
        if best is None or c.error < best.error:
            best = c
        if fl >= fl0 + 1 and fl - best.fl >= PATIENCE:
            break
        fl += 1
    assert best is not None
    return FmChoice(best.fl, best.error, best.saturated, tuple(cands), fl0)


def search(quantize: Quantizer, score: Scorer, fl0: int | None, bw: int) -> FmChoice:
    """Evaluate candidates around fl0 (see module doc) and return the best."""

    def evaluate(fls: list[int]) -> dict[int, tuple[float, int]]:
        res = {}
        for fl in fls:
            q, n = quantize(fl)
            res[fl] = (score(q, FixedFormat(bw, fl)), n)
        return res

    return search_windowed(evaluate, fl0, bw)


def acc_overflow_free_fl(acc: np.ndarray, fl_acc: int, bw: int) -> int | None:
    """Largest output fl at which requantize(acc, fl_acc, (bw, fl)) saturates nothing."""
    acc = np.asarray(acc)
    if acc.size == 0:
        return None
    ext = np.array([int(acc.min()), int(acc.max())], dtype=np.int64)
    m = int(np.abs(ext).max())
    if m == 0:
        return None

    def fits(fl: int) -> bool:
        return requantize(ext, fl_acc, FixedFormat(bw, fl))[1] == 0

    fl = math.floor(math.log2(((1 << (bw - 1)) - 1) / m)) + fl_acc
    while not fits(fl):
        fl -= 1
    while fits(fl + 1):
        fl += 1
    return fl


def acc_quantizer(acc: np.ndarray, fl_acc: int, bw: int) -> Quantizer:
    """Candidates of an accumulator: contract step 4 (round half up, saturate).

    Fast paths, exact: with s = fl_acc − fl, int32 accumulators below 2^30 in magnitude and
    1 <= s <= 30 give (acc + 2^(s−1)) >> s in int32 (the sum stays below 2^31). Otherwise,
    while |acc| < 2^52 every acc is a float64 a, and a·2^(−s) is exact (a power-of-two
    scaling), floor(a·2^(−s) + 1/2) equals (acc + 2^(s−1)) >> s for s > 0 (the sum needs at
    most bitlen(acc) + 1 <= 53 bits) and a·2^(−s) itself for s <= 0: integer-valued float64
    arrays. Beyond 2^52 fixedpoint.requantize (int64) is used. The rounding is monotone, so
    whether a candidate saturates is read off the accumulator's extremes (no pass over it).
    """
    acc = np.asarray(acc)
    ext = np.array([acc.min(), acc.max()] if acc.size else [0, 0], dtype=np.int64)
    top = int(np.abs(ext).max())
    if top >= 1 << 52:
        return lambda fl: requantize(acc, fl_acc, FixedFormat(bw, fl))
    narrow = acc.dtype.kind == "i" and acc.dtype.itemsize <= 4 and top < 1 << 30
    floats: list[np.ndarray] = []   # acc as float64, made when a candidate first needs it

    def q(fl: int) -> tuple[np.ndarray, int]:
        fmt = FixedFormat(bw, fl)
        s = fl_acc - fl
        if narrow and 1 <= s <= 30:
            y = np.add(acc, np.int32(1 << (s - 1)), dtype=np.int32)
            np.right_shift(y, s, out=y)
            lo, hi = (ext + (1 << (s - 1))) >> s
        else:
            if not floats:
                floats.append(acc.astype(np.float64))
            # (beyond 2^1000 every non-zero value saturates anyway; 2.0**k would overflow)
            c = 2.0 ** min(-s, 1000)
            y = np.multiply(floats[0], c)
            y += 0.5
            np.floor(y, out=y)
            lo, hi = np.floor(ext.astype(np.float64) * c + 0.5)
        if hi <= fmt.qmax and lo >= fmt.qmin:
            return y, 0  # nothing saturates
        n = int(np.count_nonzero(y > fmt.qmax)) + int(np.count_nonzero(y < fmt.qmin))
        np.clip(y, fmt.qmin, fmt.qmax, out=y)
        return y, n

    return q


def overflow_free_fl_float(v: np.ndarray, bw: int) -> int | None:
    """Largest fl at which to_fixed(v, (bw, fl)) saturates nothing (None if v is all zero)."""
    return overflow_free_fl(v, bw)


def float_quantizer(v: np.ndarray, bw: int) -> Quantizer:
    """Candidates of host-side floats (network input, host-only layers): to_fixed."""
    v = np.asarray(v, dtype=np.float64)

    def q(fl: int) -> tuple[np.ndarray, int]:
        fmt = FixedFormat(bw, fl)
        return to_fixed(v, fmt), count_saturated(v, fmt)

    return q
