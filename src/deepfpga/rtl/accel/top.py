"""`Accelerator`: the top level `deepfpga_accel` generated from an AcceleratorConfig.

    AXI4-Lite ─► AxiLiteRegs ─► run control (START, status, sticky error, cycles, SAT_COUNT)
    AXI4 AR/R ◄─► ReadArbiter ◄─┬─ Fetch ─► Decoder ─┬─► LOAD queue ─► LoadEngine ─► Datapath.ld_*
                                └──── LoadEngine    ├─► CALC queue ─► CalcIssue ──► Datapath.calc_*
    AXI4 AW/W/B ◄──────────────────── SaveEngine ◄─ └─► SAVE queue ─► SaveEngine ◄─ Datapath.sv_*
                                  TokenUnit (four counters) between the three engines

docs/rtl.md describes the whole design; `spec` is the contract with the harness.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.fileio import atomic_write_text
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import beat_bytes
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.axi import AxiLiteRegs, ReadArbiter
from deepfpga.rtl.accel.calc_issue import CalcIssue
from deepfpga.rtl.accel.dispatch import Decoder
from deepfpga.rtl.accel.fetch import WORD_BYTES, Fetch
from deepfpga.rtl.accel.fields import FLAGS, INDEX_BITS
from deepfpga.rtl.accel.load import LoadEngine
from deepfpga.rtl.accel.save import SaveEngine
from deepfpga.rtl.accel.tokens import TokenUnit

E = spec.ErrorCode


def top_signature(cfg: AcceleratorConfig) -> dict[str, object]:
    """The ports of spec.AXI_MASTER_PORTS, AXIL_SLAVE_PORTS and TRACE_PORTS (clk, rst implicit)."""
    dw = cfg.axi_data_bits
    widths = {"DW": dw, "DW/8": dw // 8}
    return {name: (In if d == "in" else Out)(widths.get(w, w))   # type: ignore[arg-type]
            for name, d, w in spec.AXI_MASTER_PORTS + spec.AXIL_SLAVE_PORTS + spec.TRACE_PORTS}


def _default_datapath(cfg: AcceleratorConfig) -> wiring.Component:
    from deepfpga.rtl.accel.datapath import Datapath

    return Datapath(cfg)


class Accelerator(wiring.Component):
    """The whole accelerator. `datapath(cfg)` builds the buffers + CALC engine (default: the
    project's `Datapath`); tests may pass a stand-in with the same port convention (LOADs
    arrive on the masked wide `ldw_*` port, whose lane count is `len(ldw_mask)`)."""

    def __init__(self, cfg: AcceleratorConfig,
                 datapath: Callable[[AcceleratorConfig], wiring.Component] | None = None):
        self.cfg = cfg
        self.datapath = (datapath or _default_datapath)(cfg)
        super().__init__(top_signature(cfg))

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one wiring list
        m = Module()
        cfg = self.cfg
        dp = self.datapath
        m.submodules.datapath = dp
        m.submodules.regs = regs = AxiLiteRegs(
            spec.ID_VALUE, int.from_bytes(cfg.hash()[:4], "little"))
        m.submodules.fetch = fetch = Fetch(cfg)
        m.submodules.arb = arb = ReadArbiter(cfg.axi_data_bits, 2)
        m.submodules.tokens = tok = TokenUnit()
        # LOAD elements reach the Datapath through its masked wide port (ldw_*): up to
        # len(ldw_mask) consecutive entries per cycle (one lane per bank of the real Datapath)
        lanes = len(dp.ldw_mask)
        dec, calc, save = Decoder(cfg), CalcIssue(), SaveEngine(cfg)
        load = LoadEngine(cfg, lanes)
        run_start = Signal()
        for name, sub in (("decode", dec), ("load", load), ("calc", calc), ("save", save)):
            m.submodules[name] = ResetInserter(run_start)(sub)
        engines = (load, calc, save)

        # --- AXI4-Lite --------------------------------------------------------------------
        for name, d, _ in spec.AXIL_SLAVE_PORTS:
            a, b = getattr(self, name), getattr(regs, name)
            m.d.comb += (b.eq(a) if d == "in" else a.eq(b))

        # --- run control ------------------------------------------------------------------
        busy, done, failed, halt, go = Signal(), Signal(), Signal(), Signal(), Signal()
        err_have, err_code, err_index = Signal(), Signal(8), Signal(INDEX_BITS)
        cycles, sat, end_index = Signal(64), Signal(32), Signal(INDEX_BITS)
        aligned = regs.prog_addr[:5] == 0
        room = Signal(33)
        eff_count = Signal(INDEX_BITS)
        m.d.comb += [
            run_start.eq(regs.start & ~busy),
            room.eq(((1 << spec.AXI_ADDR_BITS) - regs.prog_addr) >> (WORD_BYTES.bit_length() - 1)),
            eff_count.eq(Mux(regs.prog_count < room, regs.prog_count, room)),
        ]
        count = Signal(INDEX_BITS)
        m.d.sync += go.eq(run_start & aligned)
        with m.If(run_start):
            m.d.sync += [busy.eq(aligned), done.eq(0), failed.eq(~aligned), halt.eq(0),
                         err_have.eq(~aligned), err_code.eq(Mux(aligned, 0, E.FETCH_RANGE)),
                         err_index.eq(0), cycles.eq(0), sat.eq(0), end_index.eq(0),
                         count.eq(eff_count)]
        with m.Elif(regs.clear & ~busy):
            m.d.sync += [done.eq(0), failed.eq(0), err_have.eq(0), err_code.eq(0),
                         err_index.eq(0)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += [
            fetch.start.eq(go), fetch.prog_addr.eq(regs.prog_addr), fetch.count.eq(count),
            fetch.stop.eq(~dec.need_words),
            dec.start.eq(go), dec.count.eq(count), dec.halt.eq(halt),
            dec.f_valid.eq(fetch.w_valid), fetch.w_ready.eq(dec.f_ready),
            dec.f_data.eq(fetch.w_data),
            dec.engines_idle.eq(~load.busy & ~calc.busy & ~save.busy),
            tok.clear.eq(run_start),
        ]
        for e, eng in enumerate(engines):
            m.d.comb += [eng.q_valid.eq(getattr(dec, f"q{e}_valid")),
                         getattr(dec, f"q{e}_ready").eq(eng.q_ready),
                         eng.q_data.eq(getattr(dec, f"q{e}_data")),
                         eng.ok.eq(getattr(tok, f"e{e}_ok") & ~halt)]
            m.d.comb += [getattr(tok, f"e{e}_{f}").eq(getattr(eng, f)) for f in FLAGS]
            m.d.comb += [getattr(tok, f"e{e}_{k}").eq(getattr(eng, k))
                         for k in ("want", "take", "push")]

        # deadlock (safety net: the decoder's program-order check makes it unreachable)
        waiting = [eng.want & ~getattr(tok, f"e{e}_ok") for e, eng in enumerate(engines)]
        stuck, some, dl_index = Signal(), Signal(), Signal(INDEX_BITS)
        st, so = 1, 0
        idx = (1 << INDEX_BITS) - 1
        for e, eng in enumerate(engines):
            st = st & (waiting[e] | (~eng.busy & ~eng.q_valid)) & ~eng.active
            so = so | waiting[e]
            idx = Mux(waiting[e] & (eng.index < idx), eng.index, idx)
        m.d.comb += [stuck.eq(st), some.eq(so), dl_index.eq(idx)]
        deadlock = busy & ~halt & stuck & some & dec.blocked

        # sticky error: the earliest instruction in program order wins (ties: the earlier
        # source). Each source's (valid, code, index) is registered first and the five are
        # merged in a tree of pairwise picks (a min over (index, source), so the order of the
        # picks does not change the result): the decoder's checks no longer feed a chain of
        # five index comparisons in one cycle. The halt and the run's end see the registered
        # stage at once, so no instruction starts later and no cycle is added.
        sources = [(dec.err_valid, dec.err_code, dec.err_index, False),
                   (load.err_valid, load.err_code, load.err_index, True),
                   (calc.err_valid, calc.err_code, calc.err_index, True),
                   (save.err_valid, save.err_code, save.err_index, True),
                   (deadlock, E.TOKEN_UNDERFLOW, dl_index, True)]
        staged = []
        runtime = 0
        for k, (valid, code, index, halting) in enumerate(sources):
            sv, sc, si = Signal(name=f"err{k}_v"), Signal(8, name=f"err{k}_c"), \
                Signal(INDEX_BITS, name=f"err{k}_i")
            m.d.sync += [sv.eq(busy & valid), sc.eq(code), si.eq(index)]
            staged.append((sv, sc, si))
            if halting:
                runtime = runtime | valid
        pending = Signal()
        m.d.comb += pending.eq(Cat(*(v for v, _, _ in staged)).any())

        def pick(a: tuple, b: tuple) -> tuple:
            take = b[0] & (~a[0] | (b[2] < a[2]))
            return a[0] | b[0], Mux(take, b[1], a[1]), Mux(take, b[2], a[2])

        cands = [(err_have, err_code, err_index), *staged]
        while len(cands) > 1:
            cands = [pick(cands[j], cands[j + 1]) if j + 1 < len(cands) else cands[j]
                     for j in range(0, len(cands), 2)]
        h, c, i = cands[0]
        with m.If(pending & ~run_start & ~(regs.clear & ~busy)):
            m.d.sync += [err_have.eq(h), err_code.eq(c), err_index.eq(i)]
        with m.If(busy):
            m.d.sync += halt.eq(halt | runtime)
        with m.If(calc.tr_end):
            m.d.sync += sat.eq(sat + calc.sat)
        quiet = ~load.active & ~calc.active & ~save.active & fetch.idle & ~go
        with m.If(busy & dec.finished & quiet):
            m.d.sync += [busy.eq(0), done.eq(~(err_have | pending)), failed.eq(err_have | pending)]
            with m.If(dec.end_ok & ~err_have & ~pending):
                m.d.sync += end_index.eq(dec.end_index)
        m.d.comb += [
            regs.status.eq(Cat(done, busy, failed)), regs.error_code.eq(err_code),
            regs.error_index.eq(err_index), regs.cycles.eq(cycles), regs.sat_count.eq(sat),
            regs.end_index.eq(end_index), self.irq.eq(done | failed),
        ]

        # --- AXI4 master: reads (fetch = client 0, LOAD = client 1) ------------------------
        size = (beat_bytes(cfg)).bit_length() - 1
        m.d.comb += [
            self.m_axi_araddr.eq(arb.araddr), self.m_axi_arlen.eq(arb.arlen),
            self.m_axi_arsize.eq(size), self.m_axi_arburst.eq(1),
            self.m_axi_arvalid.eq(arb.arvalid), arb.arready.eq(self.m_axi_arready),
            arb.rvalid.eq(self.m_axi_rvalid), self.m_axi_rready.eq(arb.rready),
            arb.rlast.eq(self.m_axi_rlast),
        ]
        for k, client in enumerate((fetch, load)):
            m.d.comb += [
                getattr(arb, f"c{k}_ar_valid").eq(client.ar_valid),
                client.ar_ready.eq(getattr(arb, f"c{k}_ar_ready")),
                getattr(arb, f"c{k}_ar_addr").eq(client.ar_addr),
                getattr(arb, f"c{k}_ar_len").eq(client.ar_len),
                client.r_valid.eq(getattr(arb, f"c{k}_r_valid")),
                getattr(arb, f"c{k}_r_ready").eq(client.r_ready),
                client.r_data.eq(self.m_axi_rdata), client.r_resp.eq(self.m_axi_rresp),
                client.r_last.eq(self.m_axi_rlast),
            ]
        # --- AXI4 master: writes (SAVE) ----------------------------------------------------
        m.d.comb += [
            self.m_axi_awaddr.eq(save.aw_addr), self.m_axi_awlen.eq(save.aw_len),
            self.m_axi_awsize.eq(size), self.m_axi_awburst.eq(1),
            self.m_axi_awvalid.eq(save.aw_valid), save.aw_ready.eq(self.m_axi_awready),
            self.m_axi_wdata.eq(save.w_data), self.m_axi_wstrb.eq(save.w_strb),
            self.m_axi_wlast.eq(save.w_last), self.m_axi_wvalid.eq(save.w_valid),
            save.w_ready.eq(self.m_axi_wready),
            save.b_valid.eq(self.m_axi_bvalid), save.b_resp.eq(self.m_axi_bresp),
            self.m_axi_bready.eq(save.b_ready),
        ]

        # --- Datapath ----------------------------------------------------------------------
        m.d.comb += [
            dp.ldw_valid.eq(load.ld_valid), load.ld_ready.eq(dp.ldw_ready),
            dp.ldw_buf.eq(load.ld_buf), dp.ldw_addr.eq(load.ld_addr),
            dp.ldw_mask.eq((Const(1, lanes + 1) << load.ld_count) - 1),
            dp.ldw_data.eq(Cat(*(load.ld_wide[j] for j in range(lanes)))),
        ]
        m.d.comb += [
            dp.sv_req_valid.eq(save.sv_req_valid), save.sv_req_ready.eq(dp.sv_req_ready),
            dp.sv_req_addr.eq(save.sv_req_addr),
            save.sv_rsp_valid.eq(dp.sv_rsp_valid), dp.sv_rsp_ready.eq(save.sv_rsp_ready),
            save.sv_rsp_data.eq(dp.sv_rsp_data),
            dp.calc_valid.eq(calc.calc_valid), calc.calc_ready.eq(dp.calc_ready),
            dp.calc_word.eq(calc.calc_word), calc.calc_done.eq(dp.calc_done),
            calc.calc_error.eq(dp.calc_error), calc.calc_sat.eq(dp.calc_sat),
        ]

        # --- trace -------------------------------------------------------------------------
        for name, eng in (("load", load), ("calc", calc), ("save", save)):
            m.d.comb += [getattr(self, f"tr_{name}_start").eq(eng.tr_start),
                         getattr(self, f"tr_{name}_end").eq(eng.tr_end),
                         getattr(self, f"tr_{name}_index").eq(eng.tr_index)]
        m.d.comb += self.tr_calc_sat.eq(calc.sat)
        return m


def verilog_text(cfg: AcceleratorConfig,
                 datapath: Callable[[AcceleratorConfig], wiring.Component] | None = None) -> str:
    """Verilog of the accelerator, top module spec.TOP_NAME; ports = the signature's names."""
    from amaranth.back import verilog

    return verilog.convert(Accelerator(cfg, datapath), name=spec.TOP_NAME, emit_src=False)


def write_verilog(cfg: AcceleratorConfig, out_dir: str | Path,
                  datapath: Callable[[AcceleratorConfig], wiring.Component] | None = None
                  ) -> Path:
    """Write `<out_dir>/deepfpga_accel.v` atomically and return its path."""
    path = Path(out_dir) / f"{spec.TOP_NAME}.v"
    header = (f"// deepfpga accelerator for config {cfg.name!r} (hash {cfg.hash().hex()[:16]})\n"
              f"// top module {spec.TOP_NAME}; registers and ports in docs/rtl.md\n")
    return atomic_write_text(path, header + verilog_text(cfg, datapath))
