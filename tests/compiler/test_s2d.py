"""Space-to-depth of the first layer (deepfpga.compiler.s2d): the rearranged layer computes the
original's integer sums exactly; the cost model's choice; the manifest's input transform."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepfpga.compiler import compile_architecture, compile_model, load_compiled, s2d
from deepfpga.compiler.artifact import Manifest
from deepfpga.compiler.compile import architecture_model, plan
from deepfpga.compiler.mapping import ModelInput, map_network
from deepfpga.compiler.tiling import choose
from deepfpga.errors import InputError
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import accumulator_bound
from deepfpga.sim.host import host_costs
from deepfpga.zoo import get

TINY = load_config("tiny")


def conv_int(x: np.ndarray, w: np.ndarray, s: int, p: tuple[int, int]) -> np.ndarray:
    """The contract's step 1 in plain numpy: (N, C, H, W) × (O, C, kh, kw) → exact int64 sums."""
    n, c, h, wd = x.shape
    _, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * p[0], wd + 2 * p[1]), np.int64)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + wd] = x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::s, ::s]
    return np.einsum("ncyxij,ocij->noyx", win, w.astype(np.int64))


def _stage(c: int, h: int, w: int, k: int, s: int, p: int, n: int = 4):
    g = chain("t", (c, h, w), [Conv2d("c", (), in_channels=c, out_channels=n, kernel=(k, k),
                                      stride=(s, s), padding=(p, p))])
    m = map_network(architecture_model(g, TINY.replace(max_stride=4)), TINY.replace(
        max_stride=4))
    (st,) = s2d.candidates(m) or (None,)
    return g, st


CASES = [(k, s, p) for k in (1, 2, 3, 5, 7, 11) for s in (1, 2, 3, 4) for p in (0, 1, 3)
         if p < k]


@pytest.mark.parametrize(("k", "s", "p"), CASES)
def test_every_variant_computes_the_original_sums(k: int, s: int, p: int) -> None:
    rng = np.random.default_rng(100 * k + 10 * s + p)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(k, k + 9)), int(rng.integers(k, k + 9))
    _, st = _stage(c, h, w, k, s, p)
    if st is None:          # a stride-1 1×1 layer has nothing to rearrange
        assert (k, s) == (1, 1)
        return
    x = rng.integers(-128, 128, size=(2, c, h, w))
    wt = rng.integers(-128, 128, size=(4, c, k, k))
    want = conv_int(x, wt, s, (p, p))
    trs = s2d.variants(st)
    assert trs, "no variant"
    kinds = {tr.kind for tr in trs}
    if k >= s > 1:
        assert "phases" in kinds            # the phase decomposition is always offered
    for tr in trs:
        new = s2d.transformed_stage(st, tr)
        xt, wt2 = tr.apply(x), tr.weights(wt)
        assert xt.shape[1:] == new.in_shape and wt2.shape[2:] == new.kernel
        got = conv_int(xt, wt2, 1, (0, 0))
        assert np.array_equal(got, want), tr
        # the same nonzero weights: the accumulator bound (and its refusal) is unchanged
        assert accumulator_bound(wt2, None, 8) == accumulator_bound(wt, None, 8)
        assert np.count_nonzero(wt2) == np.count_nonzero(wt)


def test_variants_cover_phases_intermediate_and_im2col() -> None:
    _, st = _stage(3, 64, 64, 7, 2, 3)
    by = {tr.offsets: s2d.transformed_stage(st, tr).kernel for tr in s2d.variants(st)}
    assert by[(2, 2)] == (4, 4)            # phases: ⌈7/2⌉
    assert by[(3, 3)] == (3, 3)            # one 3×3 sub-kernel, a few pixels repeated
    assert by[(7, 7)] == (1, 1)            # im2col: a CONV1 over 147 channels
    _, st = _stage(3, 227, 227, 11, 4, 0)
    tr = next(t for t in s2d.variants(st) if t.kind == "phases")
    assert tr.shape == (48, 57, 57) and s2d.transformed_stage(st, tr).kernel == (3, 3)


def test_two_readers_of_one_map_get_their_own_rearrangement() -> None:
    """The input read by two strided convolutions: each gets its own rearranged copy, the input
    itself leaves DDR; bit-exact on the functional simulator."""
    from deepfpga.ir import Add, Graph
    from deepfpga.quant.reference import execute
    from deepfpga.sim.functional import simulate

    two = Graph("two", (3, 13, 11), (
        Conv2d("c", ("input",), in_channels=3, out_channels=2, kernel=(5, 5), stride=(2, 2),
               padding=(2, 2)),
        Conv2d("d", ("input",), in_channels=3, out_channels=2, kernel=(1, 1), stride=(2, 2)),
        Add("a", ("c", "d"))), ("a",))
    m = map_network(architecture_model(two, TINY), TINY)
    assert [st.name for st in s2d.candidates(m)] == ["c", "d"]
    q = random_qmodel(two, np.random.default_rng(5), bw_d=16, bw_w=16)
    c = compile_model(q, TINY, space_to_depth="on")
    man = c.manifest
    assert [(t.reads, t.tensor) for t in man.host_transforms] == [("input", "c.s2d"),
                                                                   ("input", "d.s2d")]
    assert not man.tensors["input"].on_ddr
    assert man.host_transforms[1].shape == (3, 7, 6)        # the 1×1/2: a subsample
    x = np.random.default_rng(6).integers(-2**15, 2**15, size=(2, 3, 13, 11))
    ref, sim = execute(q, x, keep="all"), simulate(c, x)
    for name in ("c", "d", "a"):
        assert np.array_equal(sim.layers[name], ref.layers[name]), name


