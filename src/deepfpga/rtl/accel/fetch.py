"""Instruction fetch: prefetches words from PROG_ADDR into a FIFO, ahead of the decoder.

A burst is issued as soon as the FIFO has room reserved for all of it (so the R channel is
never blocked by fetch), up to `burst_limit_bytes` and never across 4 KiB. Beats are assembled
into 256-bit words; a word whose beats had an error response carries an error bit (the decoder
reports AXI_ERROR when it reaches it, in program order). `stop` ends prefetching (END or an
error); reads already issued still complete, and `start` empties the FIFO.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import FETCH_DEPTH, burst_limit_bytes, fetch_burst_words
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.fields import INDEX_BITS
from deepfpga.rtl.accel.load import _axi_read_signature

WORD_BYTES = spec.WORD_BITS // 8


class Fetch(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig) -> None:
        self.cfg = cfg
        if burst_limit_bytes(cfg) < WORD_BYTES:
            from deepfpga.errors import InputError

            raise InputError(f"accelerator config {cfg.name!r}: bursts of"
                             f" {burst_limit_bytes(cfg)} bytes are shorter than an instruction"
                             f" word ({WORD_BYTES} bytes); the fetch unit needs max_burst_bytes"
                             f" >= {WORD_BYTES}")
        super().__init__({
            "start": In(1), "prog_addr": In(spec.AXI_ADDR_BITS), "count": In(INDEX_BITS),
            "stop": In(1), "idle": Out(1),
            **_axi_read_signature(cfg),
            "w_valid": Out(1), "w_ready": In(1), "w_data": Out(spec.WORD_BITS + 1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.cfg
        dw = cfg.axi_data_bits
        beats_per_word = spec.WORD_BITS // dw
        max_words = fetch_burst_words(cfg)
        fifo = SyncFIFOBuffered(width=spec.WORD_BITS + 1, depth=FETCH_DEPTH)
        m.submodules.fifo = ResetInserter(self.start)(fifo)
        base, count = Signal(spec.AXI_ADDR_BITS), Signal(INDEX_BITS)
        reqd = Signal(INDEX_BITS)                        # words requested
        pending = Signal(range(FETCH_DEPTH + 1))         # requested, not yet in the FIFO
        addr = Signal(spec.AXI_ADDR_BITS)
        left, to_page, n, free = (Signal(INDEX_BITS) for _ in range(4))
        m.d.comb += [
            addr.eq(base + (reqd << 5)),
            left.eq(count - reqd),
            to_page.eq((spec.AXI_BOUNDARY_BYTES - addr[:12]) >> 5),
            n.eq(Mux(left < max_words, left, max_words)),
            free.eq(FETCH_DEPTH - fifo.level - pending),
        ]
        nw = Signal(INDEX_BITS)
        m.d.comb += nw.eq(Mux(to_page < n, to_page, n))
        running = Signal()
        issue = Signal()
        m.d.comb += issue.eq(running & ~self.stop & (left != 0) & (free >= n)
                             & (~self.ar_valid | self.ar_ready))
        with m.If(self.ar_valid & self.ar_ready):
            m.d.sync += self.ar_valid.eq(0)
        with m.If(issue):
            m.d.sync += [self.ar_valid.eq(1), self.ar_addr.eq(addr),
                         self.ar_len.eq(nw * beats_per_word - 1), reqd.eq(reqd + nw)]

        # beats -> words
        sr = Signal(spec.WORD_BITS)
        err = Signal()
        bcount = Signal(range(beats_per_word))
        beat = self.r_valid & self.r_ready
        m.d.comb += self.r_ready.eq(1)
        full_word = Signal(spec.WORD_BITS)
        if beats_per_word == 1:
            m.d.comb += full_word.eq(self.r_data)
        else:
            m.d.comb += full_word.eq(self.r_data << (spec.WORD_BITS - dw) | (sr >> dw))
        word_err = err | (self.r_resp != 0)
        done_word = beat & (bcount == beats_per_word - 1)
        with m.If(beat):
            m.d.sync += [sr.eq(full_word), bcount.eq(bcount + 1), err.eq(word_err)]
            with m.If(done_word):
                m.d.sync += [bcount.eq(0), err.eq(0)]
        m.d.comb += [fifo.w_en.eq(done_word),
                     fifo.w_data.eq(full_word | (word_err << spec.WORD_BITS))]
        m.d.sync += pending.eq(pending + Mux(issue, nw, 0) - done_word)
        m.d.comb += [self.w_valid.eq(fifo.r_rdy), fifo.r_en.eq(self.w_ready),
                     self.w_data.eq(fifo.r_data),
                     self.idle.eq((pending == 0) & ~self.ar_valid)]
        with m.If(self.start):
            m.d.sync += [base.eq(self.prog_addr), count.eq(self.count), reqd.eq(0),
                         running.eq(1)]
        return m
