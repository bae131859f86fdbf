"""Timing simulator on the compiler's output, estimate_stage, and `deepfpga simulate`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from deepfpga import zoo
from deepfpga.cli import main
from deepfpga.compiler import compile_architecture, compile_model
from deepfpga.compiler.compile import architecture_model
from deepfpga.compiler.mapping import map_network
from deepfpga.compiler.tiling import Tiling, choose, estimate
from deepfpga.errors import InputError
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Load, Save
from deepfpga.ir import Conv2d, Graph, Linear, MaxPool2d
from deepfpga.ir.graph import chain
from deepfpga.ir.layers import LRN, Flatten, ReLU, Softmax
from deepfpga.quant.qfile import save_qmodel
from deepfpga.quant.random_model import random_qmodel
from deepfpga.sim.timing import estimate_stage, simulate_timing, stage_timing


def small_net(lrn: bool = False) -> Graph:
    layers = [
        Conv2d("c1", (), in_channels=3, out_channels=8, kernel=3, padding=1), ReLU("r1", ()),
        MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=8, out_channels=12, kernel=5, padding=2),
        ReLU("r2", ()),
    ]
    if lrn:  # a host layer in the middle: two accelerator segments
        layers.append(LRN("n2", ()))
    layers += [
        MaxPool2d("p2", ()), Flatten("f", ()),
        Linear("fc1", (), in_features=12 * 4 * 4, out_features=40), ReLU("r3", ()),
        Linear("fc2", (), in_features=40, out_features=10), Softmax("prob", ()),
    ]
    return chain("small", (3, 16, 16), layers)


@pytest.fixture(scope="module")
def tiny():
    return load_config("tiny")


@pytest.mark.parametrize("lrn", [False, True])
def test_compiled_program_per_layer_respects_the_bound(tiny, lrn: bool) -> None:
    compiled = compile_architecture(small_net(lrn), tiny)
    t = simulate_timing(compiled)
    assert [lt.name for lt in t.layers] == ["c1", "c2", "fc1", "fc2"]
    assert [lt.kind for lt in t.layers] == ["conv", "conv", "fc", "fc"]
    macs = {"c1": 3 * 8 * 9 * 16 * 16, "c2": 8 * 12 * 25 * 8 * 8, "fc1": 192 * 40,
            "fc2": 40 * 10}
    assert {lt.name: lt.ops for lt in t.layers} == {k: 2 * v for k, v in macs.items()}
    assert t.ops_source == "manifest"
    assert "prob" in t.host_layers and (not lrn or "n2" in t.host_layers)
    for lt in t.layers:
        assert lt.span_s >= lt.bound_s, lt.name
        assert lt.calc_cycles / (tiny.clock_mhz * 1e6) >= lt.bound_compute_s * (1 - 1e-12)
    assert sum(lt.time_s for lt in t.layers) == pytest.approx(t.seconds)
    assert t.unconsumed_tokens == {}
    # the engines' busy time fits in the frame; each engine completes in program order (a
    # DDR channel serves its engine's bursts one instruction after another)
    assert max(t.engine_busy_cycles.values()) <= t.cycles
    ins = compiled.program.instructions
    for kind in ("Load", "Calc", "Save"):
        k = [j for j, i in enumerate(ins) if type(i).__name__ == kind]
        assert (np.diff(t.end_cycles[k]) >= 0).all(), kind
        assert (np.diff(t.start_cycles[k]) >= 0).all(), kind


@pytest.mark.parametrize("name", ["fmnist-vgg", "fmnist-alex"])
@pytest.mark.parametrize("target", ["tiny", "zedboard"])
def test_fmnist_models_respect_the_bound(name: str, target: str) -> None:
    from deepfpga import zoo
    from deepfpga.frontends.torch_import import import_torch
    from deepfpga.zoo import fmnist

    try:
        graph = zoo.get(name)
    except InputError:      # trained weights not built yet: the architecture is all timing needs
        graph = import_torch(fmnist.build(name), fmnist.INPUT_SHAPE, name)
    cfg = load_config(target)
    compiled = compile_architecture(graph, cfg)
    t = simulate_timing(compiled)
    assert t.layers and t.ops_source == "manifest"
    for lt in t.layers:
        assert lt.span_s >= lt.bound_s, lt.name
    assert sum(lt.time_s for lt in t.layers) == pytest.approx(t.seconds)


def test_segments_add_up(tiny) -> None:
    """With a host layer between them, the second segment starts when the first has drained."""
    compiled = compile_architecture(small_net(lrn=True), tiny)
    ins = compiled.program.instructions
    ends = [k for k, i in enumerate(ins) if type(i).__name__ == "End"]
    assert len(ends) == 2
    t = simulate_timing(compiled)
    first = slice(0, ends[0])
    second = slice(ends[0] + 1, ends[1])
    assert t.start_cycles[second].min() >= t.end_cycles[first].max()


@pytest.mark.parametrize("to", [2, 6])
def test_bytes_per_layer_match_the_instructions(tiny, to: int) -> None:
    compiled = compile_architecture(small_net(), tiny,
                                    force={"c2": Tiling(8, 8, 4, to, "spatial")})
    t = simulate_timing(compiled)
    loaded: dict[int, int] = {}
    saved: dict[int, int] = {}
    for i in compiled.program.instructions:
        if isinstance(i, Load):
            eb = {0: 2, 1: 2, 2: tiny.bias_bytes}[i.buffer]
            loaded[i.layer] = loaded.get(i.layer, 0) + i.n1 * i.n2 * i.length * eb
        elif isinstance(i, Save):
            saved[i.layer] = saved.get(i.layer, 0) + i.n1 * i.n2 * i.length * 2
    assert {lt.index: lt.bytes_loaded for lt in t.layers} == loaded
    assert {lt.index: lt.bytes_saved for lt in t.layers} == saved
    c2 = next(lt for lt in t.layers if lt.name == "c2")
    assert c2.span_s >= c2.bound_s


def test_estimate_stage_agrees_with_the_closed_form(tiny) -> None:
    cfg = tiny
    m = map_network(architecture_model(small_net(), cfg), cfg)
    for st in m.stages:
        ch = choose(st, cfg)
        for t, _ in ch.top[:3]:
            sim = estimate_stage(st, t, cfg)
            closed = estimate(st, t, cfg)
            assert sim > 0 and 0.7 <= sim / closed <= 1.5, (st.name, t, sim, closed)
            timing = stage_timing(st, t, cfg)
            assert timing.seconds == sim
            assert timing.layers[0].ops == 2 * st.macs
    st = m.stages[0]
    with pytest.raises(InputError, match="infeasible"):
        estimate_stage(st, Tiling(4096, 4096, 3, 8, "spatial"), cfg)


# --- CLI ----------------------------------------------------------------------------------------

def test_cli_vgg16_svd_paper_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "vgg16-svd", "--target", "zc706-paper", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    t = d["timing"]
    assert d["paper"]["fps"] == 4.45 and d["paper"]["conv_gops"] == 187.8
    assert d["paper"]["gops"] == 137.0
    assert t["ops"] == pytest.approx(30.76e9, rel=2e-3)           # VGG16-SVD operations
    assert t["fps"] == pytest.approx(1 / t["seconds"])
    assert 0 < t["gops"] < t["conv_gops"] < d["peak_gops"]
    names = [lt["name"] for lt in t["layers"]]
    assert names[0] == "conv1_1" and names[-1] == "fc8" and "fc6a" in names
    for lt in t["layers"]:
        assert lt["span_s"] >= lt["bound_s"]
        if lt["kind"] == "fc":           # FC weights are used once: bandwidth-bound
            assert lt["limit"] == "bandwidth" and lt["mult_util"] < 0.05
    assert "prob" in t["host_layers"]


def test_cli_human_output(capsys: pytest.CaptureFixture[str], tiny) -> None:
    assert main(["simulate", "vgg16-svd", "--target", "zc706-paper"]) == 0
    out = capsys.readouterr().out
    assert "paper" in out and "4.450" in out and "187.800" in out and "fc6a" in out
    assert main(["simulate", "alexnet", "--target", "zc706-paper"]) == 0
    out = capsys.readouterr().out
    assert "paper" not in out.split("\n\n")[1] and "conv1" in out


def test_cli_outdir_and_qmodel(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               tiny) -> None:
    g = small_net()
    compiled = compile_architecture(g, tiny)
    compiled.write(tmp_path / "out")
    direct = simulate_timing(compiled)
    assert main(["simulate", str(tmp_path / "out"), "--target", "tiny", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["source"] == "compiled program" and d["timing"]["cycles"] == direct.cycles

    q = random_qmodel(g, np.random.default_rng(0), bw_d=16, bw_w=16)
    save_qmodel(tmp_path / "m.npz", q)
    expect = compile_model(q, tiny)
    t = simulate_timing(expect)
    assert main(["simulate", str(tmp_path / "m.npz"), "--target", "tiny", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["source"] == "quantized model" and d["timing"]["cycles"] == t.cycles


def test_cli_what_if_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["simulate", "vgg16-svd", "--target", "zc706-paper", "--json"]
    assert main(base) == 0
    t0 = json.loads(capsys.readouterr().out)["timing"]
    assert main([*base, "--set", "burst_overhead_cycles=200"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["target"] == "zc706-paper+burst_overhead_cycles=200"
    assert d["timing"]["cycles"] > t0["cycles"]
    assert main([*base, "--set", "nope=1"]) == 2
    assert "unknown config key 'nope'" in capsys.readouterr().err
    assert main([*base, "--set", "num_pe"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main([*base, "--set", "num_pe=0"]) == 2
    assert "'num_pe' must be a positive" in capsys.readouterr().err


def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny) -> None:
    compiled = compile_architecture(small_net(), tiny)
    out = tmp_path / "out"
    compiled.write(out)
    # compiled for tiny, simulated for another config
    assert main(["simulate", str(out), "--target", "zedboard"]) == 2
    assert "config hash mismatch" in capsys.readouterr().err
    data = bytearray((out / "program.bin").read_bytes())
    data[-5] ^= 0xFF
    (out / "program.bin").write_bytes(bytes(data))
    assert main(["simulate", str(out), "--target", "tiny"]) == 2
    assert "CRC32 mismatch" in capsys.readouterr().err
    (out / "manifest.json").unlink()
    assert main(["simulate", str(out), "--target", "tiny"]) == 2
    assert "manifest.json missing" in capsys.readouterr().err
    assert main(["simulate", "no-such-model", "--target", "tiny"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["simulate", "vgg16-svd", "--target", "no-such-target"]) == 2
    assert "neither a preset" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["simulate", str(tmp_path / "bad.npz"), "--target", "tiny"]) == 2
    assert "not a .npz" in capsys.readouterr().err


def test_simulate_reports_each_ddr_channel_and_the_bandwidth_used(capsys):
    """Read and write are two channels, each up to 100 % busy; the bandwidth share is the bytes
    both moved over what the DDR carries in the frame."""
    cfg = load_config("zedboard")
    t = simulate_timing(compile_architecture(zoo.get("fmnist-vgg"), cfg))
    assert main(["simulate", "fmnist-vgg", "--target", "zedboard"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if "cycles; busy" in s)
    got = [float(x) for x in re.findall(r"([\d.]+) %", line)]
    moved = sum(lt.bytes_loaded + lt.bytes_saved for lt in t.layers)
    want = [100 * t.engine_busy_cycles["LOAD"] / t.cycles,
            100 * t.engine_busy_cycles["SAVE"] / t.cycles,
            100 * moved / (cfg.ddr_bytes_per_cycle * t.cycles)]
    assert got == pytest.approx(want, abs=0.05)
    assert 0 < got[2] < 100
