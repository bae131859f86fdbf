"""Cycles one CALC takes on the Datapath (calc_valid accepted → calc_done), as a formula.

The rule is the accelerator's, written once in `deepfpga.hw.engines` (the timing model and the
compiler's cost model use it too); this adds the refused CALC (it stops after its checks).
`tests/rtl/accel/test_calc_timing.py` checks it against amaranth.sim cycle for cycle.
docs/rtl.md ("Datapath") explains each term.
"""

from __future__ import annotations

from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.engines import (
    FIN_DRAIN_CYCLES,
    MAC_DRAIN_CYCLES,
    PIXEL_DRAIN_CYCLES,
    SETUP_CYCLES,
    block_width,
    datapath_cycles,
)
from deepfpga.hw.isa import Calc
from deepfpga.rtl.accel import spec

__all__ = ["FIN_DRAIN_CYCLES", "MAC_DRAIN_CYCLES", "PIXEL_DRAIN_CYCLES", "SETUP_CYCLES",
           "block_width", "calc_cycles"]

_ACC_OVERFLOW = spec.ErrorCode.ACC_OVERFLOW    # found while finalizing, after the MACs


def calc_cycles(cfg: AcceleratorConfig, ins: Calc, error: int = 0) -> int:
    """Cycles of `ins` from the cycle after calc_valid was accepted to calc_done (inclusive).
    `error`: the ErrorCode the CALC ends with (a refused CALC stops after its checks)."""
    if error and error != _ACC_OVERFLOW and ins.to and ins.ti:
        return SETUP_CYCLES + 1
    return int(datapath_cycles(cfg, ins.kind, ins.ti, ins.to, ins.out_rows, ins.out_cols,
                               ins.stride, ins.pool, ins.accumulate,
                               ins.finalize and not error))
