"""Product-slot utilisation per layer: the lost slots, by cause, add up to the layer's slots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfpga.cli import main
from deepfpga.cli.compile import compile_spec
from deepfpga.hw import engines
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import CalcKind
from deepfpga.sim.timing import simulate_timing
from deepfpga.sim.utilisation import CAUSES, layer_utilisation

TARGETS = ("tiny", "zedboard", "zc706")


def _check_adds_up(model: str, target: str) -> None:
    cfg = load_config(target)
    compiled, _ = compile_spec(model, cfg)
    timing = simulate_timing(compiled)
    util = layer_utilisation(timing, compiled.program.instructions, cfg)
    assert [u.name for u in util] == [lt.name for lt in timing.layers]
    p = engines.grid_channels(cfg) * engines.bank_count(cfg)
    hz = cfg.clock_mhz * 1e6
    for u, lt in zip(util, timing.layers, strict=True):
        assert u.products_per_cycle == p
        assert u.cycles == round(lt.time_s * hz) > 0, u.name
        assert u.useful_macs + sum(u.lost.values()) == p * u.cycles, u.name
        assert all(v >= 0 for v in u.lost.values()), (u.name, u.lost)
        assert u.utilisation + sum(u.causes.values()) == pytest.approx(1.0)
        assert 0 < u.utilisation <= 1
        assert u.note().startswith(u.dominant[0].replace("_", " "))


@pytest.mark.parametrize("target", TARGETS)
def test_slots_add_up_fmnist_vgg(target):
    _check_adds_up("fmnist-vgg", target)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_slots_add_up_vgg16_svd(target):
    _check_adds_up("vgg16-svd", target)


@pytest.mark.parametrize("target", TARGETS)
def test_calc_slots_are_the_engine_cycles(target):
    """calc_slots splits exactly products_per_cycle × calc_engine_cycles, on random CALCs of
    every path (grid, loop, FC, empty, no-op)."""
    cfg = load_config(target)
    rng = np.random.default_rng(1)
    n = 500
    kind = rng.choice([CalcKind.CONV, CalcKind.FC], n)
    ti, to = rng.integers(0, 4000, n), rng.integers(0, 300, n)
    rows, cols = rng.integers(0, 20, n), rng.integers(0, 60, n)
    stride, pool = rng.integers(1, 5, n), rng.integers(0, 2, n)
    acc, fin = rng.integers(0, 2, n), rng.integers(0, 2, n)
    args = (cfg, kind, ti, to, rows, cols, stride, pool, acc, fin)
    parts = engines.calc_slots(*args)
    assert tuple(parts) == engines.CALC_SLOT_PARTS
    assert all((v >= 0).all() for v in parts.values())
    np.testing.assert_array_equal(sum(parts.values()),
                                  engines.grid_multipliers(cfg)
                                  * engines.calc_engine_cycles(*args))
    # the loop path and the grid's empty lanes both show up
    assert parts["loop_path"].any() and parts["idle_pixel_lanes"].any()


def test_fc_on_the_grid_loses_the_other_lanes():
    cfg = load_config("zedboard")
    b, p = engines.bank_count(cfg), engines.grid_multipliers(cfg)
    parts = engines.calc_slots(cfg, CalcKind.FC, 4 * b, 10, 1, 1, 1, 0, 0, 0)
    assert parts["products"] == 40 * b
    assert parts["fc_idle_convolvers"] == (p - b) * 10 * 4
    assert parts["fc_lane_remainder"] == 0


def test_simulate_shows_and_emits_the_breakdown(capsys):
    assert main(["simulate", "fmnist-vgg", "--target", "tiny", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    util = d["utilisation"]
    names = [lt["name"] for lt in d["timing"]["layers"]]
    assert [u["name"] for u in util[:len(names)]] == names
    for u in util[:len(names)]:
        assert set(u["causes"]) == set(CAUSES)
        assert u["useful_macs"] + sum(u["lost_slots"].values()) == u["slots"]
    assert {u["name"] for u in util[len(names):]} == set(d["timing"]["host_layers"])
    assert main(["simulate", "fmnist-vgg", "--target", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "why not 100 %" in out and "slots %" in out
    assert any(line.startswith("fc6") and "idle convolvers" in line
               for line in out.splitlines())
