"""The CALC's finalize stream (contract steps 2–5) from the accumulators to the data values:

    OUTPUT read ─► + bias << bias_shift ─► ReLU ─► shift, out_bits saturation ─► pool ─► OUTPUT
                   (64 bits: the functional simulator's int64)    └─► saturation count

It never stalls (every stage's output is always taken), so the reader issues one accumulator per
cycle and the writer puts channel o's values at out_addr + o·pitch.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import wiring

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import pool_width
from deepfpga.rtl.maxpool import MaxPool
from deepfpga.rtl.shift import DataShift, Relu

FIN_BITS = 64          # finalize width: the functional simulator's int64 (bias << 63 wraps there)


@dataclass(frozen=True)
class Finalize:
    busy: Value        # values still in the stream
    we: Value          # write a finalized value this cycle ...
    waddr: Value       # ... at this OUTPUT entry
    wdata: Value


def build_finalize(m: Module, cfg: AcceleratorConfig, f: dict[str, Value], *, issue: Value,
                   acc: Value, bias: Value, clear: Value, sat: Signal, npc: Value,
                   pitch: Value) -> Finalize:
    """`issue`: an accumulator read was issued this cycle; `acc`, `bias`: the synchronous read
    data (the cycle after); `clear` starts a CALC (pool counters, writer, `sat`)."""
    m.submodules.relu = relu = Relu(FIN_BITS)
    m.submodules.dshift = dshift = DataShift(FIN_BITS, cfg.data_bits, runtime_bits=True)
    m.submodules.pool = pool = MaxPool(FIN_BITS, cfg.data_bits, pool_width(cfg))
    v1 = Signal()
    m.d.sync += v1.eq(issue)
    aligned = (bias << f["bias_shift"])[:FIN_BITS].as_signed()
    vsum = (acc + Mux(f["has_bias"], aligned, 0))[:FIN_BITS].as_signed()
    m.d.comb += [
        relu.i.valid.eq(v1), relu.i.payload.eq(vsum), relu.enable.eq(f["relu"]),
        dshift.shift.eq(f["data_shift"]), dshift.bypass.eq(0),
        dshift.out_bits.eq(f["out_bits"]),
        pool.width.eq(f["out_cols"]), pool.height.eq(f["out_rows"]),
        pool.enable.eq(f["pool"]), pool.clear.eq(clear),
        pool.o.ready.eq(1),
    ]
    wiring.connect(m, relu.o, dshift.i)
    m.d.comb += [pool.i.valid.eq(dshift.o.valid),
                 pool.i.payload.eq(dshift.o.payload.value),
                 dshift.o.ready.eq(pool.i.ready)]
    with m.If(clear):
        m.d.sync += sat.eq(0)
    with m.Elif(dshift.o.valid & dshift.o.ready & dshift.o.payload.sat):
        m.d.sync += sat.eq(sat + 1)
    # writer: channel o at out_addr + o·pitch, npc values each
    wptr, wbase = Signal(21), Signal(21)
    wj = Signal(24)
    we = pool.o.valid
    with m.If(clear):
        m.d.sync += [wptr.eq(f["out_addr"]), wbase.eq(f["out_addr"]), wj.eq(0)]
    with m.Elif(we):
        with m.If(wj == npc - 1):
            m.d.sync += [wj.eq(0), wptr.eq(wbase + pitch), wbase.eq(wbase + pitch)]
        with m.Else():
            m.d.sync += [wj.eq(wj + 1), wptr.eq(wptr + 1)]
    return Finalize(busy=v1 | relu.busy | dshift.busy | pool.busy, we=we, waddr=wptr,
                    wdata=pool.o.payload[:cfg.acc_bits])
