"""A test-only stand-in for `deepfpga_accel`: the same ports (spec.py) and register map, doing
real AXI work, so the harness and its DDR model are tested without the real accelerator.

It fetches 32-byte words from PROG_ADDR one burst per word (fetching past PROG_COUNT:
FETCH_RANGE) and executes them:

- opcode 15: END (DONE, END_INDEX = its index);
- opcode 1, COPY: one read burst and one write burst of the same length, data passed through
  beat by beat (R → W). Fields, from bit 32: src (32), dst (32), arlen/awlen (8), burst type
  (2), size (3, 0 = full width); the test picks them, including illegal ones the DDR model must
  refuse. Traced on tr_load_*; a nonzero RRESP/BRESP sets AXI_ERROR;
- opcode 2, WAIT: waits `cycles` (bits 32..47) cycles, then ends with `sat` (bits 48..79)
  saturated values (SAT_COUNT += sat). Traced on tr_calc_*;
- opcode 3, MARK: starts and ends in the same cycle on tr_save_* (zero-length trace entries);
- anything else: UNKNOWN_OPCODE with ERROR_INDEX.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.spec import ErrorCode, Reg


def signature(data_bits: int) -> wiring.Signature:
    members = {}
    for name, d, w in (*spec.AXI_MASTER_PORTS, *spec.AXIL_SLAVE_PORTS, *spec.TRACE_PORTS):
        width = data_bits if w == "DW" else data_bits // 8 if w == "DW/8" else w
        members[name] = (Out if d == "out" else In)(width)
    return wiring.Signature(members)


class CopyDut(wiring.Component):
    def __init__(self, data_bits: int = 32, config_hash: int = 0):
        self.dw = data_bits
        self.config_hash = config_hash
        super().__init__(signature(data_bits))

    def elaborate(self, platform):  # noqa: C901 (one FSM)
        m = Module()
        dw, beat = self.dw, self.dw // 8
        beats_per_word = spec.WORD_BITS // dw
        size_log2 = beat.bit_length() - 1

        prog_addr = Signal(32)
        prog_count = Signal(32)
        err_code = Signal(8)
        err_index = Signal(32)
        cycles = Signal(64)
        sat = Signal(32)
        end_index = Signal(32)
        done = Signal()
        busy = Signal()
        error = Signal()
        start = Signal()
        idx = Signal(32)
        word = Signal(spec.WORD_BITS)
        wait = Signal(16)
        ar_done = Signal()
        aw_done = Signal()
        rerr = Signal()

        # --- AXI4-Lite slave ---
        lite_b = Signal()
        lite_r = Signal()
        lite_rdata = Signal(32)
        m.d.comb += [
            self.s_axil_awready.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~lite_b),
            self.s_axil_wready.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~lite_b),
            self.s_axil_bvalid.eq(lite_b),
            self.s_axil_arready.eq(~lite_r),
            self.s_axil_rvalid.eq(lite_r),
            self.s_axil_rdata.eq(lite_rdata),
        ]
        with m.If(self.s_axil_awready):
            m.d.sync += lite_b.eq(1)
            with m.Switch(self.s_axil_awaddr):
                with m.Case(Reg.CTRL):
                    m.d.comb += start.eq(self.s_axil_wdata[0] & ~busy)
                with m.Case(Reg.PROG_ADDR):
                    m.d.sync += prog_addr.eq(self.s_axil_wdata)
                with m.Case(Reg.PROG_COUNT):
                    m.d.sync += prog_count.eq(self.s_axil_wdata)
        with m.Elif(lite_b & self.s_axil_bready):
            m.d.sync += lite_b.eq(0)
        regs = {Reg.STATUS: Cat(done, busy, error), Reg.PROG_ADDR: prog_addr,
                Reg.PROG_COUNT: prog_count, Reg.ERROR_CODE: err_code,
                Reg.ERROR_INDEX: err_index, Reg.CYCLES_LO: cycles[:32],
                Reg.CYCLES_HI: cycles[32:], Reg.SAT_COUNT: sat, Reg.END_INDEX: end_index,
                Reg.ID: Const(spec.ID_VALUE, 32), Reg.CONFIG_HASH: Const(self.config_hash, 32)}
        with m.If(self.s_axil_arvalid & ~lite_r):
            m.d.sync += lite_r.eq(1)
            m.d.sync += lite_rdata.eq(0)
            with m.Switch(self.s_axil_araddr):
                for r, v in regs.items():
                    with m.Case(r):
                        m.d.sync += lite_rdata.eq(v)
        with m.Elif(lite_r & self.s_axil_rready):
            m.d.sync += lite_r.eq(0)

        m.d.comb += self.irq.eq(done | error)
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        def fail(code: ErrorCode) -> None:
            m.d.sync += [error.eq(1), busy.eq(0), err_code.eq(code), err_index.eq(idx)]

        op = word[:4]
        src, dst = word[32:64], word[64:96]
        blen, btype, bsize = word[96:104], word[104:106], word[106:109]
        size = Mux(bsize == 0, size_log2, bsize)
        m.d.comb += [
            self.m_axi_arsize.eq(size_log2), self.m_axi_arburst.eq(1),
            self.m_axi_awsize.eq(size), self.m_axi_awburst.eq(btype),
            self.m_axi_awaddr.eq(dst), self.m_axi_awlen.eq(blen),
            self.m_axi_wdata.eq(self.m_axi_rdata), self.m_axi_wlast.eq(self.m_axi_rlast),
            self.m_axi_wstrb.eq((1 << beat) - 1),
            self.tr_load_index.eq(idx), self.tr_calc_index.eq(idx),
            self.tr_save_index.eq(idx), self.tr_calc_sat.eq(word[48:80]),
        ]
        with m.FSM():
            with m.State("IDLE"), m.If(start):
                m.d.sync += [busy.eq(1), done.eq(0), error.eq(0), idx.eq(0), cycles.eq(0),
                             sat.eq(0), err_code.eq(0), err_index.eq(0)]
                m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(idx >= prog_count):
                    fail(ErrorCode.FETCH_RANGE)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.m_axi_arvalid.eq(1),
                                 self.m_axi_araddr.eq(prog_addr + (idx << 5)),
                                 self.m_axi_arlen.eq(beats_per_word - 1)]
                    with m.If(self.m_axi_arready):
                        m.next = "WORD"
            with m.State("WORD"):
                m.d.comb += self.m_axi_rready.eq(1)
                with m.If(self.m_axi_rvalid):
                    m.d.sync += word.eq(Cat(word[dw:], self.m_axi_rdata))
                    with m.If(self.m_axi_rresp != 0):
                        fail(ErrorCode.AXI_ERROR)
                        m.next = "IDLE"
                    with m.Elif(self.m_axi_rlast):
                        m.next = "DECODE"
            with m.State("DECODE"), m.Switch(op):
                with m.Case(15):
                    m.d.sync += [done.eq(1), busy.eq(0), end_index.eq(idx)]
                    m.next = "IDLE"
                with m.Case(1):
                    m.d.comb += self.tr_load_start.eq(1)
                    m.d.sync += [ar_done.eq(0), aw_done.eq(0), rerr.eq(0)]
                    m.next = "COPY_ADDR"
                with m.Case(2):
                    m.d.comb += self.tr_calc_start.eq(1)
                    m.d.sync += wait.eq(word[32:48])
                    m.next = "WAIT"
                with m.Case(3):
                    m.d.comb += [self.tr_save_start.eq(1), self.tr_save_end.eq(1)]
                    m.d.sync += idx.eq(idx + 1)
                    m.next = "FETCH"
                with m.Default():
                    fail(ErrorCode.UNKNOWN_OPCODE)
                    m.next = "IDLE"
            with m.State("COPY_ADDR"):
                m.d.comb += [self.m_axi_arvalid.eq(~ar_done), self.m_axi_araddr.eq(src),
                             self.m_axi_arlen.eq(blen), self.m_axi_awvalid.eq(~aw_done)]
                ar_now = ar_done | self.m_axi_arready
                aw_now = aw_done | self.m_axi_awready
                m.d.sync += [ar_done.eq(ar_now), aw_done.eq(aw_now)]
                with m.If(ar_now & aw_now):
                    m.next = "COPY_DATA"
            with m.State("COPY_DATA"):
                m.d.comb += [self.m_axi_wvalid.eq(self.m_axi_rvalid),
                             self.m_axi_rready.eq(self.m_axi_wready)]
                with m.If(self.m_axi_rvalid & self.m_axi_wready):
                    with m.If(self.m_axi_rresp != 0):
                        m.d.sync += rerr.eq(1)       # the write burst is still completed
                    with m.If(self.m_axi_rlast):
                        m.next = "COPY_RESP"
            with m.State("COPY_RESP"):
                m.d.comb += self.m_axi_bready.eq(1)
                with m.If(self.m_axi_bvalid):
                    with m.If((self.m_axi_bresp != 0) | rerr):
                        fail(ErrorCode.AXI_ERROR)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.tr_load_end.eq(1)
                        m.d.sync += idx.eq(idx + 1)
                        m.next = "FETCH"
            with m.State("WAIT"):
                with m.If(wait == 0):
                    m.d.comb += self.tr_calc_end.eq(1)
                    m.d.sync += [sat.eq(sat + word[48:80]), idx.eq(idx + 1)]
                    m.next = "FETCH"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
        return m


def verilog_text(data_bits: int = 32) -> str:
    from amaranth.back import verilog

    return verilog.convert(CopyDut(data_bits), name=spec.TOP_NAME, emit_src=False)


def word(op: int, **fields: int) -> bytes:
    """One 32-byte instruction word of the stand-in."""
    v = op
    if op == 1:
        fields.setdefault("burst", 1)
    pos = {"src": (32, 32), "dst": (64, 32), "len": (96, 8), "burst": (104, 2),
           "size": (106, 3), "cycles": (32, 16), "sat": (48, 32)}
    for k, x in fields.items():
        at, bits = pos[k]
        assert 0 <= x < 1 << bits, k
        v |= x << at
    return v.to_bytes(spec.WORD_BITS // 8, "little")
