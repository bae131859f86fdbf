"""Feature-map candidate scoring and search (without a network)."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.quant import activations as act
from deepfpga.quant.fixedpoint import FixedFormat, requantize, to_fixed


def test_l1_l2_scores_are_mean_errors():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(4, 3, 5, 5)).astype(np.float32)
    fmt = FixedFormat(8, 5)
    q = to_fixed(ref, fmt)
    d = np.ldexp(q.astype(np.float64), -5) - ref.astype(np.float64)
    assert act.make_scorer(ref, "l1")(q, fmt) == pytest.approx(np.abs(d).mean(), rel=1e-12)
    assert act.make_scorer(ref, "l2")(q, fmt) == pytest.approx(np.square(d).mean(), rel=1e-12)


def test_kl_prefers_fine_grid_without_heavy_clipping():
    rng = np.random.default_rng(2)
    ref = np.abs(rng.normal(size=20000))          # a post-ReLU-like map
    score = act.make_scorer(ref, "kl")
    kls = {}
    for fl in range(-2, 14):
        fmt = FixedFormat(8, fl)
        kls[fl] = score(to_fixed(ref, fmt), fmt)
    assert all(v >= 0 for v in kls.values())
    best = min(kls, key=kls.get)
    fl0 = act.overflow_free_fl_float(ref, 8)
    assert fl0 - 1 <= best <= fl0 + 3               # neither coarse nor clipped to death
    assert kls[fl0 - 3] > kls[best] and kls[fl0 + 6] > kls[best]


def test_kl_exact_representation_is_near_zero():
    ref = np.repeat(np.arange(-8, 8) / 4.0, 50)
    fmt = FixedFormat(8, 2)
    assert act.make_scorer(ref, "kl")(to_fixed(ref, fmt), fmt) < 1e-9


def test_search_window_and_tie_break():
    ref = np.linspace(-3, 3, 1001)
    q = act.float_quantizer(ref, 8)
    fl0 = act.overflow_free_fl_float(ref, 8)
    ch = act.search(q, act.make_scorer(ref, "l1"), fl0, 8)
    fls = [c.fl for c in ch.candidates]
    assert fls[0] == fl0 - 1 and fls == list(range(fls[0], fls[-1] + 1))
    assert fls[-1] - ch.fl >= act.PATIENCE
    # the choice is the argmin of the evaluated candidates, smallest fl on ties
    errs = [c.error for c in ch.candidates]
    assert ch.fl == fls[int(np.argmin(errs))]


def test_acc_overflow_free_fl_is_tight():
    rng = np.random.default_rng(3)
    for _ in range(50):
        acc = rng.integers(-(1 << 30), 1 << 30, size=20)
        fl_acc = int(rng.integers(-4, 30))
        bw = int(rng.integers(2, 17))
        fl = act.acc_overflow_free_fl(acc, fl_acc, bw)
        assert requantize(acc, fl_acc, FixedFormat(bw, fl))[1] == 0
        assert requantize(acc, fl_acc, FixedFormat(bw, fl + 1))[1] > 0
    assert act.acc_overflow_free_fl(np.zeros(4, dtype=np.int64), 3, 8) is None


def test_zero_map_and_bad_metric():
    q = act.float_quantizer(np.zeros(10), 8)
    ch = act.search(q, act.make_scorer(np.zeros(10), "l1"), None, 8)
    assert ch.error == 0 and ch.fl == 7
    with pytest.raises(InputError, match="unknown metric 'l3'"):
        act.make_scorer(np.zeros(3), "l3")


def test_acc_quantizer_equals_requantize():
    """The float64 fast path is the contract's data shift bit for bit (ties, both ends)."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        bw = int(rng.integers(2, 33))
        fl_acc = int(rng.integers(-10, 40))
        s = int(rng.integers(-12, 50))
        mag = int(rng.integers(1, 52))
        acc = rng.integers(-(1 << mag), 1 << mag, size=64)
        if s > 0:  # exact ties: (2k+1)·2^(s-1)
            acc[:8] = (2 * rng.integers(-(1 << max(0, mag - s)), 1 << max(0, mag - s), 8) + 1) \
                << (s - 1) if s - 1 < 62 else 0
        acc = np.clip(acc, -(1 << 52) + 1, (1 << 52) - 1)
        fmt = FixedFormat(bw, fl_acc - s)
        want, n_want = requantize(acc, fl_acc, fmt)
        got, n_got = act.acc_quantizer(acc, fl_acc, bw)(fmt.fl)
        assert n_got == n_want
        assert np.array_equal(got.astype(np.int64), want)
        if np.abs(acc).max() < 1 << 31:   # int32 accumulators (the walk keeps them so)
            got, n_got = act.acc_quantizer(acc.astype(np.int32), fl_acc, bw)(fmt.fl)
            assert n_got == n_want and np.array_equal(got.astype(np.int64), want)
    big = np.array([1 << 60, -(1 << 61), 3])    # beyond 2^52: the int64 path
    got, n = act.acc_quantizer(big, 10, 16)(0)
    assert np.array_equal(got, requantize(big, 10, FixedFormat(16, 0))[0])
