"""The grid's weight staging memory: per term t = i·9 + ky·3 + kx, the weights of a channel
group side by side (word t, lane u = w[o0+u, i, ky, kx]).

It is split into `staging_banks` banks by t mod S (row t // S): the S consecutive terms of one
channel that one wide WEIGHT read delivers land in S banks at one row, so PSTAGE fills S terms
per cycle (`hw.engines.staging_cycles`). The term read addresses every bank at row t // S and
picks bank t mod S the cycle after (the read's latency).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib.memory import Memory

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import grid_channels, operand_bits, staging_banks, staging_rows


@dataclass(frozen=True)
class StagingWrite:
    """One PSTAGE write: data[r] into bank r (if bit r of `mask`) at `row`, lane `lane` (the
    channel), when `we`."""

    we: Value
    row: Value
    lane: Value
    mask: Value
    data: list[Value]


def build_staging(m: Module, cfg: AcceleratorConfig, st: StagingWrite, t_addr: Value) -> Value:
    """The staging memory written by `st`; t_addr: the term read this cycle. Returns the staged
    word of that term (all channels' weights, operand_bits each), valid the cycle after."""
    n, ob = grid_channels(cfg), operand_bits(cfg)
    s = staging_banks(cfg)
    lb = s.bit_length() - 1
    words = []
    for r in range(s):
        mem = Memory(shape=unsigned(n * ob), depth=staging_rows(cfg), init=[])
        m.submodules[f"wstage{r}"] = mem
        wr = mem.write_port(granularity=ob)
        rd = mem.read_port()
        m.d.comb += [wr.addr.eq(st.row), wr.data.eq(Cat(*([st.data[r][:ob]] * n))),
                     wr.en.eq(Mux(st.we & st.mask[r], 1 << st.lane, 0)),
                     rd.addr.eq(t_addr >> lb)]
        words.append(rd.data)
    if not lb:
        return words[0]
    sel = Signal(lb)
    m.d.sync += sel.eq(t_addr[:lb])
    return Array(words)[sel]
