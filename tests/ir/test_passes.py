"""Graph passes: BN folding is exact, identities vanish, refusals name the layer."""

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.ir import (
    INPUT,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Linear,
    MaxPool2d,
    ReLU,
    chain,
)
from deepfpga.ir.float_exec import run_float
from deepfpga.ir.passes import (
    fold_batchnorm,
    prepare_for_quantization,
    remove_dropout,
    remove_identities,
)


def _bn_params(rng, c):
    return {"weight": rng.uniform(0.3, 3, c), "bias": rng.normal(size=c),
            "running_mean": rng.normal(size=c), "running_var": rng.uniform(0.01, 4, c)}


def _net(rng, conv_bias=True):
    layers = [
        Conv2d("c1", (), in_channels=3, out_channels=8, kernel=(3, 3), padding=(1, 1),
               bias=conv_bias),
        BatchNorm2d("bn1", (), num_features=8, eps=1e-3),
        ReLU("r1", ()),
        MaxPool2d("p1", (), kernel=(1, 1), stride=(1, 1)),
        Conv2d("c2", (), in_channels=8, out_channels=4, kernel=(3, 3), stride=(2, 2)),
        BatchNorm2d("bn2", (), num_features=4),
        ReLU("r2", ()),
        Flatten("f", ()),
        Dropout("d", ()),
        Flatten("f2", ()),
        Linear("fc", (), in_features=4 * 3 * 3, out_features=5),
    ]
    params = {
        "c1": {"weight": rng.normal(size=(8, 3, 3, 3))},
        "bn1": _bn_params(rng, 8),
        "c2": {"weight": rng.normal(size=(4, 8, 3, 3)), "bias": rng.normal(size=4)},
        "bn2": _bn_params(rng, 4),
        "fc": {"weight": rng.normal(size=(5, 36)), "bias": rng.normal(size=5)},
    }
    if conv_bias:
        params["c1"]["bias"] = rng.normal(size=8)
    return chain("net", (3, 8, 8), layers, params)


@pytest.mark.parametrize("conv_bias", [True, False])
def test_fold_batchnorm_is_exact(conv_bias):
    rng = np.random.default_rng(0)
    g = _net(rng, conv_bias)
    folded = fold_batchnorm(g)
    assert [layer.kind for layer in folded.layers].count("batchnorm") == 0
    assert folded.layer("c1").bias and folded.layer("r1").inputs == ("c1",)
    assert folded.is_chain() and folded.has_weights
    x = rng.normal(size=(6, 3, 8, 8)).astype(np.float32)
    ref, got = run_float(g, x), run_float(folded, x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
    # The argument is untouched.
    assert [layer.name for layer in g.layers].count("bn1") == 1


def test_fold_batchnorm_without_weights_changes_structure_only():
    g = _net(np.random.default_rng(1)).without_weights()
    folded = fold_batchnorm(g)
    assert "bn1" not in folded and "bn2" not in folded
    assert folded.layer("c1").bias and not folded.params
    assert folded.shapes()["fc"] == (5,)


def test_fold_batchnorm_refuses_bn_after_non_conv():
    g = chain("g", (3, 4, 4), [
        Conv2d("c", (), in_channels=3, out_channels=3, kernel=(1, 1)),
        ReLU("r", ()),
        BatchNorm2d("bn", (), num_features=3),
    ])
    with pytest.raises(InputError, match=r"'bn'.*'r' \(relu\)"):
        fold_batchnorm(g)
    g0 = chain("g0", (3, 4, 4), [BatchNorm2d("bn", (), num_features=3)])
    with pytest.raises(InputError, match="graph input"):
        fold_batchnorm(g0)


def test_fold_batchnorm_refuses_a_conv_with_another_reader():
    layers = (
        Conv2d("c", (INPUT,), in_channels=3, out_channels=3, kernel=(1, 1)),
        BatchNorm2d("bn", ("c",), num_features=3),
        ReLU("side", ("c",)),
    )
    g = Graph("g", (3, 4, 4), layers, ("bn", "side"))
    with pytest.raises(InputError, match="also read by side"):
        fold_batchnorm(g)
    g2 = Graph("g2", (3, 4, 4), layers[:2], ("bn", "c"))
    with pytest.raises(InputError, match="graph output"):
        fold_batchnorm(g2)


def test_remove_dropout_and_identities():
    rng = np.random.default_rng(2)
    g = _net(rng)
    nd = remove_dropout(g)
    assert "d" not in nd and nd.layer("f2").inputs == ("f",)
    ni = remove_identities(g)
    # 1x1/1 pooling, dropout and the flatten of an already flat vector are gone
    assert {"p1", "d", "f2"}.isdisjoint(layer.name for layer in ni.layers)
    assert "f" in ni and ni.layer("fc").inputs == ("f",) and ni.layer("c2").inputs == ("r1",)
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(run_float(ni, x), run_float(g, x))


def test_identity_that_is_the_output_is_bypassed():
    g = chain("g", (4,), [Linear("fc", (), in_features=4, out_features=2), Dropout("d", ())])
    out = remove_dropout(g)
    assert out.outputs == ("fc",) and len(out.layers) == 1


def test_avgpool_that_is_not_identity_stays():
    g = chain("g", (2, 4, 4), [AvgPool2d("a", (), kernel=(2, 2), stride=(2, 2))])
    assert remove_identities(g) is g


def test_prepare_for_quantization_leaves_only_accelerator_friendly_layers():
    rng = np.random.default_rng(3)
    g = _net(rng)
    q = prepare_for_quantization(g)
    assert [layer.kind for layer in q.layers] == ["conv", "relu", "conv", "relu", "flatten", "fc"]
    x = rng.normal(size=(3, 3, 8, 8)).astype(np.float32)
    ref = run_float(g, x)
    np.testing.assert_allclose(run_float(q, x), ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
