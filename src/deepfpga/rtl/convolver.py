"""The Convolver Complex: `lanes` 3×3 line-buffer convolvers sharing one window controller.

Each lane convolves one input channel: pixels arrive in row-major order, two line buffers (one
`Memory` per lane, two pixels wide: the rows above) and a 3×3 register window form the window,
9 multipliers and a pipelined adder tree give one result per accepted pixel once the window is
full. All lanes see the same pixel position each cycle (the input buffer supplies the same pixel
of `lanes` input channels), so the counters and control are shared and only the datapath is
replicated. A single convolver is `Convolver(lanes=1)`.

The stream is the *padded* tile (see padder.py): results are the "valid" windows, at stride 1
or 2 (run-time). A window is emitted for the pixel at (row, col) when row ≥ 2, col ≥ 2 and,
at stride 2, both are even. Width and height are run-time, width ≤ `max_width`.

Pipeline: accept → (line-buffer read) → window → products → adder tree levels → output.
It never stalls: both streams are `always_ready`, a result leaves exactly `latency` cycles after
its pixel entered, and the PE admits pixels only while it has room for every result in flight
(credit flow, see pe.py). So the wide datapath needs no global clock enable, only the window's
and the line buffers' own "pixel present" enables.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.params import KERNEL, ROW_BITS, TAPS, bits_for
from deepfpga.rtl.pipeline import add_tree, tree_levels
from deepfpga.rtl.raster import raster_position


class Convolver(wiring.Component):
    """Run-time inputs: width, height (of the padded frame), stride2, clear.

    Weight port: when `w_we` is high, `w_data` goes to weight `w_addr` = lane·9 + ky·3 + kx.
    Weights feed the multipliers directly, so load them only while no tile is in flight.
    """

    def __init__(self, lanes: int, data_bits: int, weight_bits: int, max_width: int):
        if max_width < KERNEL:
            raise ValueError(f"max_width {max_width} < {KERNEL}")
        self.lanes, self.data_bits, self.weight_bits = lanes, data_bits, weight_bits
        self.max_width = max_width
        self.out_bits = data_bits + weight_bits + 4
        self.cbits = bits_for(max_width)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(data_bits), lanes),
                                     always_ready=True)),
            "o": Out(stream.Signature(data.ArrayLayout(signed(self.out_bits), lanes),
                                      always_ready=True)),
            "width": In(self.cbits),
            "height": In(ROW_BITS),
            "stride2": In(1),
            "clear": In(1),
            "w_we": In(1),
            "w_addr": In(bits_for(lanes * TAPS - 1)),
            "w_data": In(signed(weight_bits)),
            "busy": Out(1),
        })

    @property
    def latency(self) -> int:
        """Register stages from an accepted pixel to its result (without stalls)."""
        return 3 + tree_levels(TAPS)

    def elaborate(self, platform):
        m = Module()
        d = self.data_bits
        accept = self.i.valid

        # --- position counters (shared by all lanes) ----------------------------------------
        row, col = raster_position(m, clear=self.clear, accept=accept, width=self.width,
                                   height=self.height, col_bits=self.cbits)
        window_ok = (row >= 2) & (col >= 2) & (~self.stride2 | (~row[0] & ~col[0]))

        # --- stage 1: the accepted pixel, while its column is read from the line buffers ----
        v1, ok1 = Signal(), Signal()
        c1 = Signal(self.cbits)
        m.d.sync += [v1.eq(accept), ok1.eq(window_ok), c1.eq(col)]
        # --- stage 2: the window holds a complete 3×3 neighbourhood -------------------------
        v2 = Signal()
        m.d.sync += v2.eq(v1 & ok1)

        weights = [[Signal(signed(self.weight_bits), name=f"w{lane}_{k}") for k in range(TAPS)]
                   for lane in range(self.lanes)]
        for lane in range(self.lanes):
            for k in range(TAPS):
                with m.If(self.w_we & (self.w_addr == lane * TAPS + k)):
                    m.d.sync += weights[lane][k].eq(self.w_data)

        sums = []
        for lane in range(self.lanes):
            # One memory word per column: the pixels of the two rows above (row-1 low, row-2 high).
            mem = Memory(shape=2 * d, depth=self.max_width, init=[])
            m.submodules[f"line{lane}"] = mem
            rd = mem.read_port()
            wr = mem.write_port()
            p1 = Signal(signed(d), name=f"p1_{lane}")
            m.d.sync += p1.eq(self.i.payload[lane])
            m.d.comb += [rd.en.eq(1), rd.addr.eq(col)]
            above1 = rd.data[:d].as_signed()
            above2 = rd.data[d:].as_signed()
            # Stage 1 → 2: the pixel pushes its column's rows down and enters the window.
            m.d.comb += [wr.en.eq(v1), wr.addr.eq(c1), wr.data.eq(Cat(p1, above1))]
            # win[r][c]: r = 0 top row, c = 0 left column.
            win = [[Signal(signed(d), name=f"win{lane}_{r}{c}") for c in range(KERNEL)]
                   for r in range(KERNEL)]
            column = [above2, above1, p1]
            with m.If(v1):
                for r in range(KERNEL):
                    m.d.sync += [win[r][0].eq(win[r][1]), win[r][1].eq(win[r][2]),
                                 win[r][2].eq(column[r])]
            # --- stage 3: the 9 products ----------------------------------------------------
            prods = []
            for k in range(TAPS):
                p = Signal(signed(d + self.weight_bits), name=f"prod{lane}_{k}")
                m.d.sync += p.eq(win[k // KERNEL][k % KERNEL] * weights[lane][k])
                prods.append(p)
            total, _ = add_tree(m, prods, f"sum{lane}")
            sums.append(total)

        # --- valid bits alongside the products and the tree; the last register is o.valid ----
        v = v2
        busy = (row != 0) | (col != 0) | v1 | v2
        for k in range(1 + tree_levels(TAPS)):
            r = Signal(name=f"v{3 + k}")
            m.d.sync += r.eq(v)
            v = r
            busy = busy | r
        m.d.comb += [self.o.valid.eq(v), self.busy.eq(busy)]
        for lane in range(self.lanes):
            m.d.comb += self.o.payload[lane].eq(sums[lane])
        return m
