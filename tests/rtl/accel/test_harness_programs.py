"""The compiler's real programs on the accelerator RTL under Verilator (tiny fmnist-like models
compiled for `tiny`): every tensor the accelerator writes, the outputs and the saturation
counts bit-exact against the reference executor and the functional simulator; multi-segment
programs with host layers in between; `deepfpga rtl run` on a compiled directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfpga.compiler import compile_model
from deepfpga.hw.config import load_config
from deepfpga.ir import LRN, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Softmax, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import execute
from deepfpga.rtl.accel.spec import ErrorCode
from deepfpga.sim.functional import simulate

TINY = load_config("tiny")


def _fmnist_like():
    return chain("fm", (1, 12, 12), [
        Conv2d("c1", (), in_channels=1, out_channels=4, kernel=(3, 3), padding=(1, 1)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=4, out_channels=6, kernel=(3, 3), padding=(1, 1)),
        ReLU("r2", ()), MaxPool2d("p2", ()),
        Flatten("f", ()), Linear("l1", (), in_features=54, out_features=16), ReLU("r3", ()),
        Linear("l2", (), in_features=16, out_features=10)])


def _kernels():
    return chain("k", (3, 14, 14), [
        Conv2d("c1", (), in_channels=3, out_channels=6, kernel=(5, 5), padding=(2, 2)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=6, out_channels=5, kernel=(3, 3), stride=(2, 2)),
        Flatten("f", ()), Linear("l1", (), in_features=45, out_features=30), ReLU("r2", ()),
        Linear("l2", (), in_features=30, out_features=7)])


def _host_between():
    return chain("h", (3, 13, 13), [
        Conv2d("c1", (), in_channels=3, out_channels=6, kernel=(3, 3), padding=(1, 1)),
        ReLU("r1", ()), MaxPool2d("hp", (), kernel=(3, 3), stride=(2, 2)), LRN("n", (), size=3),
        Conv2d("c2", (), in_channels=6, out_channels=5, kernel=(3, 3)), ReLU("r2", ()),
        Flatten("f", ()), Linear("l", (), in_features=80, out_features=7), Softmax("s", ())])


def check_bit_exact(accel_build, q, c, x, cfg=TINY):
    """Compiled model `c` of `q` on the RTL for inputs `x`: every tensor the accelerator writes
    and every output equal to the reference executor's and the functional simulator's, the
    saturation counts equal, each segment stopped at its END with no error (so no token left
    over), SAT_COUNT equal to the traced counts, one cycle count per image."""
    from deepfpga.rtl.accel.driver import run_compiled

    res = run_compiled(c, x, accel_build(cfg))
    assert res.ok, res.error_message
    assert res.error == ErrorCode.NONE
    fsim = simulate(c, x)
    ref = execute(q, x, keep="all")
    stage_outputs = {d.output for d in c.manifest.layers}
    assert stage_outputs <= set(res.layers)
    for name, got in res.layers.items():
        np.testing.assert_array_equal(got, ref.layers[name], err_msg=name)
        np.testing.assert_array_equal(got, fsim.layers[name], err_msg=name)
    for name, got in res.outputs.items():
        np.testing.assert_array_equal(got, fsim.outputs[name], err_msg=name)
    assert res.saturations == fsim.saturations
    assert res.executed == len(c.program.instructions)
    # every segment ended at its END, the register's saturation count matches the trace
    assert [s.end for s in res.segments] == [s.instructions[1] - 1 for s in c.manifest.segments]
    assert sum(s.sat_count for s in res.segments) == int(res.trace["sat"].sum())
    # one cycle count per image, all equal (the program does not depend on the data)
    assert len(res.cycles) == len(x) and len(set(res.cycles)) == 1
    assert all(v > 0 for v in res.layer_cycles.values())
    return res


def _check(accel_build, graph, seed, images=3):
    rng = np.random.default_rng(seed)
    q = random_qmodel(graph, rng, bw_d=TINY.data_bits, bw_w=TINY.weight_bits)
    c = compile_model(q, TINY)
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=(images, *graph.input_shape),
                     endpoint=True)
    return c, check_bit_exact(accel_build, q, c, x)


def test_fmnist_like_bit_exact(accel_build):
    _check(accel_build, _fmnist_like(), 1)


def test_5x5_and_stride2_bit_exact(accel_build):
    _check(accel_build, _kernels(), 2)


def test_host_layers_between_segments(accel_build):
    c, res = _check(accel_build, _host_between(), 3, images=2)
    assert c.manifest.partition.host == ("hp", "n", "s")
    assert len(res.segments) >= 2


def test_rtl_run_command(accel_build, tmp_path, capsys):
    from deepfpga.cli import main

    rng = np.random.default_rng(4)
    q = random_qmodel(_fmnist_like(), rng, bw_d=TINY.data_bits, bw_w=TINY.weight_bits)
    c = compile_model(q, TINY)
    c.write(tmp_path / "build")
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=(2, 1, 12, 12),
                     endpoint=True)
    np.save(tmp_path / "x.npy", x)
    accel_build(TINY)
    rc = main(["rtl", "run", str(tmp_path / "build"), "--input", str(tmp_path / "x.npy"),
               "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    y = np.load(info["output_file"], allow_pickle=False)
    want = simulate(c, x).output
    np.testing.assert_array_equal(y, want)
    assert info["images"] == 2 and info["cycles_per_image"][0] > 0


@pytest.mark.slow
def test_run_with_rtl(accel_build, tmp_path, capsys):
    """`deepfpga run --rtl` on a small trained-shape model: the RTL step checks and reports."""
    from tests.test_run import tiny_graph

    from deepfpga.cli import main
    from deepfpga.frontends.float_model import save_float_model

    rng = np.random.default_rng(1)
    save_float_model(tiny_graph(), tmp_path / "tiny.npz")
    np.savez(tmp_path / "data.npz", x=rng.random((6, 1, 12, 12), dtype=np.float32),
             y=rng.integers(0, 10, 6))
    accel_build(TINY)
    out = tmp_path / "out"
    rc = main(["run", str(tmp_path / "tiny.npz"), "--target", "tiny", "--data",
               str(tmp_path / "data.npz"), "--images", "6", "--calib-size", "4", "--out",
               str(out), "--rtl", "--rtl-images", "3", "--json"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    r = s["rtl"]
    assert r["ok"] and r["bit_exact"] and r["saturations_equal"] and r["images"] == 3
    assert r["values_compared"] > 0 and r["mismatches"] == 0
    assert [x["name"] for x in r["layers"]] == [x["name"] for x in s["layers"]]
    assert all(x["rtl_cycles"] > 0 and x["timing_cycles"] > 0 for x in r["layers"])
    assert "--rtl --rtl-images 3" in s["command"]
    assert [st["name"] for st in s["steps"]][-2:] == ["summary", "rtl"]
    html = (out / "report.html").read_text()
    assert "RTL co-simulation (Verilator)" in html and "RTL / timing" in html


def test_accelerator_error_in_a_later_segment(accel_build):
    """A LOAD out of its buffer in the second segment: the driver stops there and names the
    instruction by its global index, with the accelerator's error code."""
    import dataclasses

    from deepfpga.hw.isa import Load, Program
    from deepfpga.rtl.accel.driver import RtlRunner

    rng = np.random.default_rng(5)
    q = random_qmodel(_host_between(), rng, bw_d=TINY.data_bits, bw_w=TINY.weight_bits)
    c = compile_model(q, TINY)
    seg = c.manifest.segments[1]
    ins = list(c.program.instructions)
    k = next(i for i in range(*seg.instructions) if isinstance(ins[i], Load))
    ins[k] = dataclasses.replace(ins[k], buf_addr=TINY.input_buffer_entries + 5, buffer=0,
                                 fc_weights=0)
    damaged = dataclasses.replace(c, program=Program(TINY.hash(), tuple(ins)))
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=(1, 3, 13, 13),
                     endpoint=True)
    with RtlRunner(damaged, accel_build(TINY)) as r:
        res = r.run(x)
    assert not res.ok
    assert res.error == ErrorCode.LOAD_RANGE and res.error_index == k
    assert f"instruction {k} (LOAD): LOAD_RANGE" in res.error_message
    assert len(res.segments) == 2 and res.segments[0].end == seg.instructions[0] - 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_random_residual_networks_on_the_rtl(accel_build, seed):
    """Random residual networks (tests/sim/test_residual_random.py): the accelerator's
    convolutions and projections between the host's adds, bit-exact on the RTL."""
    from tests.sim.test_residual_random import random_residual

    rng = np.random.default_rng(700 + seed)
    g = random_residual(rng)
    q = random_qmodel(g, rng, bw_d=TINY.data_bits, bw_w=TINY.weight_bits, jitter=1)
    c = compile_model(q, TINY)
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=(1, *g.input_shape),
                     endpoint=True)
    res = check_bit_exact(accel_build, q, c, x)
    assert len(res.segments) >= 2        # host adds split the program into segments
