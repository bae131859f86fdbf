"""The graph IR's own invariants: shape inference, validation, serialisation, weights."""

import numpy as np
import pytest

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir import (
    INPUT,
    Add,
    Conv2d,
    Flatten,
    Graph,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
    chain,
)


def small() -> Graph:
    return chain("small", (3, 9, 9), [
        Conv2d("c1", (), 3, 4, 3, 1, 1), ReLU("r1", ()), MaxPool2d("p1", ()),
        Flatten("f", ()), Linear("fc", (), 64, 10), Softmax("sm", ()),
    ])


def test_shapes_follow_pytorch_rules():
    s = small().shapes()
    assert s[INPUT] == (3, 9, 9)
    assert s["c1"] == (4, 9, 9)
    assert s["p1"] == (4, 4, 4)  # floor mode drops the ninth row and column
    assert s["fc"] == (10,)


def test_conv_stride_and_padding():
    g = chain("g", (3, 224, 224), [Conv2d("c", (), 3, 96, 11, 4, 2)])
    assert g.shapes()["c"] == (96, 55, 55)


def test_ceil_mode_pool():
    g = chain("g", (1, 6, 6), [MaxPool2d("p", (), 3, 2, 0, True)])
    assert g.shapes()["p"] == (1, 3, 3)


def test_channel_mismatch_names_the_layer():
    with pytest.raises(ShapeError, match="'c2'"):
        chain("g", (3, 8, 8), [Conv2d("c1", (), 3, 4, 3), Conv2d("c2", (), 5, 4, 3)]).shapes()


def test_linear_needs_flat_input():
    with pytest.raises(ShapeError, match="Flatten"):
        chain("g", (3, 8, 8), [Linear("fc", (), 192, 10)]).shapes()


def test_dag_validation():
    c = Conv2d("c", (INPUT,), 3, 3, 3, 1, 1)
    add = Add("a", ("c", INPUT))
    g = Graph("res", (3, 8, 8), (c, add), ("a",))
    assert not g.is_chain()
    assert g.shapes()["a"] == (3, 8, 8)
    with pytest.raises(ShapeError, match="not an earlier layer"):
        Graph("bad", (3, 8, 8), (add, c), ("a",))
    with pytest.raises(ShapeError, match="duplicate"):
        Graph("bad", (3, 8, 8), (c, c), ("c",))
    with pytest.raises(ShapeError, match="output"):
        Graph("bad", (3, 8, 8), (c,), ("zz",))


def test_round_trip_dict():
    g = small()
    h = Graph.from_dict(g.to_dict())
    assert h.to_dict() == g.to_dict()
    assert h.layers == g.layers


def test_from_dict_refuses_unknown_kind_and_keys():
    d = small().to_dict()
    d["layers"][0]["kind"] = "conv3d"
    with pytest.raises(InputError, match="conv3d"):
        Graph.from_dict(d)
    d = small().to_dict()
    d["layers"][0]["dilation"] = 2
    with pytest.raises(InputError, match="dilation"):
        Graph.from_dict(d)


def test_weights_checked_and_read_only():
    w = np.zeros((4, 3, 3, 3), np.float32)
    g = chain("g", (3, 8, 8), [Conv2d("c", (), 3, 4, 3, bias=False)], {"c": {"weight": w}})
    assert g.has_weights
    with pytest.raises(ValueError):
        g.params["c"]["weight"][0, 0, 0, 0] = 1.0
    with pytest.raises(ShapeError, match="shape"):
        chain("g", (3, 8, 8), [Conv2d("c", (), 3, 4, 3)], {"c": {"weight": w[:, :2]}})
    with pytest.raises(InputError, match="NaN"):
        chain("g", (3, 8, 8), [Conv2d("c", (), 3, 4, 3, bias=False)],
              {"c": {"weight": np.full_like(w, np.nan)}})
    bare = chain("g", (3, 8, 8), [Conv2d("c", (), 3, 4, 3)])
    assert not bare.has_weights
    with pytest.raises(InputError, match="c/weight"):
        bare.require_weights()


def test_macs_match_paper_formula():
    g = chain("g", (64, 56, 56), [Conv2d("c", (), 64, 128, 3, 1, 1)])
    layer = g.layers[0]
    s = g.shapes()
    assert layer.macs([s[INPUT]], s["c"]) == 9 * 64 * 128 * 56 * 56
