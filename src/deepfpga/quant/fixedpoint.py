"""Fixed-point numbers and the integer primitives of the arithmetic contract.

See ../shared/docs/arithmetic.md (docs/arithmetic.md in the docs). A tensor in format (bw, fl)
holds integers q in [-2^(bw-1), 2^(bw-1)-1] standing for q·2^(-fl). Everything here is
vectorised over numpy int64 arrays and exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError

# Formats of tensors (data, weights, biases). Accumulators are wider and are not FixedFormats.
MIN_BW, MAX_BW = 2, 32
# Left shifts beyond this are clamped: any nonzero value shifted that far saturates every format
# (bw <= 32), so the saturated result stays exact.
_MAX_SHIFT = 62


@dataclass(frozen=True, order=True)
class FixedFormat:
    bw: int
    fl: int

    def __post_init__(self) -> None:
        for key in ("bw", "fl"):
            v = getattr(self, key)
            # bool is an int subclass but never a sensible width; numpy integers are accepted.
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise InputError(
                    f"fixed-point format needs integers: bw={self.bw!r} fl={self.fl!r}"
                )
            object.__setattr__(self, key, int(v))
        if not MIN_BW <= self.bw <= MAX_BW:
            raise InputError(f"bit width {self.bw} outside {MIN_BW}..{MAX_BW}")

    @property
    def qmin(self) -> int:
        return -(1 << (self.bw - 1))

    @property
    def qmax(self) -> int:
        return (1 << (self.bw - 1)) - 1

    @property
    def step(self) -> float:
        return float(np.ldexp(1.0, -self.fl))

    @property
    def max_value(self) -> float:
        return float(np.ldexp(float(self.qmax), -self.fl))

    @property
    def dtype(self) -> type[np.signedinteger]:
        """Smallest numpy integer type that holds this format's integers."""
        return np.int8 if self.bw <= 8 else np.int16 if self.bw <= 16 else np.int32

    def __str__(self) -> str:
        return f"Q{self.bw}.{self.fl}"

    def to_dict(self) -> dict[str, int]:
        return {"bw": self.bw, "fl": self.fl}


def saturate(v: np.ndarray, bw: int) -> tuple[np.ndarray, int]:
    """sat_bw(v) and how many elements were clipped."""
    lo, hi = -(1 << (bw - 1)), (1 << (bw - 1)) - 1
    v = np.asarray(v, dtype=np.int64)
    n = int(np.count_nonzero((v < lo) | (v > hi)))
    return np.clip(v, lo, hi), n


def to_fixed(x: np.ndarray, fmt: FixedFormat, what: str = "tensor") -> np.ndarray:
    """Float → fixed: sat(rint(x·2^fl)), round half to even. NaN/inf are refused."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} contains NaN or infinite values")
    # ldexp is exact (a power-of-two scale); overflow to ±inf simply saturates below.
    with np.errstate(over="ignore"):
        scaled = np.rint(np.ldexp(x, fmt.fl))
    return np.clip(scaled, fmt.qmin, fmt.qmax).astype(np.int64)


def count_saturated(x: np.ndarray, fmt: FixedFormat) -> int:
    """How many values to_fixed would clip."""
    with np.errstate(over="ignore"):
        scaled = np.rint(np.ldexp(np.asarray(x, dtype=np.float64), fmt.fl))
    return int(np.count_nonzero((scaled < fmt.qmin) | (scaled > fmt.qmax)))


def to_float(q: np.ndarray, fl: int | FixedFormat) -> np.ndarray:
    """Fixed → float: q·2^(-fl) (exact in float64 for |q| < 2^53)."""
    fl = fl.fl if isinstance(fl, FixedFormat) else fl
    return np.ldexp(np.asarray(q, dtype=np.float64), -fl)


def align_bias(b: np.ndarray, fl_b: int, fl_acc: int) -> np.ndarray:
    """Bias shift: b << (fl_acc - fl_b); the contract requires fl_b <= fl_acc."""
    if fl_b > fl_acc:
        raise InputError(f"bias fractional length {fl_b} exceeds accumulator's {fl_acc}")
    b = np.asarray(b, dtype=np.int64)
    k = fl_acc - fl_b
    # numpy silently yields 0 (or wraps) when the shifted value leaves int64: refuse instead.
    big = int(np.abs(b).max(initial=0))
    if big and (k > 62 or big > 1 << (62 - k)):
        raise InputError(
            f"aligned bias overflows: |b| = {big} shifted left by {k} exceeds 2^62"
        )
    return np.left_shift(b, k)


def shift_round(acc: np.ndarray, s: int) -> np.ndarray:
    """Data shift by s without saturation: round half up for s>0, exact left shift for s<0.

    For s < 0 the caller saturates; values are clamped first so the shift cannot overflow int64
    (any clamped value saturates anyway).
    """
    acc = np.asarray(acc, dtype=np.int64)
    if s > 0:
        # (acc + 2^(s-1)) >> s written as floor(acc / 2^s) + bit (s-1) of acc: the same value
        # (acc = q·2^s + r with 0 <= r < 2^s rounds up exactly when r >= 2^(s-1)) but it cannot
        # overflow int64 for any acc. numpy gives the sign for shifts >= 64, so s >= 64 yields 0.
        if s >= 64:
            return np.zeros_like(acc)
        return np.right_shift(acc, s) + (np.right_shift(acc, s - 1) & 1)
    if s == 0:
        return acc
    k = min(-s, _MAX_SHIFT)
    limit = 1 << max(0, 62 - k)
    return np.left_shift(np.clip(acc, -limit, limit), k)


def shift_left_saturate(acc: np.ndarray, k: int, out: FixedFormat
                        ) -> tuple[np.ndarray, int, int]:
    """sat_bw(acc << k) for k >= 0 without int64 overflow, and how many values were clipped at
    qmax and at qmin: acc << k saturates exactly when acc lies outside
    [ceil(qmin/2^k), floor(qmax/2^k)], so those are clamped before the shift."""
    acc = np.asarray(acc, dtype=np.int64)
    k = min(k, _MAX_SHIFT)
    hi = out.qmax >> k
    lo = -((-out.qmin) >> k)
    over, under = acc > hi, acc < lo
    y = np.left_shift(np.clip(acc, lo, hi), k)
    y[over] = out.qmax
    y[under] = out.qmin
    return y, int(np.count_nonzero(over)), int(np.count_nonzero(under))


def requantize(acc: np.ndarray, fl_acc: int, out: FixedFormat) -> tuple[np.ndarray, int]:
    """Contract step 4: shift from fl_acc to out.fl (round half up) and saturate to out.bw.

    Returns the integers and the number of saturated values.
    """
    s = fl_acc - out.fl
    if s < 0:
        y, n_over, n_under = shift_left_saturate(acc, -s, out)
        return y, n_over + n_under
    return saturate(shift_round(acc, s), out.bw)
