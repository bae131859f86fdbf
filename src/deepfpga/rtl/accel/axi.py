"""AXI plumbing of the top level: the read-channel arbiter (instruction fetch and LOAD share
the AXI4 master's AR/R channels) and the AXI4-Lite register slave (spec.Reg)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from deepfpga.rtl.accel import spec

TAG_DEPTH = 8          # read bursts in flight on the AXI4 master


class ReadArbiter(wiring.Component):
    """Clients 0..n-1 -> one AR channel (round robin, one register stage); R beats go back to
    the client of the oldest burst in flight (single ID: the slave answers in order)."""

    def __init__(self, data_bits: int, clients: int) -> None:
        self.n = clients
        super().__init__({
            **{f"c{i}_{k}": d for i in range(clients) for k, d in (
                ("ar_valid", In(1)), ("ar_ready", Out(1)), ("ar_addr", In(spec.AXI_ADDR_BITS)),
                ("ar_len", In(8)), ("r_valid", Out(1)), ("r_ready", In(1)))},
            "arvalid": Out(1), "arready": In(1), "araddr": Out(spec.AXI_ADDR_BITS),
            "arlen": Out(8), "rvalid": In(1), "rready": Out(1), "rlast": In(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n = self.n
        m.submodules.tags = tags = SyncFIFO(width=max(1, (n - 1).bit_length()), depth=TAG_DEPTH)
        last = Signal(range(n))
        free = (~self.arvalid | self.arready) & tags.w_rdy
        with m.If(self.arvalid & self.arready):
            m.d.sync += self.arvalid.eq(0)
        # round robin: the client after the last granted one goes first
        order = [(step, i) for step in range(n) for i in range(n)]
        for k, (step, i) in enumerate(order):
            cond = (last == (i - 1 - step) % n) & getattr(self, f"c{i}_ar_valid") & free
            with (m.If if k == 0 else m.Elif)(cond):
                m.d.comb += [getattr(self, f"c{i}_ar_ready").eq(1),
                             tags.w_en.eq(1), tags.w_data.eq(i)]
                m.d.sync += [self.arvalid.eq(1), last.eq(i),
                             self.araddr.eq(getattr(self, f"c{i}_ar_addr")),
                             self.arlen.eq(getattr(self, f"c{i}_ar_len"))]
        ready = Array(getattr(self, f"c{i}_r_ready") for i in range(n))
        m.d.comb += self.rready.eq(tags.r_rdy & ready[tags.r_data])
        for i in range(n):
            m.d.comb += getattr(self, f"c{i}_r_valid").eq(
                self.rvalid & tags.r_rdy & (tags.r_data == i))
        m.d.comb += tags.r_en.eq(self.rvalid & self.rready & self.rlast)
        return m


def axil_signature() -> dict[str, object]:
    d = {"in": In, "out": Out}
    return {name: d[direction](width) for name, direction, width in spec.AXIL_SLAVE_PORTS}


class AxiLiteRegs(wiring.Component):
    """The control/status registers of spec.Reg behind an AXI4-Lite slave (OKAY responses;
    unmapped addresses read 0 and ignore writes)."""

    def __init__(self, id_value: int, config_hash: int) -> None:
        self.id_value, self.config_hash = id_value, config_hash
        super().__init__({
            **axil_signature(),
            "start": Out(1), "clear": Out(1), "prog_addr": Out(32), "prog_count": Out(32),
            "status": In(3), "error_code": In(8), "error_index": In(32), "cycles": In(64),
            "sat_count": In(32), "end_index": In(32),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        R = spec.Reg
        # writes: address and data together
        wr = Signal()
        m.d.comb += wr.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~self.s_axil_bvalid)
        m.d.comb += [self.s_axil_awready.eq(wr), self.s_axil_wready.eq(wr)]
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        waddr = self.s_axil_awaddr[2:]
        wdata, wstrb = self.s_axil_wdata, self.s_axil_wstrb

        def strobed(reg: Signal) -> object:
            return Cat(*(Mux(wstrb[b], wdata.word_select(b, 8), reg.word_select(b, 8))
                         for b in range(4)))

        with m.If(wr):
            m.d.sync += self.s_axil_bvalid.eq(1)
            with m.Switch(waddr):
                with m.Case(R.CTRL >> 2):
                    m.d.comb += [self.start.eq(wstrb[0] & wdata[0]),
                                 self.clear.eq(wstrb[0] & wdata[1])]
                with m.Case(R.PROG_ADDR >> 2):
                    m.d.sync += self.prog_addr.eq(strobed(self.prog_addr))
                with m.Case(R.PROG_COUNT >> 2):
                    m.d.sync += self.prog_count.eq(strobed(self.prog_count))
        # reads
        rd = Signal()
        m.d.comb += [rd.eq(self.s_axil_arvalid & ~self.s_axil_rvalid),
                     self.s_axil_arready.eq(rd)]
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)
        values = {
            R.CTRL: 0, R.STATUS: self.status, R.PROG_ADDR: self.prog_addr,
            R.PROG_COUNT: self.prog_count, R.ERROR_CODE: self.error_code,
            R.ERROR_INDEX: self.error_index, R.CYCLES_LO: self.cycles[:32],
            R.CYCLES_HI: self.cycles[32:], R.SAT_COUNT: self.sat_count,
            R.END_INDEX: self.end_index, R.ID: self.id_value, R.CONFIG_HASH: self.config_hash,
        }
        with m.If(rd):
            m.d.sync += [self.s_axil_rvalid.eq(1), self.s_axil_rdata.eq(0)]
            with m.Switch(self.s_axil_araddr[2:]):
                for reg, v in values.items():
                    with m.Case(reg >> 2):
                        m.d.sync += self.s_axil_rdata.eq(v)
        return m
