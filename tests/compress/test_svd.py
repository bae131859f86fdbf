"""SVD factoring: exactness at the matrix's rank, error reporting, rank choice, refusals, CLI."""

import json

import numpy as np
import pytest

from deepfpga import zoo
from deepfpga.cli import main
from deepfpga.compress.svd import (
    RankSpec,
    rank_for_energy,
    rank_for_reduction,
    svd_compress,
    svd_factor,
)
from deepfpga.errors import InputError
from deepfpga.frontends.float_model import save_float_model
from deepfpga.ir import Flatten, Linear, ReLU, chain
from deepfpga.ir.float_exec import run_float
from deepfpga.models import load_model


def _mlp(rng, w1=None):
    """flatten → fc1 (24 → 16) → relu → fc2 (16 → 10) → relu."""
    layers = [
        Flatten("flat", ()),
        Linear("fc1", (), in_features=24, out_features=16),
        ReLU("r1", ()),
        Linear("fc2", (), in_features=16, out_features=10),
        ReLU("r2", ()),
    ]
    params = {
        "fc1": {"weight": rng.normal(size=(16, 24)) if w1 is None else w1,
                "bias": rng.normal(size=16)},
        "fc2": {"weight": rng.normal(size=(10, 16)), "bias": rng.normal(size=10)},
    }
    return chain("mlp", (2, 3, 4), layers, params)


def test_rank_of_the_matrix_reproduces_the_layer():
    rng = np.random.default_rng(0)
    k = 5  # W has rank 5, so the rank-5 factors are the layer itself ("full rank")
    w = (rng.normal(size=(16, k)) @ rng.normal(size=(k, 24))).astype(np.float32)
    g = _mlp(rng, w)
    res = svd_compress(g, {"fc1": RankSpec(rank=k)})
    f = res.graph
    assert [layer.name for layer in f.layers] == ["flat", "fc1_a", "fc1_b", "r1", "fc2", "r2"]
    assert f.layer("fc1_a").bias is False and f.layer("fc1_b").bias is True
    assert f.layer("r1").inputs == ("fc1_b",)
    assert np.array_equal(f.params["fc1_b"]["bias"], g.params["fc1"]["bias"])
    x = rng.normal(size=(8, 2, 3, 4)).astype(np.float32)
    ref = run_float(g, x)
    np.testing.assert_allclose(run_float(f, x), ref, atol=1e-4 * np.abs(ref).max())
    rep = res.layers[0]
    assert rep.rel_error < 1e-6 and rep.energy_kept == pytest.approx(1.0)
    a, b = f.params["fc1_a"]["weight"], f.params["fc1_b"]["weight"]
    np.testing.assert_allclose(b @ a, w, atol=1e-5 * np.abs(w).max())


def test_reported_error_is_the_frobenius_error_and_factors_are_balanced():
    rng = np.random.default_rng(1)
    g = _mlp(rng)
    w = np.asarray(g.params["fc1"]["weight"], np.float64)
    res = svd_compress(g, {"fc1": 6})
    rep = res.layers[0]
    a = np.asarray(res.graph.params["fc1_a"]["weight"], np.float64)
    b = np.asarray(res.graph.params["fc1_b"]["weight"], np.float64)
    direct = np.linalg.norm(w - b @ a) / np.linalg.norm(w)
    assert rep.rel_error == pytest.approx(direct, rel=1e-5)
    assert 0 < rep.rel_error < 1
    s = np.linalg.svd(w, compute_uv=False)
    assert rep.energy_kept == pytest.approx(np.sum(s[:6] ** 2) / np.sum(s ** 2))
    # sqrt(S) on both sides: equal Frobenius norms, column norms of B = row norms of A
    assert np.linalg.norm(a) == pytest.approx(np.linalg.norm(b), rel=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=0), np.linalg.norm(a, axis=1), rtol=1e-5)
    # truncation error shrinks as the rank grows
    errs = [svd_compress(g, {"fc1": r}).layers[0].rel_error for r in (2, 6, 12)]
    assert errs[0] > errs[1] > errs[2]


