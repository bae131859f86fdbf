"""Every fixed-point primitive against plain Python integers (arbitrary precision)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfpga.errors import InputError
from deepfpga.quant.fixedpoint import (
    FixedFormat,
    align_bias,
    count_saturated,
    requantize,
    saturate,
    shift_round,
    to_fixed,
    to_float,
)

bws = st.integers(2, 32)
fls = st.integers(-12, 40)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def py_sat(v: int, bw: int) -> int:
    return max(-(1 << (bw - 1)), min((1 << (bw - 1)) - 1, v))


def py_to_fixed(x: float, bw: int, fl: int) -> int:
    # Fraction is exact; round() of a Fraction rounds half to even.
    return py_sat(round(Fraction(x) * Fraction(2) ** fl), bw)


def py_shift(acc: int, s: int) -> int:
    if s > 0:
        return (acc + (1 << (s - 1))) >> s  # Python >> floors: round half up
    return acc << (-s)


def py_requantize(acc: int, s: int, bw: int) -> int:
    return py_sat(py_shift(acc, s), bw)


# --- FixedFormat -----------------------------------------------------------------------------
def test_format_range_and_dtype():
    f = FixedFormat(8, 3)
    assert (f.qmin, f.qmax, f.dtype) == (-128, 127, np.int8)
    assert FixedFormat(9, 0).dtype == np.int16 and FixedFormat(17, 0).dtype == np.int32
    assert f.step == 0.125 and f.max_value == 127 / 8
    assert str(FixedFormat(16, -3)) == "Q16.-3"


def test_format_refusals_and_numpy_ints():
    for bad in [(1, 0), (33, 0), (8.0, 0), (True, 0), (8, "1")]:
        with pytest.raises(InputError):
            FixedFormat(*bad)
    f = FixedFormat(np.int64(8), np.int32(-2))
    assert type(f.bw) is int and type(f.fl) is int and f == FixedFormat(8, -2)


# --- float -> fixed ---------------------------------------------------------------------------
@given(x=finite, bw=bws, fl=fls)
@settings(max_examples=400, deadline=None)
def test_to_fixed_matches_exact_rounding(x, bw, fl):
    fmt = FixedFormat(bw, fl)
    got = int(to_fixed(np.array([x]), fmt)[0])
    assert got == py_to_fixed(x, bw, fl)
    want_sat = round(Fraction(x) * Fraction(2) ** fl) != got
    assert count_saturated(np.array([x]), fmt) == int(want_sat)


def test_to_fixed_ties_go_to_even():
    f = FixedFormat(8, 0)
    xs = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5])
    assert to_fixed(xs, f).tolist() == [0, 2, 2, 0, -2, -2, 4]
    # with fl = 2 the ties sit at odd multiples of 1/8
    assert to_fixed(np.array([0.125, 0.375, -0.125]), FixedFormat(8, 2)).tolist() == [0, 2, 0]


def test_to_fixed_saturates_both_ends_and_counts():
    f = FixedFormat(4, 1)  # [-8, 7] / 2
    x = np.array([3.5, 3.75, 100.0, -4.0, -4.25, -1e300, 1e300])
    assert to_fixed(x, f).tolist() == [7, 7, 7, -8, -8, -8, 7]
    assert count_saturated(x, f) == 4
    # -4.25·2 = -8.5 rounds (half even) to -8: not saturated; 3.75·2 = 7.5 -> 8: saturated
    assert count_saturated(np.array([-4.25]), f) == 0
    assert count_saturated(np.array([3.75]), f) == 1


def test_to_fixed_fl_beyond_bw_and_negative_fl():
    assert to_fixed(np.array([0.001, -0.002]), FixedFormat(4, 12)).tolist() == [4, -8]
    assert to_fixed(np.array([1000.0, 17.0, 24.0]), FixedFormat(8, -3)).tolist() == [125, 2, 3]


def test_to_fixed_refuses_nan_and_inf():
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(InputError, match="NaN or infinite"):
            to_fixed(np.array([1.0, bad]), FixedFormat(8, 0), "weights")


@given(q=st.integers(-(1 << 31), (1 << 31) - 1), fl=fls)
def test_to_float_is_exact(q, fl):
    assert Fraction(float(to_float(np.array([q]), fl)[0])) == Fraction(q) * Fraction(2) ** -fl


# --- saturate, align_bias -----------------------------------------------------------------------
@given(v=st.lists(st.integers(-(1 << 62), 1 << 62), min_size=1, max_size=20), bw=bws)
def test_saturate(v, bw):
    y, n = saturate(np.array(v, dtype=np.int64), bw)
    assert y.tolist() == [py_sat(a, bw) for a in v]
    assert n == sum(py_sat(a, bw) != a for a in v)


@given(b=st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=10),
       fl_b=st.integers(-10, 30), k=st.integers(0, 31))
def test_align_bias(b, fl_b, k):
    got = align_bias(np.array(b), fl_b, fl_b + k)
    assert got.tolist() == [v << k for v in b]


def test_align_bias_refusals():
    with pytest.raises(InputError, match="exceeds"):
        align_bias(np.array([1]), 5, 4)
    with pytest.raises(InputError, match="overflows"):
        align_bias(np.array([3, 1 << 20]), 0, 45)
    assert align_bias(np.array([0, 0]), 0, 200).tolist() == [0, 0]  # zero stays zero


# --- data shift -------------------------------------------------------------------------------
accs = st.integers(-(1 << 62) + 1, (1 << 62) - 1)


@given(acc=st.lists(accs, min_size=1, max_size=20), s=st.integers(1, 80))
def test_shift_round_positive_is_round_half_up(acc, s):
    got = shift_round(np.array(acc, dtype=np.int64), s)
    assert got.tolist() == [py_shift(a, s) for a in acc]


@given(acc=st.lists(st.integers(-(1 << 63), (1 << 63) - 1), min_size=1, max_size=20),
       s=st.integers(1, 70))
def test_shift_round_never_overflows(acc, s):
    got = shift_round(np.array(acc, dtype=np.int64), s)
    assert got.tolist() == [py_shift(a, s) for a in acc]


def test_shift_round_ties_and_zero_and_left():
    a = np.array([-3, -2, -1, 0, 1, 2, 3, 5, -5])
    assert shift_round(a, 1).tolist() == [-1, -1, 0, 0, 1, 1, 2, 3, -2]  # x.5 -> up
    assert shift_round(a, 0).tolist() == a.tolist()
    assert shift_round(a, -3).tolist() == (a * 8).tolist()


@given(acc=st.lists(accs, min_size=1, max_size=20), s=st.integers(-70, 70), bw=bws)
@settings(max_examples=300)
def test_requantize_matches_python(acc, s, bw):
    out = FixedFormat(bw, 0)
    y, n = requantize(np.array(acc, dtype=np.int64), s, out)
    want = [py_requantize(a, s, bw) for a in acc]
    assert y.tolist() == want
    assert n == sum(py_shift(a, s) != w for a, w in zip(acc, want, strict=True))


def test_requantize_edges():
    out = FixedFormat(8, 0)
    # s < 0: exactly representable extremes do not saturate, one step beyond does
    y, n = requantize(np.array([63, 64, -64, -65]), -1, out)
    assert y.tolist() == [126, 127, -128, -128] and n == 2
    # a shift as wide as the format leaves only 0 and -1 unsaturated
    y, n = requantize(np.array([0, -1, 1, -2]), -7, out)
    assert y.tolist() == [0, -128, 127, -128] and n == 2
    # s > 0 rounding ties go up, both signs
    y, n = requantize(np.array([3, -3, 255, 256, -257, -258]), 1, out)
    assert y.tolist() == [2, -1, 127, 127, -128, -128] and n == 3


def test_align_bias_at_the_int64_edge():
    # -2^31 << 31 = -2^62 is representable and within the stated 2^62 limit.
    assert align_bias(np.array([-(1 << 31), (1 << 31)]), 0, 31).tolist() == [-(1 << 62), 1 << 62]
    with pytest.raises(InputError, match="overflows"):
        align_bias(np.array([(1 << 31) + 1]), 0, 31)
