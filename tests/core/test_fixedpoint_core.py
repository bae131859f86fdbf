"""Spot checks of the contract's data shift that every implementation must share."""

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.quant.fixedpoint import FixedFormat, requantize, to_fixed


def python_requantize(acc: int, s: int, bw: int) -> int:
    y = (acc + (1 << (s - 1))) >> s if s > 0 else acc << (-s)
    return max(-(1 << (bw - 1)), min((1 << (bw - 1)) - 1, y))


@pytest.mark.parametrize("s", [-40, -9, -1, 0, 1, 2, 7, 30, 61])
@pytest.mark.parametrize("bw", [2, 8, 16, 32])
def test_requantize_matches_python_integers(s, bw):
    rng = np.random.default_rng(bw * 100 + s)
    acc = np.concatenate([rng.integers(-(1 << 40), 1 << 40, 200), np.arange(-9, 10),
                          [(1 << 59), -(1 << 59)]])
    out = FixedFormat(bw, 0)
    y, n = requantize(acc, s, out)
    want = [python_requantize(int(a), s, bw) for a in acc]
    assert y.tolist() == want
    unclipped = [(int(a) + (1 << (s - 1))) >> s if s > 0 else int(a) << (-s) for a in acc]
    assert n == sum(1 for u, w in zip(unclipped, want, strict=True) if u != w)


def test_to_fixed_half_even_and_refusal():
    f = FixedFormat(8, 1)
    q = to_fixed(np.array([0.25, 0.75, -0.25, 100.0, -100.0]), f)
    assert q.tolist() == [0, 2, 0, 127, -128]
    with pytest.raises(InputError, match="NaN"):
        to_fixed(np.array([np.nan]), f)
    with pytest.raises(InputError):
        FixedFormat(1, 0)
