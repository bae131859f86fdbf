"""Position counters of a row-major pixel stream (the convolver's and the pool's line buffers)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value

from deepfpga.rtl.params import ROW_BITS


def raster_position(m: Module, *, clear: Value, accept: Value, width: Value, height: Value,
                    col_bits: int) -> tuple[Signal, Signal]:
    """(row, col) of the next pixel: reset by `clear`, advanced by each accepted pixel, wrapping
    at the run-time `width` and `height`."""
    row = Signal(ROW_BITS)
    col = Signal(col_bits)
    with m.If(clear):
        m.d.sync += [row.eq(0), col.eq(0)]
    with m.Elif(accept):
        with m.If(col == width - 1):
            m.d.sync += col.eq(0)
            m.d.sync += row.eq(Mux(row == height - 1, 0, row + 1))
        with m.Else():
            m.d.sync += col.eq(col + 1)
    return row, col
