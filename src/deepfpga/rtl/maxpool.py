"""2×2 stride-2 max pooling over a row-major stream, with its own line buffer.

Even rows: the maximum of each horizontal pair goes into the line buffer at column/2. Odd rows:
the pair's maximum is compared with the stored one and the result is emitted. Odd trailing
columns and rows are dropped (floor mode, no padding — the shapes a 2×2/2 pool after a tile
produces). Values are compared at `data_bits`: pooling runs after the data shift, on saturated
values (the contract allows pooling before or after the shift). `enable` low passes every item
through unchanged (bypass), at full `width`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.params import ROW_BITS, bits_for
from deepfpga.rtl.raster import raster_position


def _max(a, b):
    return Mux(a > b, a, b)


class MaxPool(wiring.Component):
    """Run-time: width, height (of the map being pooled), enable, clear."""

    def __init__(self, value_bits: int, data_bits: int, max_width: int):
        self.value_bits, self.data_bits, self.max_width = value_bits, data_bits, max_width
        self.cbits = bits_for(max_width)
        super().__init__({
            "i": In(stream.Signature(signed(value_bits))),
            "o": Out(stream.Signature(signed(value_bits))),
            "width": In(self.cbits),
            "height": In(ROW_BITS),
            "enable": In(1),
            "clear": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.data_bits
        en = Signal()
        accept = en & self.i.valid & self.enable
        row, col = raster_position(m, clear=self.clear, accept=accept, width=self.width,
                                   height=self.height, col_bits=self.cbits)

        mem = Memory(shape=signed(d), depth=max(1, self.max_width // 2), init=[])
        m.submodules.line = mem
        rd = mem.read_port()
        wr = mem.write_port()
        x = self.i.payload[:d].as_signed()
        left = Signal(signed(d))                 # the even-column value of the current pair
        pair = _max(left, x)
        odd_col, odd_row = col[0], row[0]
        # The stored maximum is read when the pair's left value arrives, used at its right one.
        m.d.comb += [
            rd.addr.eq(col >> 1), rd.en.eq(accept & ~odd_col),
            wr.addr.eq(col >> 1), wr.en.eq(accept & odd_col & ~odd_row), wr.data.eq(pair),
        ]
        with m.If(accept & ~odd_col):
            m.d.sync += left.eq(x)

        # Stage 1: the pair's maximum and the stored one (or the bypassed item); stage 2: output.
        v1, pool1 = Signal(), Signal()
        pair1, above1 = Signal(signed(d)), Signal(signed(d))
        item1 = Signal(signed(self.value_bits))
        with m.If(en):
            m.d.sync += [
                v1.eq(self.i.valid & (~self.enable | (odd_col & odd_row))),
                pool1.eq(self.enable), pair1.eq(pair), above1.eq(rd.data),
                item1.eq(self.i.payload),
            ]
            m.d.sync += [self.o.valid.eq(v1),
                         self.o.payload.eq(Mux(pool1, _max(above1, pair1), item1))]
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en),
                     self.busy.eq(v1 | self.o.valid)]
        return m
