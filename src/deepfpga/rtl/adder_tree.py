"""The PE's Adder Tree (paper §6.2) in two parts.

`AdderTree` sums the convolvers' results: a free-running pipelined tree, like the convolvers
(no back-pressure; the PE's credit FIFO absorbs its results). `PartialSumAdd` then adds,
optionally, the intermediate result of earlier input-channel tiles (read back from the output
buffer, arriving on its own stream `psum`, one per convolution result in the same order) and the
bias aligned by `BiasShift` (contract step 2: exact left shift). It is a stalling stage: while
it holds a result that needs a partial sum that has not arrived, it waits.

Everything is exact at full width and finally cut to `acc_bits`; the compiler proves the
accumulator bound (contract step 1), so the cut never changes a value of a layer it accepted.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.params import bits_for
from deepfpga.rtl.pipeline import add_tree, tree_levels


class BiasShift(wiring.Component):
    """aligned = bias << shift, cut to acc_bits; registered (the bias is constant over a tile)."""

    def __init__(self, bias_bits: int, acc_bits: int):
        self.bias_bits, self.acc_bits = bias_bits, acc_bits
        super().__init__({
            "bias": In(signed(bias_bits)),
            "shift": In(bits_for(acc_bits - 1)),
            "aligned": Out(signed(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.aligned.eq(self.bias << self.shift)
        return m


def tree_out_bits(lanes: int, in_bits: int) -> int:
    return in_bits + tree_levels(lanes)


class AdderTree(wiring.Component):
    """o = Σ_lanes i[lane], one register per tree level (free-running, `latency` cycles)."""

    def __init__(self, lanes: int, in_bits: int):
        self.lanes, self.in_bits = lanes, in_bits
        self.out_bits = tree_out_bits(lanes, in_bits)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(in_bits), lanes),
                                     always_ready=True)),
            "o": Out(stream.Signature(signed(self.out_bits), always_ready=True)),
            "busy": Out(1),
        })

    @property
    def latency(self) -> int:
        return tree_levels(self.lanes)

    def elaborate(self, platform):
        m = Module()
        total, levels = add_tree(m, [self.i.payload[k] for k in range(self.lanes)], "lanes")
        valid = self.i.valid
        busy = 0
        for k in range(levels):
            r = Signal(name=f"v{k + 1}")
            m.d.sync += r.eq(valid)
            valid = r
            busy = busy | r
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.eq(total), self.busy.eq(busy)]
        return m


class PartialSumAdd(wiring.Component):
    """o = i (+ psum if add_psum) (+ bias << bias_shift if add_bias), at acc_bits."""

    def __init__(self, in_bits: int, acc_bits: int, bias_bits: int):
        self.in_bits, self.acc_bits, self.bias_bits = in_bits, acc_bits, bias_bits
        super().__init__({
            "i": In(stream.Signature(signed(in_bits))),
            "psum": In(stream.Signature(signed(acc_bits))),
            "o": Out(stream.Signature(signed(acc_bits))),
            "add_psum": In(1),
            "add_bias": In(1),
            "bias": In(signed(bias_bits)),
            "bias_shift": In(bits_for(acc_bits - 1)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.bias_shift = bshift = BiasShift(self.bias_bits, self.acc_bits)
        m.d.comb += [bshift.bias.eq(self.bias), bshift.shift.eq(self.bias_shift)]

        room = ~self.o.valid | self.o.ready
        have_psum = ~self.add_psum | self.psum.valid
        m.d.comb += [
            self.i.ready.eq(room & have_psum),
            self.psum.ready.eq(room & self.i.valid & self.add_psum),
            self.busy.eq(self.o.valid),
        ]
        psum = Mux(self.add_psum, self.psum.payload, 0)
        bias = Mux(self.add_bias, bshift.aligned, 0)
        with m.If(room):
            m.d.sync += [self.o.valid.eq(self.i.valid & have_psum),
                         self.o.payload.eq(self.i.payload + psum + bias)]
        return m
