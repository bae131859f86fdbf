"""One quantizer of a quantized ONNX file, and how it maps onto a dynamic fixed-point format.

A quantizer q = clip(round(x / scale) + zero_point, lo, hi) is dynamic fixed point exactly when
scale = 2^-fl, zero_point = 0 and [lo, hi] is a signed bw-bit range (unsigned and narrow ranges
are subsets of a signed range: exact where the values are known to be non-negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError
from deepfpga.quant.fixedpoint import FixedFormat

# Data and weights: what the accelerator and the contract admit; biases may be wider.
MAX_DATA_BITS = 16
MAX_CONST_BITS = 32

# ONNX TensorProto element types of QuantizeLinear/DequantizeLinear integers: (bits, signed).
ONNX_INT_TYPES: dict[int, tuple[int, bool]] = {
    2: (8, False),   # UINT8
    3: (8, True),    # INT8
    4: (16, False),  # UINT16
    5: (16, True),   # INT16
    6: (32, True),   # INT32
    21: (4, False),  # UINT4
    22: (4, True),   # INT4
}
NUMPY_INT_TYPES: dict[str, tuple[int, bool]] = {
    "uint8": (8, False), "int8": (8, True), "uint16": (16, False), "int16": (16, True),
    "int32": (32, True),
}

@dataclass(frozen=True)
class QSpec:
    """A power-of-two quantizer: integers in [lo, hi] standing for q·2^-fl."""

    fl: int
    bits: int
    signed: bool
    narrow: bool
    rounding: str
    node: str  # the ONNX node, for messages
    requantized: str = ""  # non-empty: what --requantize changed

    @property
    def lo(self) -> int:
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def hi(self) -> int:
        if not self.signed:
            return (1 << self.bits) - (2 if self.narrow else 1)
        return (1 << (self.bits - 1)) - 1

    @property
    def fmt(self) -> FixedFormat:
        """The smallest signed format holding [lo, hi] (unsigned b bits → b+1 signed bits)."""
        return FixedFormat(self.bits if self.signed else self.bits + 1, self.fl)

    @property
    def full_range(self) -> bool:
        """True when [lo, hi] is exactly the signed range of `fmt` (saturation agrees)."""
        return self.lo == self.fmt.qmin and self.hi == self.fmt.qmax

    def with_range(self, lo: int, hi: int, node: str) -> QSpec:
        """The spec after a Clip of its integers to [lo, hi] (a narrower bit width)."""
        for bits in range(2, self.bits + 1):
            for signed, narrow in ((True, False), (True, True), (False, False), (False, True)):
                cand = QSpec(self.fl, bits, signed, narrow, self.rounding, node, self.requantized)
                if (cand.lo, cand.hi) == (max(lo, self.lo), min(hi, self.hi)):
                    return cand
        raise InputError(f"node {node!r}: Clip of integers to [{lo}, {hi}] is not the range of"
                         " a bit width")

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """The file's quantizer on a constant (weights, biases): exact integers."""
        with np.errstate(over="ignore"):
            v = np.ldexp(np.asarray(x, dtype=np.float64), self.fl)
        if not np.all(np.isfinite(v)):
            raise InputError(f"node {self.node!r}: constant holds NaN or infinite values")
        r = ROUNDING[self.rounding](v)
        return np.clip(r, self.lo, self.hi).astype(np.int64)


def _half_up(v: np.ndarray) -> np.ndarray:  # QONNX HALF_UP: ties away from zero
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _half_down(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.ceil(np.abs(v) - 0.5)


# The file's rounding modes (QONNX names; QuantizeLinear rounds half to even = ROUND).
ROUNDING = {"ROUND": np.rint, "HALF_UP": _half_up, "HALF_DOWN": _half_down, "CEIL": np.ceil,
          "FLOOR": np.floor, "DOWN": np.trunc,
          "UP": lambda v: np.sign(v) * np.ceil(np.abs(v))}


def scalar(a: np.ndarray, what: str, node: str) -> float:
    """A per-tensor parameter: a scalar, or an array whose elements are all equal."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise InputError(f"node {node!r}: empty {what}")
    if a.size > 1 and not np.all(a == a[0]):
        raise InputError(
            f"node {node!r}: per-channel {what} ({a.size} values, e.g. {a[0]:g} and"
            f" {a[np.argmax(a != a[0])]:g}); dynamic fixed point has one format per tensor"
        )
    return float(a[0])


def fl_of_scale(scale: float, node: str, requantize: bool) -> tuple[int, str]:
    """fl with scale = 2^-fl, and a note when --requantize rounded the scale to a power of two."""
    if not math.isfinite(scale) or scale <= 0:
        raise InputError(f"node {node!r}: scale {scale!r} is not a positive finite number")
    m, e = math.frexp(scale)  # scale = m·2^e, 0.5 <= m < 1
    if m == 0.5:
        return 1 - e, ""
    if not requantize:
        raise InputError(
            f"node {node!r}: scale {scale:.9g} is not a power of two; dynamic fixed point"
            " cannot represent it exactly (--requantize converts it to the nearest power of two)"
        )
    fl = -round(math.log2(scale))
    return fl, f"scale {scale:.9g} -> 2^{-fl}"


def check_zero_point(zp: np.ndarray | None, node: str) -> None:
    if zp is None:
        return
    z = np.asarray(zp, dtype=np.float64).reshape(-1)
    if np.any(z != 0):
        raise InputError(
            f"node {node!r}: zero point {z[np.argmax(z != 0)]:g} is not 0; dynamic fixed point"
            " is symmetric (an asymmetric quantizer cannot be represented)"
        )


def check_bits(bits: float, node: str, limit: int) -> int:
    if not math.isfinite(bits) or bits != int(bits) or not 2 <= bits <= limit:
        raise InputError(f"node {node!r}: bit width {bits:g} is not an integer in 2..{limit}")
    return int(bits)


def check_rounding(mode: str, node: str) -> str:
    m = mode.upper()
    if m not in ROUNDING:
        raise InputError(f"node {node!r}: unknown rounding_mode {mode!r}")
    return m
