"""Weight/bias fractional-length search: equals brute force over a wide range of fl."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfpga.errors import InputError
from deepfpga.quant.fixedpoint import FixedFormat, count_saturated
from deepfpga.quant.weights import choose_fl, overflow_free_fl, quant_error, search_fl


def _brute(tensors, metric, lo=-40, hi=60, max_fl=None):
    hi = hi if max_fl is None else min(hi, max_fl)
    errs = {fl: sum(quant_error(x, FixedFormat(bw, fl), metric) for x, bw in tensors)
            for fl in range(lo, hi + 1)}
    best = min(errs.values())
    return best, [fl for fl, e in errs.items() if e == best]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), bw=st.integers(2, 16), scale_exp=st.integers(-12, 8),
       heavy=st.booleans(), metric=st.sampled_from(["l1", "l2"]))
def test_choose_fl_equals_brute_force(seed, bw, scale_exp, heavy, metric):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    x = (rng.standard_t(2, n) if heavy else rng.normal(size=n)) * 2.0 ** scale_exp
    c = choose_fl(x, bw, metric)
    best, argmins = _brute([(x, bw)], metric)
    assert c.error == pytest.approx(best, rel=1e-12, abs=0)
    assert c.fl in argmins
    # ties go to the smallest fl at or above the overflow-free fl
    assert c.fl == min(f for f in argmins if f >= c.fl_overflow_free)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), bw=st.integers(2, 12), cap_off=st.integers(-6, 4))
def test_max_fl_constraint_is_the_constrained_optimum(seed, bw, cap_off):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=50) * 0.01
    fl0 = overflow_free_fl(x, bw)
    cap = fl0 + cap_off
    c = choose_fl(x, bw, "l1", max_fl=cap)
    assert c.fl <= cap
    best, argmins = _brute([(x, bw)], "l1", max_fl=cap)
    assert c.error == pytest.approx(best, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_static_search_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    tensors = [(rng.normal(size=200) * 2.0 ** int(rng.integers(-8, 4)), int(rng.integers(3, 9)))
               for _ in range(3)]
    c = search_fl(tensors, "l1")
    best, argmins = _brute(tensors, "l1")
    assert c.error == pytest.approx(best, rel=1e-12)
    assert c.fl in argmins


def test_overflow_free_fl_is_tight():
    for bw in (4, 8, 16):
        for m in (0.3, 1.0, 5.7, 127.0 / 128, 1e-4, -2.0):
            x = np.array([m, -abs(m) / 3])
            fl = overflow_free_fl(x, bw)
            assert count_saturated(x, FixedFormat(bw, fl)) == 0
            assert count_saturated(x, FixedFormat(bw, fl + 1)) > 0
    # -2^(bw-1) is representable, +2^(bw-1) is not
    assert overflow_free_fl(np.array([-1.0]), 8) == 7
    assert overflow_free_fl(np.array([1.0]), 8) == 6


def test_search_stays_small_and_picks_clipping_for_outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10000) * 0.05
    x[0] = 3.0   # one outlier: clipping it buys resolution for everything else at 4 bits
    c = choose_fl(x, 4, "l1")
    assert c.fl > c.fl_overflow_free
    assert len(c.candidates) <= 8


def test_all_zero_and_refusals():
    c = choose_fl(np.zeros(5), 8)
    assert c.error == 0 and c.fl == 7
    assert choose_fl(np.zeros(5), 8, max_fl=3).fl == 3
    with pytest.raises(InputError, match="NaN"):
        choose_fl(np.array([1.0, np.nan]), 8)
    with pytest.raises(InputError, match="unknown weight metric"):
        choose_fl(np.ones(3), 8, "kl")
