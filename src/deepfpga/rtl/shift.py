"""NL (ReLU) and Data Shift: contract steps 3 and 4.

Data shift by the run-time s = fl_acc - fl_out:
  s > 0: y = (acc + 2^(s-1)) >> s, computed as (acc >> s) + bit_{s-1}(acc) — the same number
         (write acc = q·2^s + r with 0 ≤ r < 2^s: both sides are q + [r ≥ 2^(s-1)]);
  s = 0: y = acc;   s < 0: y = acc << -s;
then y saturates to data_bits and `sat` flags it. Shifts are clamped to what can matter, which
is exact: for s ≥ acc_bits the result is 0 for every acc, and a left shift by data_bits or more
saturates every nonzero acc just as the unclamped shift would.
`Relu.enable` low and `DataShift.bypass` high pass the accumulator unchanged (partial-sum tiles).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.params import SHIFT_BITS, bits_for


class Relu(wiring.Component):
    """o = max(i, 0) when `enable`, else i; one register stage."""

    def __init__(self, width: int):
        self.width = width
        super().__init__({
            "i": In(stream.Signature(signed(width))),
            "o": Out(stream.Signature(signed(width))),
            "enable": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en),
                     self.busy.eq(self.o.valid)]
        x = self.i.payload
        with m.If(en):
            m.d.sync += [self.o.valid.eq(self.i.valid),
                         self.o.payload.eq(Mux(self.enable & (x < 0), 0, x))]
        return m


def shifted_layout(acc_bits: int) -> data.StructLayout:
    return data.StructLayout({"value": signed(acc_bits), "sat": 1})


class DataShift(wiring.Component):
    """Round-half-up shift by the signed run-time `shift`, saturate to data_bits, flag it.

    Four register stages: right shift, left shift, round, saturate. Output `value` is the saturated
    data_bits integer sign-extended to acc_bits (or the untouched accumulator when `bypass`).
    With `runtime_bits`, the saturation width is the run-time input `out_bits` (2..data_bits,
    held like `shift`) instead of data_bits (the CALC instruction's `out_bits`).
    """

    def __init__(self, acc_bits: int, data_bits: int, runtime_bits: bool = False):
        self.acc_bits, self.data_bits = acc_bits, data_bits
        self.runtime_bits = runtime_bits
        members = {
            "i": In(stream.Signature(signed(acc_bits))),
            "o": Out(stream.Signature(shifted_layout(acc_bits))),
            "shift": In(signed(SHIFT_BITS)),
            "bypass": In(1),
            "busy": Out(1),
        }
        if runtime_bits:
            members["out_bits"] = In(bits_for(data_bits))
        super().__init__(members)

    latency = 4

    def elaborate(self, platform):
        m = Module()
        a, d = self.acc_bits, self.data_bits
        # Clamped shift amounts; registered because they change only between tiles.
        rs = Signal(bits_for(a))
        ls = Signal(bits_for(d))
        s = self.shift
        m.d.sync += [
            rs.eq(Mux(s > a, a, Mux(s > 0, s, 0))),
            ls.eq(Mux(s < -d, d, Mux(s < 0, -s, 0))),
        ]

        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        # Stages A1, A2: u = ((acc · 2) >> rs) << ls, one barrel shifter per stage. Bit 0 of u
        # is the rounding bit bit_{rs-1}(acc) (0 when rs = 0); u >> 1 is the shifted value.
        v0, acc_0 = Signal(), Signal(signed(a))
        r = Signal(signed(a + 1))
        with m.If(en):
            m.d.sync += [v0.eq(self.i.valid), acc_0.eq(self.i.payload),
                         r.eq((self.i.payload << 1) >> rs)]
        va, acc_a = Signal(), Signal(signed(a))
        u = Signal(signed(a + 1 + d))
        with m.If(en):
            m.d.sync += [va.eq(v0), acc_a.eq(acc_0), u.eq(r << ls)]
        # Stage B: add the rounding bit.
        vb, acc_b = Signal(), Signal(signed(a))
        y = Signal(signed(a + d + 1))
        with m.If(en):
            m.d.sync += [vb.eq(va), acc_b.eq(acc_a), y.eq((u >> 1) + u[0])]
        m.d.comb += self.busy.eq(v0 | va | vb | self.o.valid)
        # Stage C: saturate to data_bits (or out_bits), or pass the accumulator through.
        if self.runtime_bits:
            # A left shift by data_bits saturates every nonzero value at any out_bits ≤ data_bits,
            # so the clamp of `ls` above stays exact.
            qmax, qmin = Signal(signed(d + 1)), Signal(signed(d + 1))
            top = Const(1, d + 1) << (self.out_bits - 1).as_unsigned()[:bits_for(d)]
            m.d.sync += [qmax.eq(top - 1), qmin.eq(-top)]
        else:
            qmax, qmin = (1 << (d - 1)) - 1, -(1 << (d - 1))
        over, under = y > qmax, y < qmin
        with m.If(en):
            m.d.sync += self.o.valid.eq(vb)
            with m.If(self.bypass):
                m.d.sync += [self.o.payload.value.eq(acc_b), self.o.payload.sat.eq(0)]
            with m.Else():
                m.d.sync += [
                    self.o.payload.value.eq(Mux(over, qmax, Mux(under, qmin, y))),
                    self.o.payload.sat.eq(over | under),
                ]
        return m
