"""compiler.tiling: the feasibility rules, the candidates, and the choice."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler.compile import architecture_model, compile_model
from deepfpga.compiler.mapping import map_network
from deepfpga.compiler.tiling import (
    Tiling,
    _conv_candidates,
    _fc_candidates,
    _tiling_at,
    check_tiling,
    choose,
    estimate,
    minimum_requirement,
)
from deepfpga.errors import InputError
from deepfpga.hw.arch import CALC_DIM_MAX
from deepfpga.hw.config import PRESETS, load_config
from deepfpga.quant.random_model import random_qmodel

TINY = load_config("tiny")


@pytest.fixture
def stages(small_net):
    return map_network(architecture_model(small_net, TINY), TINY).stages


@pytest.mark.parametrize(("stage", "t", "message"), [
    (0, Tiling(0, 1, 1, 1, "spatial"), "tile sizes must be ≥ 1"),
    (0, Tiling(3, 14, 3, 6, "spatial"), "pooled tiles must have even tr"),
    (0, Tiling(14, 14, 3, 6, "diagonal"), "CONV order must be one of"),
    (0, Tiling(2, 2, 3, 6, "spatial", 1), "SAVE groups need full-width tiles"),
    (0, Tiling(2, 2, 4, 6, "spatial"), "ti/to larger than the layer's channels"),
    (2, Tiling(2, 1, 5, 5, "out", 1), "FC tiles have tr = tc = 1"),
    (2, Tiling(1, 1, 45, 30, "sideways", 1), "FC order must be one of"),
])
def test_check_tiling_names_each_violation(stages, stage, t, message) -> None:
    bad = check_tiling(stages[stage], t, TINY)
    assert any(message in b for b in bad), bad


def test_field_limit_comes_from_the_isa(stages) -> None:
    st = stages[2]
    bad = check_tiling(st, Tiling(1, 1, 1, CALC_DIM_MAX + 1, "out", 1), TINY)
    assert any(f"> {CALC_DIM_MAX}" in b for b in bad)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_candidate_is_feasible(small_net, preset: str) -> None:
    """The vectorised filter and the one-tiling checker agree on every candidate."""
    cfg = load_config(preset)
    for st in map_network(architecture_model(small_net, cfg), cfg).stages:
        a = (_conv_candidates if st.kind == "conv" else _fc_candidates)(st, cfg)
        a.pop("_considered")
        assert len(a["ti"]) > 0
        for k in range(len(a["ti"])):
            t = _tiling_at(st, a, k)
            assert not check_tiling(st, t, cfg), (st.name, t)


def test_choice_is_the_fastest_up_to_the_tie_margin(stages) -> None:
    for st in stages:
        ch = choose(st, TINY, keep=8)
        secs = [c["seconds"] for _, c in ch.top]
        assert ch.costs["seconds"] <= min(secs) * 1.005 + 1e-15
        assert estimate(st, ch.tiling, TINY) == ch.costs["seconds"]
        assert ch.feasible <= ch.considered and not ch.forced


def test_minimum_requirement_names_the_short_buffer(stages) -> None:
    st = stages[0]
    cfg = TINY.replace(weight_buffer_bytes=64)
    msg = minimum_requirement(st, cfg)
    assert "layer 'c1' does not fit tiny" in msg and "weight buffer" in msg
    with pytest.raises(InputError, match="weight buffer"):
        choose(st, cfg)


def test_tiling_from_dict() -> None:
    t = Tiling(2, 3, 4, 5, "weights", 1)
    assert Tiling.from_dict(t.to_dict()) == t
    with pytest.raises(InputError, match="bad tiling"):
        Tiling.from_dict({"tr": 1})


def test_forced_tiling_checked(small_net) -> None:
    q = random_qmodel(small_net, np.random.default_rng(1), bw_d=16, bw_w=16)
    with pytest.raises(InputError, match=r"forced tiling .* for layer 'c1' is infeasible: .*"
                                         r"pooled tiles must have even tr"):
        compile_model(q, TINY, force={"c1": Tiling(3, 14, 3, 6, "spatial", 0)})
    with pytest.raises(InputError, match=r"accumulators \+ 2 staging banks = 1764 > 1500"
                                         r" output-buffer entries"):
        compile_model(q, TINY.replace(output_buffer_bytes=9000),
                      force={"c1": Tiling(14, 14, 3, 6, "spatial", 0)})
    with pytest.raises(InputError, match="unknown stage"):
        compile_model(q, TINY, force={"nope": Tiling(1, 1, 1, 1, "out", 1)})


