"""The output-channel-parallel MAC of the CALC engine: `group` = num_pe · convolvers_per_pe
output channels at once, sharing one input pixel per cycle.

A wide weight staging memory holds, per term t = i·9 + ky·3 + kx, the weights of the group's
channels side by side (word t, lane u = w[o0+u, i, ky, kx]); it is filled from WEIGHT once per
channel group (the group's weights are contiguous there). Each cycle one tile value (one INPUT
read) meets one staged word: `group` products, `group` exact sums. Depth: WEIGHT entries / group,
so any CONV with 9·ti ≤ depth runs here (others run on the one-product loop).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib.memory import Memory

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.accel.buffers import BufferGeometry, operand_bits


def group_size(cfg: AcceleratorConfig) -> int:
    return cfg.num_pe * cfg.convolvers_per_pe


def staging_depth(cfg: AcceleratorConfig) -> int:
    return max(9, BufferGeometry.of(cfg).weight_entries // group_size(cfg))


@dataclass(frozen=True)
class Lanes:
    sums: Array        # per lane, the exact sum (valid 1 cycle after the last term's stage 2)


def build_lanes(m: Module, cfg: AcceleratorConfig, *, st_we: Value, st_addr: Value,
                st_lane: Value, st_data: Value, t_addr: Value, pix: Value, v2: Value,
                first2: Value, old_we: Value, old_lane: Value, old_data: Value,
                keep_old: Value) -> Lanes:
    """st_*: write one staged weight (lane `st_lane` of word `st_addr`); t_addr: the staged word
    of the term issued this cycle (stage 0); pix: that term's tile value (stage 1, zero outside
    the tile); v2/first2: stage 2 valid/first-term flags; old_*: set a lane's old accumulator
    (used only if `keep_old`, else the sums start at 0)."""
    n = group_size(cfg)
    ob = operand_bits(cfg)
    a = cfg.acc_bits
    mem = Memory(shape=unsigned(n * ob), depth=staging_depth(cfg), init=[])
    m.submodules.wstage = mem
    wr = mem.write_port(granularity=ob)
    rd = mem.read_port()
    m.d.comb += [wr.addr.eq(st_addr), wr.data.eq(Cat(*([st_data[:ob]] * n))),
                 wr.en.eq(Mux(st_we, 1 << st_lane, 0)), rd.addr.eq(t_addr)]
    old = [Signal(signed(a), name=f"old{u}") for u in range(n)]
    sums = [Signal(signed(a + 18), name=f"lsum{u}") for u in range(n)]
    with m.If(old_we), m.Switch(old_lane):
        for u in range(n):
            with m.Case(u):
                m.d.sync += old[u].eq(old_data)
    for u in range(n):
        w = rd.data[u * ob:(u + 1) * ob].as_signed()
        prod = Signal(signed(2 * ob), name=f"lprod{u}")
        m.d.sync += prod.eq(pix * w)
        with m.If(v2):
            m.d.sync += sums[u].eq(Mux(first2, Mux(keep_old, old[u], 0), sums[u]) + prod)
    return Lanes(Array(sums))
