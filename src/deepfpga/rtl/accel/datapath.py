"""`Datapath(cfg)`: the accelerator's buffers and CALC engine behind the interface the core's
top level drives (RTL_INTERFACES: LOAD writes, SAVE reads, one CALC at a time).

    ld_* ──► INPUT / WEIGHT / BIAS (write ports) ──► CalcEngine (read ports) ──► OUTPUT
                                                                    sv_* ◄── OUTPUT (read port)

INPUT, WEIGHT, BIAS and OUTPUT are interleaved over B banks (`buffers.bank_count`) so the CALC
engine moves B consecutive entries per cycle. The LOAD write port and the SAVE read port are
the buffers' own ports, independent of the CALC engine's, so LOADs and SAVEs of other entries
proceed while a CALC runs (`ldw_ready` is always high, `ld_ready` unless a wide LOAD is offered
in the same cycle; a SAVE read takes one cycle, responses in request order). The wide LOAD port
(`ldw_*`, an addition to RTL_INTERFACES) writes up to B consecutive entries per cycle, so a
LOAD engine can move a whole AXI beat of elements at once.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import bank_count, operand_bits
from deepfpga.hw.isa import Buffer
from deepfpga.rtl.accel.buffers import BankedMemory, BufferGeometry, element_bits
from deepfpga.rtl.accel.calc import SAT_BITS, CalcEngine, EnginePorts
from deepfpga.rtl.accel.spec import WORD_BITS


def datapath_signature(cfg: AcceleratorConfig) -> dict:
    return {
        "ld_valid": In(1), "ld_ready": Out(1), "ld_buf": In(2), "ld_addr": In(24),
        "ld_data": In(signed(element_bits(cfg))),
        # wide LOAD (optional, instead of ld_*): lanes k with ldw_mask[k] write entry
        # ldw_addr + k, lane k in ldw_data[k·EW, (k+1)·EW); B = buffers.bank_count(cfg)
        "ldw_valid": In(1), "ldw_ready": Out(1), "ldw_buf": In(2), "ldw_addr": In(24),
        "ldw_mask": In(bank_count(cfg)),
        "ldw_data": In(bank_count(cfg) * element_bits(cfg)),
        "sv_req_valid": In(1), "sv_req_ready": Out(1), "sv_req_addr": In(20),
        "sv_rsp_valid": Out(1), "sv_rsp_ready": In(1),
        "sv_rsp_data": Out(signed(cfg.data_bits)),
        # the same response, B entries wide: lane k = entry sv_req_addr + k (lanes past the
        # buffer's end are undefined), lane k in bits [k·data_bits, (k+1)·data_bits)
        "sv_rsp_lanes": Out(bank_count(cfg) * cfg.data_bits),
        "calc_valid": In(1), "calc_ready": Out(1), "calc_word": In(WORD_BITS),
        "calc_done": Out(1), "calc_error": Out(8), "calc_sat": Out(SAT_BITS),
    }


class Datapath(wiring.Component):
    """Buffers (capacities and widths from `cfg`) and the CALC engine."""

    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        self.geometry = geo = BufferGeometry.of(cfg)
        ob = operand_bits(cfg)
        b = bank_count(cfg)
        # Memories are created here so testbenches can reach their contents (`cell`).
        self.inp = BankedMemory(signed(ob), geo.input_entries, b)
        self.wgt = BankedMemory(signed(ob), geo.weight_entries, b)
        self.bias = BankedMemory(signed(cfg.bias_bits), geo.bias_entries, b)
        self.out = BankedMemory(signed(cfg.acc_bits), geo.output_entries, b)
        super().__init__(datapath_signature(cfg))

    def cell(self, buf: str, entry: int):
        """Simulator handle of one entry of buffer 'inp', 'wgt', 'bias' or 'out'."""
        return getattr(self, buf).cell(entry)

    def elaborate(self, platform):
        m = Module()
        self.inp.add_to(m, "inp")
        self.wgt.add_to(m, "wgt")
        self.out.add_to(m, "out")
        self.bias.add_to(m, "bias")

        # LOAD: one element (ld_*) or up to B consecutive ones (ldw_*, which wins) per cycle
        ew, b = element_bits(self.cfg), self.inp.banks
        wide = self.ldw_valid
        m.d.comb += [self.ld_ready.eq(~wide), self.ldw_ready.eq(1)]
        start = Cat(Mux(wide, self.ldw_addr, self.ld_addr), 0).as_signed()
        lanes = [Mux(wide, self.ldw_data[:ew].as_signed(), self.ld_data)]
        lanes += [self.ldw_data[k * ew:(k + 1) * ew].as_signed() for k in range(1, b)]
        for buf, bm in ((Buffer.INPUT, self.inp), (Buffer.WEIGHT, self.wgt),
                        (Buffer.BIAS, self.bias)):
            en = Mux(wide, Mux(self.ldw_buf == buf, self.ldw_mask, 0),
                     self.ld_valid & (self.ld_buf == buf))
            bm.write_ports().connect(m, start, en, lanes)

        # CALC engine on its own ports
        ports = EnginePorts(inp=self.inp.read_ports(), wgt=self.wgt.read_ports(),
                            bias=self.bias.read_ports(), out_rd=self.out.read_ports(),
                            out_wr=self.out.write_ports())
        m.submodules.engine = eng = CalcEngine(self.cfg, ports)
        m.d.comb += [eng.calc_valid.eq(self.calc_valid), self.calc_ready.eq(eng.calc_ready),
                     eng.calc_word.eq(self.calc_word), self.calc_done.eq(eng.calc_done),
                     self.calc_error.eq(eng.calc_error), self.calc_sat.eq(eng.calc_sat)]

        # SAVE: a one-entry response register; the read data holds while it waits
        rsp_valid = Signal()
        fire = self.sv_req_valid & self.sv_req_ready
        start = Cat(self.sv_req_addr, 0).as_signed()          # an entry, never negative
        data, *rest = self.out.read_ports(en=fire).connect(m, start)
        m.d.comb += self.sv_rsp_lanes.eq(Cat(v[:self.cfg.data_bits] for v in (data, *rest)))
        m.d.comb += [
            self.sv_req_ready.eq(~rsp_valid | self.sv_rsp_ready),
            self.sv_rsp_valid.eq(rsp_valid),
            self.sv_rsp_data.eq(data[:self.cfg.data_bits]),
        ]
        with m.If(fire):
            m.d.sync += rsp_valid.eq(1)
        with m.Elif(self.sv_rsp_ready):
            m.d.sync += rsp_valid.eq(0)
        return m
