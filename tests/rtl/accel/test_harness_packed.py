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
from deepfpga.hw.config import config_from_dict, load_config
from deepfpga.hw.isa import Buffer, Load, Program
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.rtl.accel.spec import ErrorCode
from deepfpga.sim.calibration import compare
from deepfpga.sim.functional import SimulationError, simulate
from deepfpga.sim.timing import simulate_timing

from .test_harness_programs import check_bit_exact

TINY8 = config_from_dict({**dataclasses.asdict(load_config("tiny")), "name": "tiny-w8",
                          "weight_bits": 8}, "tiny with 8-bit weights")


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
