"""The CALC engine's product grid: `channels` output channels × B pixels (B = the buffers'
banks) at once.

A wide weight staging memory (staging.py) holds, per term t = i·9 + ky·3 + kx, the weights of
the group's channels side by side (word t, lane u = w[o0+u, i, ky, kx]); it is filled from
WEIGHT once per channel group (the group's weights are contiguous there), B terms per cycle.
Each cycle one wide INPUT read (B consecutive tile values of one row: B output pixels at stride
1, one pixel otherwise) meets one staged word: channels × B products and as many exact sums.
Staging depth: WEIGHT entries / channels, so any CONV with 9·ti ≤ depth runs here (others run
on the one-accumulator loop).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Module, Mux, Signal, Value, signed

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import bank_count, grid_channels, operand_bits, sum_bits
from deepfpga.rtl.accel.staging import StagingWrite, build_staging


@dataclass(frozen=True)
class Grid:
    sums: list[list[Signal]]     # [channel][pixel lane], exact, ready 1 cycle after stage 2


def build_grid(m: Module, cfg: AcceleratorConfig, *, staging: StagingWrite, t_addr: Value,
               pix: list[Value], v2: Value, first2: Value, old_we: Value, old_chan: Value,
               old_lanes: list[Value], keep_old: Value) -> Grid:
    """staging: the staging memory's write (staging.py); t_addr: the staged word of the term
    issued this cycle (stage 0); pix: that term's B tile values (stage 1, zero outside the
    tile); v2/first2: stage 2 valid / first-term flags; old_*: set one channel's B
    old accumulators (used only if `keep_old`, else the sums start at 0)."""
    n = grid_channels(cfg)
    b = bank_count(cfg)
    ob = operand_bits(cfg)
    a = cfg.acc_bits
    word = build_staging(m, cfg, staging, t_addr)
    old = [[Signal(signed(a), name=f"old{u}_{j}") for j in range(b)] for u in range(n)]
    sums = [[Signal(signed(sum_bits(cfg)), name=f"gsum{u}_{j}") for j in range(b)]
            for u in range(n)]
    with m.If(old_we), m.Switch(old_chan):
        for u in range(n):
            with m.Case(u):
                m.d.sync += [old[u][j].eq(old_lanes[j]) for j in range(b)]
    for u in range(n):
        w = word[u * ob:(u + 1) * ob].as_signed()
        for j in range(b):
            prod = Signal(signed(2 * ob), name=f"gprod{u}_{j}")
            m.d.sync += prod.eq(pix[j] * w)
            with m.If(v2):
                start = Mux(keep_old, old[u][j], 0)
                m.d.sync += sums[u][j].eq(Mux(first2, start, sums[u][j]) + prod)
    return Grid(sums)


def channel_lanes(grid: Grid, chan: Value) -> list[Value]:
    """The B sums of channel `chan` (a run-time index)."""
    return [Array(grid.sums[u][j] for u in range(len(grid.sums)))[chan]
            for j in range(len(grid.sums[0]))]
