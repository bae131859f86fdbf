"""Cycles one CALC takes on the Datapath (calc_valid accepted → calc_done), as a formula.

Plain Python, no Amaranth: the timing model (issue 13) can import it. `tests/rtl/accel/
test_calc_timing.py` checks it against amaranth.sim cycle for cycle. docs/rtl.md ("Datapath")
explains each term.
"""

from __future__ import annotations

from deepfpga.compiler.isa import Calc, CalcKind
from deepfpga.hw.config import AcceleratorConfig

SETUP_CYCLES = 11 + 1       # Setup.STEPS products, then the checks
MAC_DRAIN_CYCLES = 4        # the MAC pipeline empties before FIN reads the accumulators
FIN_DRAIN_CYCLES = 9        # read → bias → ReLU → 4-stage shift → 2-stage pool → write
PIXEL_DRAIN_CYCLES = 3      # output-channel-parallel MAC: last term → sums ready


def block_width(banks: int, stride: int) -> int:
    """Output pixels of one grid block: those whose leftmost tap lies in one wide INPUT read
    of `banks` consecutive entries (pixel p reads entry lane stride·p)."""
    return max(1, banks // max(1, stride))


def calc_cycles(cfg: AcceleratorConfig, ins: Calc, error: int = 0) -> int:
    """Cycles of `ins` from the cycle after calc_valid was accepted to calc_done (inclusive).
    `error`: the ErrorCode the CALC ends with (a refused CALC stops after its checks)."""
    from deepfpga.hw.engines import bank_count, grid_channels, staging_depth

    if ins.to == 0 or ins.ti == 0:
        return 2
    if error and error != 10:               # refused by the checks (ACC_OVERFLOW runs first)
        return SETUP_CYCLES + 1
    pixels = ins.out_rows * ins.out_cols
    if pixels == 0:
        return SETUP_CYCLES + 1
    fc = ins.kind == CalcKind.FC
    b = bank_count(cfg)
    t = SETUP_CYCLES
    if not fc and 9 * ins.ti <= staging_depth(cfg):
        n = grid_channels(cfg)
        terms = 9 * ins.ti
        bw = block_width(b, ins.stride)
        blocks = ins.out_rows * -(-ins.out_cols // bw)
        for o0 in range(0, ins.to, n):
            g = min(n, ins.to - o0)
            pre = g if ins.accumulate else 1
            t += g * terms + blocks * (pre + terms + PIXEL_DRAIN_CYCLES + g)
    elif fc:
        t += ins.to * -(-ins.ti // b)
    else:
        t += ins.to * pixels * 9 * ins.ti
    t += MAC_DRAIN_CYCLES
    if ins.finalize and not error:
        t += ins.to * pixels + FIN_DRAIN_CYCLES - _pool_tail(ins)
    return t + 1


def _pool_tail(ins: Calc) -> int:
    """Cycles the stream ends early when the last accumulators emit no pooled value: floor
    mode drops an odd last row (or a single column) — 2 cycles — or an odd last column — 1."""
    if not ins.pool:
        return 0
    if ins.out_rows % 2 or ins.out_cols == 1:
        return 2
    return ins.out_cols % 2