def test_cost_model_chooses_the_fastest_and_off_keeps_the_layer() -> None:
    cfg = load_config("zc706-8")
    g = get("alexnet")
    auto = compile_architecture(g, cfg)
    off = compile_architecture(g, cfg, space_to_depth="off")
    assert off.manifest.input_transform is None
    tr = auto.manifest.input_transform
    assert tr is not None and tr.kind == "phases" and tr.shape == (48, 57, 57)
    assert auto.manifest.layers[0].estimate_s < off.manifest.layers[0].estimate_s / 4
    # the winner is the least modelled time with the host's traffic, over every variant
    st = s2d.candidates(map_network(architecture_model(g, cfg), cfg))[0]
    hz, bw = cfg.clock_mhz * 1e6, cfg.ddr_bandwidth_gbps * 1e9
    times = {t: choose(s2d.transformed_stage(st, t), cfg).costs["cycles"] / hz
             + t.host_bytes(cfg.data_bytes) / bw for t in s2d.variants(st)}
    assert tr == min(times, key=times.__getitem__)
    assert times[tr] < choose(st, cfg).costs["cycles"] / hz
    # a layer that gains nothing stays as it is under "auto"
    deep = chain("d", (64, 28, 28), [Conv2d("c", (), in_channels=64, out_channels=96,
                                            kernel=(3, 3), padding=(1, 1))])
    assert compile_architecture(deep, cfg).manifest.input_transform is None
    with pytest.raises(InputError, match="space_to_depth must be"):
        compile_architecture(deep, cfg, space_to_depth="yes")  # type: ignore[arg-type]


def test_manifest_round_trip_and_host_cost(tmp_path) -> None:
    g = chain("t", (2, 17, 15), [Conv2d("c", (), in_channels=2, out_channels=5, kernel=(5, 5),
                                        stride=(2, 2), padding=(2, 2)), ReLU("r", ())])
    q = random_qmodel(g, np.random.default_rng(3), bw_d=8, bw_w=8)
    c = compile_model(q, TINY, space_to_depth="on")
    m = c.manifest
    tr = m.input_transform
    assert tr is not None
    assert not m.tensors[m.input].on_ddr and m.tensors[tr.tensor].on_ddr
    assert tr.tensor == "c.s2d" and tr.reads == "input"
    assert {r.name for r in m.regions if r.kind == "input"} == {f"t:{tr.tensor}"}
    assert Manifest.from_dict(m.to_dict()) == m
    c.write(tmp_path)
    again = load_compiled(tmp_path, TINY)
    assert again.manifest == m and again.ddr_image == c.ddr_image
    d = m.to_dict()
    d["host_transforms"][0]["offsets"] = [2]
    with pytest.raises(InputError, match=r"host_transforms\[\]\.offsets must be a list of 2"):
        Manifest.from_dict(d)
    with pytest.raises(InputError, match="not a DDR tensor"):
        dataclasses.replace(m, host_transforms=(dataclasses.replace(tr, tensor="r"),))
    with pytest.raises(InputError, match="reads 'nothing'"):
        dataclasses.replace(m, host_transforms=(dataclasses.replace(tr, reads="nothing"),))
    # the host reads the input and writes the rearranged copy; counted like a host layer
    cost = host_costs(c)[0]
    assert cost.op == "space-to-depth" and cost.layer == tr.tensor
    assert cost.bytes_moved == (2 * 17 * 15 + np.prod(tr.shape)) * TINY.data_bytes


def test_forced_tiling_applies_to_the_planned_stage() -> None:
    g = chain("t", (3, 23, 23), [Conv2d("c", (), in_channels=3, out_channels=4, kernel=(7, 7),
                                        stride=(2, 2), padding=(3, 3))])
    q = random_qmodel(g, np.random.default_rng(4), bw_d=8, bw_w=8)
    model = ModelInput(q.graph, q.input_format, q.formats, q.weights)
    p = plan(model, TINY)
    assert p.input_transform is not None
    st = p.mapping.stages[0]
    t = dataclasses.replace(p.choices[0].tiling, to=1)
    c = compile_model(q, TINY, force={"c": t})
    assert c.manifest.input_transform == p.input_transform
    assert c.manifest.layers[0].tiling == t and c.manifest.layers[0].in_shape == st.in_shape


def test_rearranged_copy_beyond_the_ddr_falls_back_to_the_layer_as_it_is(monkeypatch) -> None:
    """When the host's rearranged copies would take the DDR past what the instructions' addresses
    reach, the plan is made again without them, not refused."""
    from deepfpga.compiler import compile as comp

    g = chain("t", (2, 17, 15), [Conv2d("c", (), in_channels=2, out_channels=5, kernel=(5, 5),
                                        stride=(2, 2), padding=(2, 2)), ReLU("r", ())])
    q = random_qmodel(g, np.random.default_rng(3), bw_d=8, bw_w=8)
    mi = ModelInput(q.graph, q.input_format, q.formats, q.weights)
    off, on = plan(mi, TINY, space_to_depth="off"), plan(mi, TINY, space_to_depth="on")
    assert on.host_transforms and not off.host_transforms
    end_off, end_on = (max(r.end for r in p.regions.values()) for p in (off, on))
    assert end_on > end_off             # the copy is larger than the input it replaces
    monkeypatch.setattr(comp, "DDR_BYTES_MAX", end_off + 1)
    fell = plan(mi, TINY, space_to_depth="on")
    assert not fell.host_transforms and fell.regions == off.regions
    c = compile_model(q, TINY, space_to_depth="on")
    assert c.manifest.input_transform is None
    # with no transform to drop, the DDR limit is the model's own error
    monkeypatch.setattr(comp, "DDR_BYTES_MAX", end_off - 1)
    with pytest.raises(InputError, match="bytes of DDR"):
        plan(mi, TINY, space_to_depth="on")
