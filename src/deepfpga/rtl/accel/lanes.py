"""The CALC engine's product grid: `channels` output channels × B pixels (B = the buffers'
banks) at once.

A wide weight staging memory (staging.py) holds, per term t = i·9 + ky·3 + kx, the weights of
the group's channels side by side (word t, lane u = w[o0+u, i, ky, kx]); it is filled from
WEIGHT once per channel group (the group's weights are contiguous there), B terms per cycle.
Each cycle one wide INPUT read (B consecutive tile values of one row: B output pixels at stride
1, one pixel otherwise) meets one staged word: channels × B products and as many exact sums (at
≤ 8 bits on a DSP48E1, two channels' products per multiplier: engines.packs_pairs). Staging
depth: WEIGHT entries / channels, so any CONV with 9·ti ≤ depth runs here (others run on the
one-accumulator loop).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import (
    PACK_BIAS,
    PACK_SHIFT,
    bank_count,
    grid_channels,
    operand_bits,
    packs_pairs,
    sum_bits,
)
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
    w = [word[u * ob:(u + 1) * ob].as_signed() for u in range(n)]
    prod = _products(m, w, pix, packed=packs_pairs(cfg))
    for u in range(n):
        for j in range(b):
            with m.If(v2):
                start = Mux(keep_old, old[u][j], 0)
                m.d.sync += sums[u][j].eq(Mux(first2, start, sums[u][j]) + prod[u][j])
    return Grid(sums)


def _products(m: Module, w: list[Value], pix: list[Value], *, packed: bool
              ) -> list[list[Value]]:
    """prod[u][j] = pix[j]·w[u], registered (stage 2). Packed: channels u, u+1 share one
    multiplier per pixel lane (engines.PACK_SHIFT: why the split is exact); the bias goes into
    the DSP's post-adder, so the low field is its bits with the top one inverted, and the high
    field is read as it is."""
    ob = len(w[0])
    prod: list[list[Value]] = []
    for u in range(len(w)):
        if packed and u % 2 == 1:
            continue
        if packed and u + 1 < len(w):
            wp = Signal(signed(PACK_SHIFT + ob + 1), name=f"gwpk{u}")
            m.d.comb += wp.eq((w[u + 1] << PACK_SHIFT) + w[u])
            lo, hi = [], []
            for j, p in enumerate(pix):
                pk = Signal(signed(2 * PACK_SHIFT), name=f"gpk{u}_{j}")
                m.d.sync += pk.eq(p * wp + PACK_BIAS)
                lo.append(Cat(pk[:PACK_SHIFT - 1], ~pk[PACK_SHIFT - 1]).as_signed())
                hi.append(pk[PACK_SHIFT:].as_signed())
            prod += [lo, hi]
            continue
        row = []
        for j, p in enumerate(pix):
            one = Signal(signed(2 * ob), name=f"gprod{u}_{j}")
            m.d.sync += one.eq(p * w[u])
            row.append(one)
        prod.append(row)
    return prod


def channel_lanes(grid: Grid, chan: Value) -> list[Value]:
    """The B sums of channel `chan` (a run-time index)."""
    return [Array(grid.sums[u][j] for u in range(len(grid.sums)))[chan]
            for j in range(len(grid.sums[0]))]
