"""Top-k scoring, the ranking layer, batching and refusals of deepfpga.quant.evaluate."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.ir import Flatten, Linear, Softmax, chain
from deepfpga.quant.evaluate import evaluate, score_layer, topk_hits


def _linear_graph(softmax: bool):
    rng = np.random.default_rng(0)
    layers = [Flatten("flat", ()), Linear("fc", (), in_features=4, out_features=6)]
    if softmax:
        layers.append(Softmax("prob", ()))
    params = {"fc": {"weight": rng.normal(size=(6, 4)).astype(np.float32),
                     "bias": rng.normal(size=6).astype(np.float32)}}
    return chain("lin", (1, 2, 2), layers, params)


def test_topk_ties_rank_lower_class_first():
    scores = np.array([[3, 3, 1], [1, 5, 5], [0, 0, 0]])
    assert topk_hits(scores, np.array([0, 1, 0]), 1).tolist() == [True, True, True]
    assert topk_hits(scores, np.array([1, 2, 2]), 1).tolist() == [False, False, False]
    assert topk_hits(scores, np.array([1, 2, 1]), 2).tolist() == [True, True, True]


def test_score_layer_skips_trailing_softmax():
    assert score_layer(_linear_graph(True)) == "fc"
    assert score_layer(_linear_graph(False)) == "fc"


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_float_accuracy_matches_direct_computation(batch):
    g = _linear_graph(True)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(50, 1, 2, 2)).astype(np.float32)
    y = rng.integers(0, 6, 50)
    logits = x.reshape(50, 4) @ g.params["fc"]["weight"].T + g.params["fc"]["bias"]
    order = np.argsort(-logits, axis=1, kind="stable")
    res = evaluate(g, x, y, batch_size=batch)
    assert res.n == 50 and res.kind == "float" and res.k5 == 5
    assert res.correct1 == int((order[:, 0] == y).sum())
    assert res.correct5 == int((order[:, :5] == y[:, None]).any(axis=1).sum())
    assert res.top1 == res.correct1 / 50


def test_refusals():
    g = _linear_graph(False)
    x = np.zeros((3, 1, 2, 2), dtype=np.float32)
    with pytest.raises(InputError, match="3 images but 2 labels"):
        evaluate(g, x, np.zeros(2, dtype=np.int64))
    with pytest.raises(InputError, match="labels go up to 9"):
        evaluate(g, x, np.array([0, 1, 9]))
    with pytest.raises(InputError, match="do not fit model"):
        evaluate(g, np.zeros((3, 1, 3, 3), dtype=np.float32), np.zeros(3, dtype=np.int64))
    with pytest.raises(InputError, match="batch size"):
        evaluate(g, x, np.zeros(3, dtype=np.int64), batch_size=0)
