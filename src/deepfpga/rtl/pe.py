"""The Processing Element (paper §6.2): Convolver Complex → Adder Tree → NL → Data Shift → Pool.

    pix ─► Padder ─► Convolver(lanes=N) ─► AdderTree ─► FIFO ─► PartialSumAdd ─► Relu ─►
                 credit ◄─────────── level ─────────┘    psum ─┘  ▲ BiasShift(bias)
        ─► DataShift ─► MaxPool ─► o
               └─► sat_count

The wide part (N convolvers and the tree over them) never stalls: a pixel enters only while the
FIFO has room for every result that may still be in flight (credit), so back-pressure from `o`
or a late partial sum stops the narrow stages after the FIFO and, through the credit, the pixel
stream, but never needs a clock enable on the N·9 multipliers' pipeline.

One tile = one frame of `pix` (N input channels of the same pixel per beat, the unpadded
height×width tile in row-major order). The PE emits one value per output pixel on `o`:
- finish = 0: the raw accumulator (conv + psum? + bias?) for the output buffer (partial sums);
- finish = 1: bias → ReLU? → data shift/saturate → 2×2 max pool? (contract steps 2–5).
See docs/rtl.md for the protocol (configuration, weight loading, streams).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.adder_tree import AdderTree, PartialSumAdd
from deepfpga.rtl.convolver import Convolver
from deepfpga.rtl.maxpool import MaxPool
from deepfpga.rtl.padder import Padder
from deepfpga.rtl.params import ROW_BITS, SHIFT_BITS, PEParams, bits_for
from deepfpga.rtl.shift import DataShift, Relu

if TYPE_CHECKING:
    from deepfpga.hw.config import AcceleratorConfig

SAT_COUNT_BITS = 32


def pe_signature(p: PEParams) -> dict:
    pb = p.pad_bits
    return {
        "pix": In(stream.Signature(data.ArrayLayout(signed(p.data_bits), p.convolvers))),
        "psum": In(stream.Signature(signed(p.acc_bits))),
        "o": Out(stream.Signature(signed(p.acc_bits))),
        # weight port
        "w_we": In(1),
        "w_addr": In(p.weight_addr_bits),
        "w_data": In(signed(p.weight_bits)),
        # tile configuration (hold stable while busy, and from 2 cycles before the first pixel)
        "width": In(p.col_bits),
        "height": In(ROW_BITS),
        "pad_top": In(pb),
        "pad_bottom": In(pb),
        "pad_left": In(pb),
        "pad_right": In(pb),
        "stride2": In(1),
        "add_psum": In(1),
        "add_bias": In(1),
        "bias": In(signed(p.bias_bits)),
        "bias_shift": In(bits_for(p.acc_bits - 1)),
        "finish": In(1),
        "relu": In(1),
        "pool": In(1),
        "shift": In(signed(SHIFT_BITS)),
        "clear": In(1),
        # status
        "busy": Out(1),
        "sat_count": Out(SAT_COUNT_BITS),
    }


class PE(wiring.Component):
    """One Processing Element with `params.convolvers` 3×3 convolvers."""

    def __init__(self, params: PEParams | None = None, **kwargs: int):
        if params is None:
            params = PEParams(**kwargs)
        elif kwargs:
            raise TypeError("give either a PEParams or keyword parameters, not both")
        self.params = params
        super().__init__(pe_signature(params))

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig, **overrides: int) -> PE:
        return cls(PEParams.from_config(cfg, **overrides))

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.padder = pad = Padder(p.convolvers, p.data_bits, p.max_row_width,
                                           p.max_pad)
        m.submodules.conv = conv = Convolver(p.convolvers, p.data_bits, p.weight_bits,
                                             p.line_depth)
        m.submodules.tree = tree = AdderTree(p.convolvers, conv.out_bits)
        in_flight = conv.latency + tree.latency
        depth = 2 * (in_flight + 1)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=tree.out_bits, depth=depth)
        m.submodules.psadd = psadd = PartialSumAdd(tree.out_bits, p.acc_bits, p.bias_bits)
        m.submodules.relu = relu = Relu(p.acc_bits)
        m.submodules.dshift = dshift = DataShift(p.acc_bits, p.data_bits)
        m.submodules.pool = pool = MaxPool(p.acc_bits, p.data_bits, p.line_depth - 2)

        # Derived frame sizes, registered: they only change between tiles.
        wp = Signal(p.col_bits + 1)
        hp = Signal(ROW_BITS + 1)
        wo = Signal(p.col_bits + 1)
        ho = Signal(ROW_BITS + 1)
        wp_c = self.width + self.pad_left + self.pad_right
        hp_c = self.height + self.pad_top + self.pad_bottom
        m.d.sync += [
            wp.eq(wp_c), hp.eq(hp_c),
            wo.eq(Mux(self.stride2, ((wp_c - 3) >> 1) + 1, wp_c - 2)),
            ho.eq(Mux(self.stride2, ((hp_c - 3) >> 1) + 1, hp_c - 2)),
        ]

        m.d.comb += [
            pad.width.eq(self.width), pad.height.eq(self.height),
            pad.pad_top.eq(self.pad_top), pad.pad_bottom.eq(self.pad_bottom),
            pad.pad_left.eq(self.pad_left), pad.pad_right.eq(self.pad_right),
            pad.clear.eq(self.clear),
            conv.width.eq(wp), conv.height.eq(hp), conv.stride2.eq(self.stride2),
            conv.clear.eq(self.clear),
            conv.w_we.eq(self.w_we), conv.w_addr.eq(self.w_addr), conv.w_data.eq(self.w_data),
            psadd.add_psum.eq(self.add_psum), psadd.add_bias.eq(self.add_bias),
            psadd.bias.eq(self.bias), psadd.bias_shift.eq(self.bias_shift),
            relu.enable.eq(self.relu & self.finish),
            dshift.shift.eq(self.shift), dshift.bypass.eq(~self.finish),
            pool.width.eq(wo), pool.height.eq(ho), pool.enable.eq(self.pool & self.finish),
            pool.clear.eq(self.clear),
        ]

        # Credit: admit a pixel only if the FIFO can take every result still in flight.
        credit = Signal()
        m.d.comb += credit.eq(fifo.level <= depth - in_flight - 1)
        wiring.connect(m, wiring.flipped(self.pix), pad.i)
        m.d.comb += [
            conv.i.valid.eq(pad.o.valid & credit),
            conv.i.payload.eq(pad.o.payload),
            pad.o.ready.eq(credit),
            tree.i.valid.eq(conv.o.valid),
            tree.i.payload.eq(conv.o.payload),
            fifo.w_en.eq(tree.o.valid),
            fifo.w_data.eq(tree.o.payload),
            psadd.i.valid.eq(fifo.r_rdy),
            psadd.i.payload.eq(fifo.r_data.as_signed()),
            fifo.r_en.eq(psadd.i.ready),
        ]
        wiring.connect(m, wiring.flipped(self.psum), psadd.psum)
        wiring.connect(m, psadd.o, relu.i)
        wiring.connect(m, relu.o, dshift.i)
        # The saturation flag stays here (it is counted); the pool sees the value only.
        m.d.comb += [
            pool.i.valid.eq(dshift.o.valid),
            pool.i.payload.eq(dshift.o.payload.value),
            dshift.o.ready.eq(pool.i.ready),
        ]
        wiring.connect(m, pool.o, wiring.flipped(self.o))

        with m.If(self.clear):
            m.d.sync += self.sat_count.eq(0)
        with m.Elif(dshift.o.valid & dshift.o.ready & dshift.o.payload.sat):
            m.d.sync += self.sat_count.eq(self.sat_count + 1)

        m.d.comb += self.busy.eq(pad.busy | conv.busy | tree.busy | (fifo.level != 0)
                                 | psadd.busy | relu.busy | dshift.busy | pool.busy)
        return m
