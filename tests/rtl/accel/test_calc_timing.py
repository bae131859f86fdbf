"""The CALC cycle formula (rtl/accel/timing.py, documented in docs/rtl.md) against amaranth.sim."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.hw.config import load_config
from deepfpga.hw.engines import staging_depth
from deepfpga.hw.isa import Calc, CalcKind
from deepfpga.rtl.accel import calc_check as cc
from deepfpga.rtl.accel.timing import calc_cycles


@pytest.mark.slow
def test_cycle_formula_matches_simulation():
    cfg = load_config("tiny").replace(
        name="timing", num_pe=2, convolvers_per_pe=8, data_bits=8, weight_bits=8, bias_bits=8,
        acc_bits=24, max_row_width=8, input_buffer_bytes=200, weight_buffer_bytes=120,
        bias_buffer_bytes=12, output_buffer_bytes=480, fc_buffer_bytes=100)
    rng = np.random.default_rng(3)
    cases = [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg)) for _ in range(40)]
    deep = staging_depth(cfg) // 9 + 1            # the one-product loop
    cases += [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg, kind=0, ti=deep, to=1,
                                                         in_rows=r, in_cols=4))
              for r in (2, 3)]
    # channel groups: to > num_pe·convolvers (4) on the parallel MAC, with and without pool
    cases += [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg, kind=0, ti=1, to=t,
                                                         out_rows=2, out_cols=r))
              for t, r in ((5, 2), (9, 3))]
    # 1×1 CALCs (CONV1): ti terms on the grid, and past the staging depth on the loop
    cases += [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg, kind=CalcKind.CONV1,
                                                         ti=int(rng.integers(1, 5))))
              for _ in range(10)]
    cases += [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg, kind=CalcKind.CONV1,
                                                         ti=staging_depth(cfg) + 1, to=1,
                                                         in_rows=2, in_cols=3))]
    cases += [(cc.random_state(rng, cfg), Calc(to=0)),
              (cc.random_state(rng, cfg), Calc(stride=0))]
    got = cc.simulate(cfg, cases)
    for (state, ins), r in zip(cases, got, strict=True):
        assert r.cycles == calc_cycles(cfg, ins, error=r.error), ins
        want = cc.oracle(cfg, state, ins)             # and the values (several channel groups)
        assert r.error == want.error and r.sat == want.sat, ins
        assert np.array_equal(r.out, want.out), ins
    assert any(r.error for r in got)
