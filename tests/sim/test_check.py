"""sim.check: every produced tensor compared with the reference executor."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler.compile import compile_model
from deepfpga.errors import InputError
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, ReLU, Softmax, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.sim.check import Mismatch, check_bit_exact, checked_tensors, compare_batch

TINY = load_config("tiny")


@pytest.fixture(scope="module")
def model():
    g = chain("k", (1, 8, 8), [
        Conv2d("c", (), in_channels=1, out_channels=4, kernel=(3, 3), padding=(1, 1)),
        ReLU("r", ()), Flatten("f", ()), Linear("l", (), in_features=256, out_features=5),
        Softmax("s", ())])
    rng = np.random.default_rng(3)
    x = rng.random((6, 1, 8, 8), dtype=np.float32)
    q = random_qmodel(g, rng, 16, 16)
    return q, compile_model(q, TINY), x, rng.integers(0, 5, size=6)


def test_checked_tensors_follow_the_schedule(model) -> None:
    _, c, _, _ = model
    assert checked_tensors(c.manifest) == [("r", "c"), ("l", "l"), ("s", "host: s")]


def test_compare_batch_finds_the_first_mismatch() -> None:
    a = np.zeros((2, 3, 4), np.int64)
    b = a.copy()
    b[1, 2, 0] = 7
    b[1, 2, 3] = 9
    ((vals, bad, first),) = compare_batch({"t": a}, {"t": b}, [("t", "x")], offset=10)
    assert (vals, bad) == (24, 2)
    assert first == Mismatch(11, (2, 0), 0, 7)
    assert first.to_dict() == {"image": 11, "index": [2, 0], "simulated": 0, "reference": 7}
    with pytest.raises(InputError, match="returned no tensor 'u'"):
        compare_batch({"t": a}, {"t": b}, [("u", "x")], 0)
    with pytest.raises(InputError, match="simulator shape"):
        compare_batch({"t": a}, {"t": b[:1]}, [("t", "x")], 0)


def test_simulated_run_is_bit_exact(model) -> None:
    q, c, x, y = model
    seen = []
    r = check_bit_exact(q, c, x, y, batch_size=4, on_batch=seen.append)
    assert seen == [4, 2]
    assert r.bit_exact and r.images == 6 and r.k5 == 5
    assert r.values_compared == 6 * (4 * 8 * 8 + 5 + 5)
    assert [ch.tensor for ch in r.checks] == ["r", "l", "s"]
