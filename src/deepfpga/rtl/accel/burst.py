"""DMA building blocks shared by the LOAD and SAVE engines.

- `Chunks`: the n2 × n1 segments of a strided transfer as a stream of contiguous byte ranges
  (a whole row at once when its segments follow each other in DDR);
- `BurstSplitter`: contiguous ranges -> legal AXI4 INCR bursts: adjacent chunks are merged into
  one run, a burst never crosses 4 KiB and never exceeds `burst_limit_bytes` (≤ 256 beats);
- `ByteQueue`: a little-endian byte queue, variable numbers of bytes in and out per cycle (DDR
  beats <-> elements of 1..4 bytes).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import beat_bytes, burst_limit_bytes
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.fields import ROW_BITS

ADDR_BITS = spec.AXI_ADDR_BITS


class Chunks(wiring.Component):
    """Segment (j, i) of `seg` bytes at addr + j·s2 + i·s1, j < n2, i < n1, in order; with
    `merged` (the segments of a row are adjacent) one chunk of `row` bytes per row. `start`
    latches the parameters; the caller never starts an empty transfer."""

    def __init__(self) -> None:
        super().__init__({
            "start": In(1), "addr": In(ADDR_BITS), "n2": In(16), "s2": In(32), "n1": In(16),
            "s1": In(32), "seg": In(ROW_BITS), "row": In(ROW_BITS), "merged": In(1),
            "c_valid": Out(1), "c_ready": In(1), "c_addr": Out(ADDR_BITS),
            "c_bytes": Out(ROW_BITS), "c_last": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n2, s2, n1, s1 = (Signal.like(x) for x in (self.n2, self.s2, self.n1, self.s1))
        seg, row, merged = Signal.like(self.seg), Signal.like(self.row), Signal()
        j, i = Signal(16), Signal(16)
        row_addr, seg_addr = Signal(ADDR_BITS + 1), Signal(ADDR_BITS + 1)
        row_done = Signal()
        m.d.comb += [
            row_done.eq(merged | (i == n1 - 1)),
            self.c_addr.eq(seg_addr[:ADDR_BITS]),
            self.c_bytes.eq(Mux(merged, row, seg)),
            self.c_last.eq(row_done & (j == n2 - 1)),
        ]
        with m.If(self.start):
            m.d.sync += [n2.eq(self.n2), s2.eq(self.s2), n1.eq(self.n1), s1.eq(self.s1),
                         seg.eq(self.seg), row.eq(self.row), merged.eq(self.merged),
                         j.eq(0), i.eq(0), row_addr.eq(self.addr), seg_addr.eq(self.addr),
                         self.c_valid.eq(1)]
        with m.Elif(self.c_valid & self.c_ready):
            with m.If(self.c_last):
                m.d.sync += self.c_valid.eq(0)
            with m.Elif(row_done):
                # the next row exists, so its start lies inside the 32-bit space
                m.d.sync += [j.eq(j + 1), i.eq(0), row_addr.eq(row_addr + s2),
                             seg_addr.eq(row_addr + s2)]
            with m.Else():
                m.d.sync += [i.eq(i + 1), seg_addr.eq(seg_addr + s1)]
        return m


class BurstSplitter(wiring.Component):
    """Chunks -> bursts. A burst covers bytes [addr + off, addr + off + bytes) on len + 1 beats
    from the beat-aligned `addr`; `last` marks the burst that ends the transfer. Chunks that
    start where the current run ends are absorbed (one per cycle) while the burst is not full.
    The caller guarantees every chunk ends at or below 2^32."""

    def __init__(self, cfg: AcceleratorConfig) -> None:
        self.bb = beat_bytes(cfg)
        self.limit = burst_limit_bytes(cfg)
        super().__init__({
            "c_valid": In(1), "c_ready": Out(1), "c_addr": In(ADDR_BITS),
            "c_bytes": In(ROW_BITS), "c_last": In(1),
            "b_valid": Out(1), "b_ready": In(1), "b_addr": Out(ADDR_BITS), "b_len": Out(8),
            "b_off": Out(range(self.bb)), "b_bytes": Out(range(self.limit + 1)),
            "b_last": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bb, shift = self.bb, self.bb.bit_length() - 1
        w = ROW_BITS + 1
        a = Signal(w)                 # next byte of the run
        r = Signal(ROW_BITS)          # bytes of the run not yet in a burst
        got_last = Signal()           # the run holds the transfer's last chunk
        a0, page_end, lim_end, end_r, b_end = (Signal(w) for _ in range(5))
        full, absorb = Signal(), Signal()
        m.d.comb += [
            a0.eq(a & ~Const(bb - 1, w)),
            page_end.eq((a0 & ~Const(spec.AXI_BOUNDARY_BYTES - 1, w))
                        + spec.AXI_BOUNDARY_BYTES),
            lim_end.eq(Mux(a0 + self.limit < page_end, a0 + self.limit, page_end)),
            end_r.eq(a + r),
            full.eq(end_r >= lim_end),
            absorb.eq(self.c_valid & ~got_last
                      & ((r == 0) | ((self.c_addr == end_r) & ~full))),
            b_end.eq(Mux(full, lim_end, end_r)),
            self.c_ready.eq(absorb),
            self.b_valid.eq((r != 0) & ~absorb),
            self.b_addr.eq(a0),
            self.b_len.eq(((b_end - a0 + (bb - 1)) >> shift) - 1),
            self.b_off.eq(a - a0),
            self.b_bytes.eq(b_end - a),
            self.b_last.eq(got_last & (b_end == end_r)),
            self.idle.eq((r == 0) & ~got_last),
        ]
        with m.If(absorb):
            m.d.sync += got_last.eq(self.c_last)
            with m.If(r == 0):
                m.d.sync += [a.eq(self.c_addr), r.eq(self.c_bytes)]
            with m.Else():
                m.d.sync += r.eq(r + self.c_bytes)
        with m.Elif(self.b_valid & self.b_ready):
            m.d.sync += [a.eq(b_end), r.eq(end_r - b_end)]
            with m.If(self.b_last):
                m.d.sync += got_last.eq(0)
        return m


class ByteQueue(wiring.Component):
    """Up to `push_max` bytes in and `pop_max` bytes out per cycle, little-endian (byte 0 of
    `push_data` follows the bytes already queued; `head` starts with the oldest byte). The user
    keeps level − pop_n + push_n ≤ cap and pop_n ≤ level."""

    def __init__(self, cap: int, push_max: int, pop_max: int) -> None:
        self.cap, self.push_max, self.pop_max = cap, push_max, pop_max
        super().__init__({
            "push_en": In(1), "push_n": In(range(push_max + 1)), "push_data": In(8 * push_max),
            "pop_en": In(1), "pop_n": In(range(pop_max + 1)), "head": Out(8 * pop_max),
            "level": Out(range(cap + 1)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        sr = Signal(8 * self.cap)
        pn = Signal(range(self.pop_max + 1))
        keep = Signal(range(self.cap + 1))
        m.d.comb += [pn.eq(Mux(self.pop_en, self.pop_n, 0)), keep.eq(self.level - pn),
                     self.head.eq(sr[:8 * self.pop_max])]
        kept = sr >> Cat(Const(0, 3), pn)
        masked = Cat(*(self.push_data.word_select(k, 8) & (k < self.push_n).replicate(8)
                       for k in range(self.push_max)))
        pushed = (masked << Cat(Const(0, 3), keep))[:8 * self.cap]
        with m.If(self.push_en):
            m.d.sync += [sr.eq(kept | pushed), self.level.eq(keep + self.push_n)]
        with m.Else():
            m.d.sync += [sr.eq(kept), self.level.eq(keep)]
        return m
