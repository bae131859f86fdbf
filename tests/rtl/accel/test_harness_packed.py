"""Packed 4-bit weights (LOAD packed4) on the accelerator RTL under Verilator: a model with
4-bit CONV and FC weights compiled for `tiny` with 8-bit weight elements (odd rows, so pad
nibbles) bit-exact against the reference executor and the functional simulator; a packed LOAD
where it is not allowed stops with the functional simulator's error at the same instruction;
the timing model within the calibration goal (5 % per layer, 3 % per frame) of the RTL with
packed loads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepfpga.compiler import compile_model
from deepfpga.hw import arch, engines
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Buffer, Calc, End, Load, Program
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.rtl.accel.spec import ErrorCode
from deepfpga.sim.calibration import compare
from deepfpga.sim.functional import SimulationError, simulate
from deepfpga.sim.timing import simulate_timing

from .test_harness_programs import check_bit_exact

TINY8 = load_config("tiny").replace(name="tiny-w8", weight_bits=8)


def _net():
    # odd rows everywhere: 3·9 and 5 CONV weights per output channel, 45 and 17 FC inputs
    return chain("p4", (3, 10, 10), [
        Conv2d("c1", (), in_channels=3, out_channels=5, kernel=(3, 3), padding=(1, 1)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=5, out_channels=5, kernel=(1, 1)), ReLU("r2", ()),
        MaxPool2d("p2", ()),
        Flatten("f", ()), Linear("l1", (), in_features=20, out_features=17), ReLU("r3", ()),
        Linear("l2", (), in_features=17, out_features=7)])


def _compiled(seed: int):
    rng = np.random.default_rng(seed)
    graph = _net()
    q = random_qmodel(graph, rng, bw_d=TINY8.data_bits, bw_w=4)
    c = compile_model(q, TINY8)
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=(2, *graph.input_shape),
                     endpoint=True)
    return q, c, x


@pytest.mark.slow
def test_packed_weights_bit_exact_and_timed(accel_build):
    q, c, x = _compiled(4)
    ins = c.program.instructions
    packed = [k for k, i in enumerate(ins) if isinstance(i, Load) and i.packed4]
    roles = {(ins[k].buffer, ins[k].fc_weights) for k in packed}
    assert roles == {(Buffer.WEIGHT, 0), (Buffer.INPUT, 1)}
    assert any(ins[k].length % 2 for k in packed)
    check_bit_exact(accel_build, q, c, x, cfg=TINY8)
    from deepfpga.rtl.accel.driver import RtlRunner

    with RtlRunner(c, accel_build(TINY8)) as r:
        one = r.run(x[:1])
    cal = compare(c, one.trace, one.cycles[0], simulate_timing(c))
    # the calibration goal (test_timing_calibration) holds with packed loads
    for row in cal.layers:
        assert row.rtl > 0 and abs(row.error) <= 0.05, row
    assert abs(cal.frame.error) <= 0.03, cal.frame


@pytest.mark.slow
def test_packed_load_cycles_exact(accel_build):
    """Every LOAD of the model alone (packed weights with odd and even rows, CONV and FC, and
    the unpacked ones): the RTL's cycles from its start to its last element written are the
    read-channel cycles of engines.load_cycles (bursts, beats, element writes with the odd
    segments' stops) plus one constant, the same for packed and unpacked LOADs."""
    from deepfpga.rtl.accel.driver import RtlRunner

    _, c, x = _compiled(4)
    ins = c.program.instructions
    assert {i.length % 2 for i in ins if isinstance(i, Load) and i.packed4} == {0, 1}
    assert [s.instructions for s in c.manifest.segments] == [(0, len(ins))]
    last = len(ins) - 2
    offsets: dict[int, set[int]] = {0: set(), 1: set()}
    for ld in (i for i in ins if isinstance(i, Load)):
        # the LOAD alone, last before the END (the fetch has finished): the rest no-op CALCs
        alone = tuple(End() if j == last + 1 else dataclasses.replace(ld, pop_next=0,
                      push_next=0) if j == last else Calc(to=0, layer=i.layer)
                      for j, i in enumerate(ins))
        one = dataclasses.replace(c, program=Program(TINY8.hash(), alone))
        with RtlRunner(one, accel_build(TINY8)) as r:
            res = r.run(x[:1])
        assert res.ok, res.error_message
        seg = arch.load_segment_bytes(TINY8, ld.buffer, ld.fc_weights, ld.packed4, ld.length)
        _, bursts, beats = arch.dma_bursts(TINY8, ld.ddr_addr, seg, ld.n1, ld.stride1, ld.n2,
                                           ld.stride2)
        want = (engines.LOAD_ISSUE_CYCLES + engines.LOAD_TAIL_CYCLES + int(arch.load_dma_cycles(
            TINY8, bursts, beats, ld.length * ld.n1 * ld.n2,
            arch.load_split_segments(ld.length, ld.n1, ld.n2, ld.packed4))[0]))
        rtl = int(res.trace["end"][last] - res.trace["start"][last])
        offsets[ld.packed4].add(rtl - want)
    # one constant for every LOAD, packed or not: the trace's start and end around the read
    # channel's cycles of a LOAD alone (measured: 6)
    assert offsets[0] == offsets[1] and len(offsets[1]) == 1, offsets


def test_packed_load_refused_where_not_allowed(accel_build):
    _, c, x = _compiled(5)
    ins = list(c.program.instructions)
    k = next(k for k, i in enumerate(ins) if isinstance(i, Load) and i.buffer == Buffer.BIAS)
    ins[k] = dataclasses.replace(ins[k], packed4=1)
    bad = dataclasses.replace(c, program=Program(TINY8.hash(), tuple(ins)))
    with pytest.raises(SimulationError, match="packed4 LOAD into BIAS") as e:
        simulate(bad, x)
    assert e.value.index == k
    from deepfpga.rtl.accel.driver import run_compiled

    res = run_compiled(bad, x[:1], accel_build(TINY8))
    assert not res.ok
    assert (res.error, res.error_index) == (ErrorCode.BAD_FIELD, k), res.error_message
