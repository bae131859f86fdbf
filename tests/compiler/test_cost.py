"""compiler.cost: the closed-form cost model, against brute force and the generated program."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler import cost
from deepfpga.compiler.compile import architecture_model, compile_model, plan
from deepfpga.compiler.mapping import map_network
from deepfpga.compiler.tiling import Tiling, _conv_candidates, check_tiling, costs
from deepfpga.hw import arch
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Buffer, Calc, CalcKind, Load, Save
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel

TINY = load_config("tiny")


@pytest.mark.parametrize(("n_out", "s", "k", "p", "n_in"), [
    (14, 1, 5, 2, 14), (6, 2, 3, 0, 14), (55, 4, 11, 2, 227), (7, 1, 3, 1, 7)])
def test_extent_sum_matches_brute_force(n_out, s, k, p, n_in) -> None:
    for t in range(1, n_out + 1):
        want = 0
        for j0 in range(0, n_out, t):
            last = min(j0 + t, n_out) - 1
            want += min(n_in, last * s - p + k) - max(0, j0 * s - p)
        assert int(cost.extent_sum(n_out, np.array([t]), s, k, p, n_in)[0]) == want, t


def test_run_cycles_are_the_arch_dma_rule() -> None:
    from deepfpga.hw import engines

    nbytes = np.array([0, 1, 4096, 4097, 100_000])
    bursts, beats = engines.run_bursts(TINY, 0, nbytes)
    assert bursts.tolist() == [0, 1, 16, 17, 391]          # 256-byte bursts on tiny
    want = arch.load_dma_cycles(TINY, bursts, beats, nbytes // 2)
    assert cost.run_cycles(nbytes, 2, TINY).tolist() == np.where(nbytes > 0, want, 0).tolist()
    assert cost.run_transactions(nbytes, TINY).tolist() == bursts.tolist()
    save = arch.save_dma_cycles(TINY, bursts, beats, nbytes // 2)
    assert cost.run_cycles(nbytes, 2, TINY, save=True).tolist() == np.where(nbytes > 0, save,
                                                                             0).tolist()


def test_vectorised_costs_equal_one_at_a_time(small_net) -> None:
    st = map_network(architecture_model(small_net, TINY), TINY).stages[0]
    a = _conv_candidates(st, TINY)
    a.pop("_considered")
    d = cost.conv_costs(st, TINY, a["tr"], a["tc"], a["ti"], a["to"], a["order"], a["group"])
    for k in range(0, len(a["tr"]), max(1, len(a["tr"]) // 20)):
        t = Tiling(*(int(a[x][k]) for x in ("tr", "tc", "ti", "to")),
                   cost.ORDERS_CONV[int(a["order"][k])], int(a["group"][k]))
        assert not check_tiling(st, t, TINY)
        one = costs(st, t, TINY)
        assert {n: int(v[k]) for n, v in d.items()} == {n: one[n] for n in d}


POINTWISE = chain("pw", (8, 10, 10), [
    Conv2d("a", (), in_channels=8, out_channels=12, kernel=(1, 1)), ReLU("ra", ()),
    Conv2d("b", (), in_channels=12, out_channels=6, kernel=(1, 1), stride=(2, 2)),
    MaxPool2d("pb", ()), Flatten("f", ()), Linear("l", (), in_features=24, out_features=5)])


TINY8 = TINY.replace(name="tiny-w8", weight_bits=8)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("net", ["small", "pointwise", "packed"])
def test_cost_model_counts_match_the_program(seed: int, net: str, small_net) -> None:
    """The closed-form model and the generated code agree on bytes and CALCs, and the compute
    cycles agree with the timing simulator's per-instruction formulas (also for 1×1 layers:
    CONV1 CALCs, dense (to, ti) weight blocks; and for 4-bit weights stored two per byte with
    random tilings, so odd rows)."""
    rng = np.random.default_rng(seed)
    cfg = TINY8 if net == "packed" else TINY
    q = random_qmodel(POINTWISE if net == "pointwise" else small_net, rng, bw_d=16,
                      bw_w=4 if net == "packed" else 16)
    model = architecture_model(q.graph, cfg)
    stages = plan(model, cfg).mapping.stages
    force = {}
    for st in stages:
        for _ in range(500):
            if st.kind == "conv":
                ho, wo = st.conv_out
                t = Tiling(int(rng.integers(1, ho + 1)), int(rng.integers(1, wo + 1)),
                           int(rng.integers(1, st.in_channels + 1)),
                           int(rng.integers(1, st.out_channels + 1)),
                           str(rng.choice(["spatial", "weights"])), int(rng.integers(0, 3)))
            else:
                t = Tiling(1, 1, int(rng.integers(1, st.in_channels + 1)),
                           int(rng.integers(1, st.out_channels + 1)),
                           str(rng.choice(["out", "in"])), int(rng.integers(1, 4)))
            if not check_tiling(st, t, cfg):
                force[st.name] = t
                break
    c = compile_model(q, cfg, force=force)
    if net == "packed":
        assert all(i.packed4 for i in c.program.instructions if isinstance(i, Load)
                   and i.buffer != Buffer.BIAS and (i.buffer == Buffer.INPUT) == bool(i.fc_weights))
    for d in c.manifest.layers:
        a, b = d.instructions
        ins = c.program.instructions[a:b]
        fc = d.kind == "fc"
        got = {"load_in_bytes": 0, "load_w_bytes": 0, "save_bytes": 0, "calcs": 0,
               "compute_cycles": 0}
        for i in ins:
            if isinstance(i, Load):
                n = int(arch.load_segment_bytes(cfg, i.buffer, i.fc_weights, i.packed4,
                                                i.length)) * i.n1 * i.n2
                got["load_in_bytes" if i.buffer == Buffer.INPUT else "load_w_bytes"] += n
            elif isinstance(i, Save):
                got["save_bytes"] += i.length * i.n1 * i.n2 * cfg.data_bytes
            elif isinstance(i, Calc) and i.to:
                got["calcs"] += 1
                got["compute_cycles"] += int(arch.calc_cycles(
                    cfg, i.kind, i.ti, i.to, i.out_rows, i.out_cols, i.stride, i.pool,
                    i.accumulate, i.finalize))
        want = {k: d.cost[k] for k in got}
        assert got == want, (d.name, d.tiling)
        if net == "pointwise" and not fc:
            assert {i.kind for i in ins if isinstance(i, Calc) and i.to} == {CalcKind.CONV1}


