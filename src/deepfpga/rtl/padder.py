"""Zero padder: inserts padding pixels around a tile so the convolver only sees full windows.

Padding lives here, not in the convolver: the convolver computes "valid" windows of whatever
row-major stream it receives, and this stage turns an H×W tile into an
(pt+H+pb)×(pl+W+pr) stream by emitting zero pixels (all lanes at once) without consuming input.
Each side has its own run-time amount, so a tile at an image border is padded on that side only
while inner tiles bring their halo as real pixels.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.params import ROW_BITS, bits_for


class Padder(wiring.Component):
    """Combinational pass-through with frame counters; one padded pixel per handshake.

    Run-time inputs (hold stable for a whole tile): width, height (unpadded), pad_top,
    pad_bottom, pad_left, pad_right. `clear` starts a tile: pulse it once the configuration
    is set (the row/column flags are loaded from it), before the tile's first pixel.
    """

    def __init__(self, lanes: int, data_bits: int, max_width: int, max_pad: int):
        self.lanes, self.data_bits = lanes, data_bits
        self.max_width, self.max_pad = max_width, max_pad
        pix = data.ArrayLayout(signed(data_bits), lanes)
        cbits = bits_for(max_width + 2 * max_pad)
        pbits = bits_for(max_pad)
        super().__init__({
            "i": In(stream.Signature(pix)),
            "o": Out(stream.Signature(pix)),
            "width": In(cbits),
            "height": In(ROW_BITS),
            "pad_top": In(pbits),
            "pad_bottom": In(pbits),
            "pad_left": In(pbits),
            "pad_right": In(pbits),
            "clear": In(1),
            "busy": Out(1),
        })
        self._cbits = cbits

    def elaborate(self, platform):
        m = Module()
        row = Signal(ROW_BITS + 1)
        col = Signal(self._cbits + 1)
        # Frame bounds, registered: they change only between tiles. Compare values are
        # precomputed so the per-pixel logic is equality tests on registers.
        row_in_last = Signal.like(row)    # last real row
        col_in_last = Signal.like(col)
        row_first = Signal.like(row)      # first real row minus one (the row before it)
        col_first = Signal.like(col)
        last_col = Signal.like(col)
        last_row = Signal.like(row)
        m.d.sync += [
            row_in_last.eq(self.pad_top + self.height - 1),
            col_in_last.eq(self.pad_left + self.width - 1),
            row_first.eq(self.pad_top - 1),
            col_first.eq(self.pad_left - 1),
            last_col.eq(self.pad_left + self.width + self.pad_right - 1),
            last_row.eq(self.pad_top + self.height + self.pad_bottom - 1),
        ]
        # row_in / col_in: the current row / column holds real pixels. They are kept as flags,
        # updated as the counters move, so `inside` costs one AND gate.
        row_in, col_in = Signal(), Signal()
        inside = row_in & col_in
        last_real = (row == row_in_last) & (col == col_in_last)
        # Padding before a frame's last real pixel waits for input to be offered (so a frame
        # starts only when its tile does); padding after it flows out on its own.
        tail = Signal()
        m.d.comb += [
            self.busy.eq((row != 0) | (col != 0)),
            self.o.valid.eq(Mux(inside, self.i.valid, self.i.valid | tail)),
            self.o.payload.eq(Mux(inside, self.i.payload.as_value(), 0)),
            self.i.ready.eq(inside & self.o.ready),
        ]
        top_real, left_real = self.pad_top == 0, self.pad_left == 0
        with m.If(self.clear):
            m.d.sync += [row.eq(0), col.eq(0), tail.eq(0), row_in.eq(top_real),
                         col_in.eq(left_real)]
        with m.Elif(self.o.valid & self.o.ready):
            with m.If(col == last_col):
                m.d.sync += [col.eq(0), col_in.eq(left_real)]
                with m.If(row == last_row):
                    m.d.sync += [row.eq(0), row_in.eq(top_real)]
                with m.Else():
                    m.d.sync += row.eq(row + 1)
                    with m.If(row == row_first):
                        m.d.sync += row_in.eq(1)
                    with m.Elif(row == row_in_last):
                        m.d.sync += row_in.eq(0)
            with m.Else():
                m.d.sync += col.eq(col + 1)
                with m.If(col == col_first):
                    m.d.sync += col_in.eq(1)
                with m.Elif(col == col_in_last):
                    m.d.sync += col_in.eq(0)
            with m.If((col == last_col) & (row == last_row)):
                m.d.sync += tail.eq(0)
            with m.Elif(inside & last_real):
                m.d.sync += tail.eq(1)
        return m