def test_vgg16_fc6_rank_500_removes_85_8_percent():
    res = svd_compress(zoo.get("vgg16"), {"fc6": RankSpec(rank=500)})
    rep = res.layers[0]
    assert (rep.weights_before, rep.weights_after) == (25088 * 4096, 500 * (25088 + 4096))
    assert round(100 * rep.reduction, 1) == 85.8
    assert rep.rel_error is None and rep.energy_kept is None  # architecture only
    s = res.graph.shapes()
    assert s["fc6_a"] == (500,) and s["fc6_b"] == (4096,) and not res.graph.params
    # same structure as the zoo's vgg16-svd, under the names svd_factor chooses
    named = svd_factor(zoo.get("vgg16"), "fc6", 500, names=("fc6a", "fc6b"))
    assert [lay.name for lay in named.layers] == [lay.name for lay in zoo.get("vgg16-svd").layers]
    assert named.shapes() == zoo.get("vgg16-svd").shapes()


def test_rank_for_reduction():
    r = rank_for_reduction(4096, 25088, 0.85)
    assert r * (4096 + 25088) <= 0.15 * 4096 * 25088 < (r + 1) * (4096 + 25088)
    assert rank_for_reduction(4096, 25088, 0.8579) == 500  # 85.79% is what rank 500 saves
    assert rank_for_reduction(4096, 25088, 0.858) == 499  # at least 85.8% needs one less
    with pytest.raises(InputError, match="cannot lose"):
        rank_for_reduction(4, 4, 0.9)
    for bad in (0, 1, -0.2, 1.5):
        with pytest.raises(InputError, match="reduction"):
            rank_for_reduction(10, 10, bad)


