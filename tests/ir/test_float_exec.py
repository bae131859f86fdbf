"""Float executor: every layer kind against torch's functional ops, the API, and refusals."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir import (
    INPUT,
    LRN,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
    chain,
)
from deepfpga.ir.float_exec import run_float, run_float_from, run_layer


def _rand(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def _branchy(rng):
    """conv → bn → relu → maxpool ─┬→ conv(3x3, p1) ─→ add → avgpool → lrn → flatten → dropout
                                    └────────────────┘                  → fc → softmax"""
    layers = (
        Conv2d("c1", (INPUT,), in_channels=3, out_channels=6, kernel=(3, 3), padding=(1, 1)),
        BatchNorm2d("bn", ("c1",), num_features=6, eps=1e-3),
        ReLU("r1", ("bn",)),
        MaxPool2d("p1", ("r1",), kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True),
        Conv2d("c2", ("p1",), in_channels=6, out_channels=6, kernel=(3, 3), stride=(1, 1),
               padding=(1, 1), bias=False),
        Add("sum", ("p1", "c2")),
        AvgPool2d("ap", ("sum",), kernel=(2, 2), stride=(2, 2), padding=(1, 1)),
        LRN("lrn", ("ap",), size=3, alpha=1e-2, beta=0.75, k=2.0),
        Flatten("fl", ("lrn",)),
        Dropout("dr", ("fl",), p=0.5),
        Linear("fc", ("dr",), in_features=6 * 4 * 4, out_features=5),
        Softmax("sm", ("fc",)),
    )
    params = {
        "c1": {"weight": _rand(rng, 6, 3, 3, 3), "bias": _rand(rng, 6)},
        "bn": {"weight": _rand(rng, 6, lo=0.5, hi=2), "bias": _rand(rng, 6),
               "running_mean": _rand(rng, 6), "running_var": _rand(rng, 6, lo=0.2, hi=3)},
        "c2": {"weight": _rand(rng, 6, 6, 3, 3)},
        "fc": {"weight": _rand(rng, 5, 96), "bias": _rand(rng, 5)},
    }
    return Graph("branchy", (3, 10, 10), layers, ("sm",), params)


def _torch_reference(g, x):
    p = {k: {kk: torch.from_numpy(np.array(v)) for kk, v in d.items()} for k, d in g.params.items()}
    t = torch.from_numpy(x)
    c1 = F.conv2d(t, p["c1"]["weight"], p["c1"]["bias"], padding=1)
    bn = F.batch_norm(c1, p["bn"]["running_mean"], p["bn"]["running_var"], p["bn"]["weight"],
                      p["bn"]["bias"], training=False, eps=1e-3)
    p1 = F.max_pool2d(torch.relu(bn), 3, 2, 1, ceil_mode=True)
    s = p1 + F.conv2d(p1, p["c2"]["weight"], None, padding=1)
    ap = F.avg_pool2d(s, 2, 2, 1)  # torch default: zero padding counted
    lrn = torch.nn.LocalResponseNorm(3, 1e-2, 0.75, 2.0)(ap)
    fc = F.linear(lrn.flatten(1), p["fc"]["weight"], p["fc"]["bias"])
    return {"p1": p1.numpy(), "sum": s.numpy(), "sm": torch.softmax(fc, 1).numpy()}


def test_every_layer_kind_matches_torch():
    rng = np.random.default_rng(0)
    g = _branchy(rng)
    x = _rand(rng, 4, 3, 10, 10)
    ref = _torch_reference(g, x)
    out = run_float(g, x)
    assert out.shape == (4, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref["sm"], atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)
    every = run_float(g, x, return_all=True)
    assert list(every) == [layer.name for layer in g.layers]
    np.testing.assert_allclose(every["sum"], ref["sum"], atol=1e-5)
    assert np.array_equal(every["dr"], every["fl"])  # dropout is the identity


def test_batch_slices_give_the_same_result():
    rng = np.random.default_rng(1)
    g = _branchy(rng)
    x = _rand(rng, 7, 3, 10, 10)
    whole = run_float(g, x, return_all=True)
    sliced = run_float(g, x, return_all=True, batch_size=3)
    for name in whole:  # conv kernels may sum in another order for another batch size
        np.testing.assert_allclose(sliced[name], whole[name], rtol=1e-6, atol=1e-5)


def test_run_layer_and_run_float_from_reproduce_the_full_run():
    rng = np.random.default_rng(2)
    g = _branchy(rng)
    x = _rand(rng, 3, 3, 10, 10)
    every = run_float(g, x, return_all=True)
    every[INPUT] = x
    for layer in g.layers:
        y = run_layer(g, layer.name, [every[s] for s in layer.inputs])
        np.testing.assert_allclose(y, every[layer.name], atol=1e-6, err_msg=layer.name)
    # Resume at the add: it reads p1 and c2, which are cached.
    out = run_float_from(g, {"p1": every["p1"], "c2": every["c2"]}, "sum")
    np.testing.assert_allclose(out, every["sm"], atol=1e-6)
    with pytest.raises(InputError, match="'c2'"):
        run_float_from(g, {"p1": every["p1"]}, "sum")


def test_multiple_outputs_come_back_as_a_dict():
    rng = np.random.default_rng(3)
    g = _branchy(rng)
    g2 = g.replace(outputs=("p1", "sm"))
    out = run_float(g2, _rand(rng, 2, 3, 10, 10))
    assert set(out) == {"p1", "sm"} and out["p1"].shape == (2, 6, 6, 6)


def test_refusals():
    rng = np.random.default_rng(4)
    g = _branchy(rng)
    with pytest.raises(ShapeError, match=r"\(N, 3, 10, 10\)"):
        run_float(g, _rand(rng, 2, 3, 9, 10))
    with pytest.raises(ShapeError):
        run_float(g, _rand(rng, 3, 10, 10))  # no batch dimension
    bad = _rand(rng, 1, 3, 10, 10)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        run_float(g, bad)
    with pytest.raises(InputError, match="no weights"):
        run_float(g.without_weights(), _rand(rng, 1, 3, 10, 10))
    with pytest.raises(InputError, match="reads 2 input"):
        run_layer(g, "sum", [_rand(rng, 1, 6, 6, 6)])
    with pytest.raises(InputError, match="no layer named"):
        run_layer(g, "nope", [])


def test_a_chain_with_integer_input_is_cast_to_float():
    lin = Linear("fc", (), in_features=4, out_features=2)
    w = np.arange(8, dtype=np.float32).reshape(2, 4)
    g = chain("tiny", (4,), [lin, ReLU("r", ())], {"fc": {"weight": w, "bias": np.zeros(2)}})
    out = run_float(g, np.array([[1, 0, 0, -1]], dtype=np.int64))
    np.testing.assert_array_equal(out, [[0.0, 0.0]])  # 0-3 = -3, 4-7 = -3, relu → 0