def test_rank_for_energy():
    s = np.array([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.65) == 2
    assert rank_for_energy(s, 13 / 14) == 2
    assert rank_for_energy(s, 0.99) == 3
    assert rank_for_energy(s, 1.0) == 3  # the numerical rank, not 4
    assert rank_for_energy(s[::-1], 0.65) == 2  # order does not matter
    with pytest.raises(InputError):
        rank_for_energy(s, 0)
    with pytest.raises(InputError):
        rank_for_energy(np.zeros(3), 0.5)


def test_energy_and_reduction_specs_on_weights():
    rng = np.random.default_rng(2)
    g = _mlp(rng)
    res = svd_compress(g, {"fc1": RankSpec(energy=0.9), "fc2": RankSpec(reduction=0.3)})
    r1, r2 = res.layers
    assert r1.energy_kept >= 0.9 and r1.rank < 16
    assert r2.rank == rank_for_reduction(10, 16, 0.3) and r2.reduction >= 0.3
    assert [lay.name for lay in res.graph.layers] == [
        "flat", "fc1_a", "fc1_b", "r1", "fc2_a", "fc2_b", "r2"]
    # a too-high energy target needs the full rank: refused
    with pytest.raises(InputError, match="full rank"):
        svd_compress(g, {"fc1": RankSpec(energy=1.0)})


def test_refusals():
    rng = np.random.default_rng(3)
    g = _mlp(rng)
    with pytest.raises(InputError, match=r"rank 0 is out of range 1\.\.15"):
        svd_factor(g, "fc1", 0)
    with pytest.raises(InputError, match="rank 16 is out of range"):
        svd_factor(g, "fc1", 16)
    with pytest.raises(InputError, match="'r1' is relu, not fc"):
        svd_factor(g, "r1", 2)
    with pytest.raises(InputError, match="no layer named 'fc9'"):
        svd_factor(g, "fc9", 2)
    with pytest.raises(InputError, match="exactly one"):
        RankSpec(rank=3, energy=0.9)
    with pytest.raises(InputError, match="exactly one"):
        RankSpec()
    with pytest.raises(InputError, match="needs weights"):
        svd_compress(g.without_weights(), {"fc1": RankSpec(energy=0.9)})
    with pytest.raises(InputError, match="already exists"):
        svd_factor(svd_factor(g, "fc1", 3, names=("x", "fc2_a")), "fc2", 3)
    with pytest.raises(InputError, match="no layers"):
        svd_compress(g, {})


def test_cli_text_and_out_file(tmp_path, capsys):
    rng = np.random.default_rng(4)
    src = tmp_path / "mlp.npz"
    save_float_model(_mlp(rng), src)
    out = tmp_path / "mlp-svd.npz"
    assert main(["svd", str(src), "--layer", "fc1", "--rank", "4", "--layer", "fc2",
                 "--energy", "0.8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fc1" in text and "16x24" in text and f"wrote {out}" in text
    back = load_model(str(out))
    assert [lay.name for lay in back.layers][1:3] == ["fc1_a", "fc1_b"] and back.has_weights
    x = rng.normal(size=(3, 2, 3, 4)).astype(np.float32)
    assert run_float(back, x).shape == (3, 10)


def test_cli_json_on_zoo(capsys):
    assert main(["svd", "vgg16", "--layer", "fc6", "--rank", "500", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    (row,) = d["layers"]
    assert row["rank"] == 500 and round(100 * row["reduction"], 1) == 85.8
    assert row["rel_error"] is None and not d["has_weights"]
    assert d["params_before"] - d["params_after"] == 102760448 - 14592000


@pytest.mark.parametrize("argv,msg", [
    (["--rank", "3", "--layer", "fc6"], "must follow a --layer"),
    (["--layer", "fc6"], "has no --rank"),
    (["--layer", "fc6", "--rank", "3", "--energy", "0.5"], "more than one"),
    (["--layer", "fc6", "--rank", "3", "--layer", "fc6", "--rank", "4"], "given twice"),
    (["--layer", "conv1_1", "--rank", "3"], "not fc"),
    (["--layer", "fc6", "--rank", "4096"], "out of range"),
    (["--layer", "fc6", "--reduction", "1.5"], "reduction must be in"),
    (["--layer", "fc6", "--rank", "3", "--out", "x.txt"], "must name a .npz"),
])
def test_cli_refusals(argv, msg, capsys):
    assert main(["svd", "vgg16", *argv]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_balanced_split_quantizes_best():
    """Why A = √S·Vᵀ and B = U·√S (docs/svd.md): with one fractional length per tensor, putting
    all of S into one factor leaves its small-σ columns few significant bits. The docs' table
    comes from this computation with other sizes (m, n, r) and bw."""
    rng = np.random.default_rng(0)
    m, n, r, bw = 128, 512, 64, 8
    u, _ = np.linalg.qr(rng.normal(size=(m, m)))
    v, _ = np.linalg.qr(rng.normal(size=(n, m)))
    w = (u * (0.5 * np.arange(1, m + 1) ** -0.7)) @ v.T
    g = chain("one", (n,), [Linear("fc", (), in_features=n, out_features=m, bias=False)],
              {"fc": {"weight": w}})
    f = svd_factor(g, "fc", r)
    a, b = f.params["fc_a"]["weight"], f.params["fc_b"]["weight"]

    def q(x):  # bw-bit fixed point, fl just avoiding overflow of max|x|
        fl = bw - 1 - int(np.ceil(np.log2(np.abs(x).max())))
        return np.clip(np.rint(x * 2.0 ** fl), -2 ** (bw - 1), 2 ** (bw - 1) - 1) / 2.0 ** fl

    w_r = b @ a
    s = np.linalg.norm(b, axis=0)  # column i of B = U·√S has norm √σ_i
    s_full = s * s  # σ_i
    vt, us = a / s[:, None], b * s[None, :]  # S moved entirely into B
    balanced = np.linalg.norm(q(b) @ q(a) - w_r) / np.linalg.norm(w_r)
    lopsided = np.linalg.norm(q(us) @ q(vt) - w_r) / np.linalg.norm(w_r)
    assert np.allclose(us @ vt, w_r) and s_full[0] / s_full[-1] > 5
    assert balanced < 0.8 * lopsided  # measured: 0.0235 vs 0.0340
