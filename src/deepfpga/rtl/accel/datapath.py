"""`Datapath(cfg)`: the accelerator's buffers and CALC engine behind the interface the core's
top level drives (RTL_INTERFACES: LOAD writes, SAVE reads, one CALC at a time).

    ld_* ──► INPUT / WEIGHT / BIAS (write ports) ──► CalcEngine (read ports) ──► OUTPUT
                                                                    sv_* ◄── OUTPUT (read port)

INPUT, WEIGHT and OUTPUT are interleaved over B banks (`buffers.bank_count`) so the CALC engine
moves B consecutive entries per cycle. The LOAD write port and the SAVE read port are the
buffers' own ports, independent of the CALC engine's, so LOADs and SAVEs of other entries
proceed while a CALC runs (`ld_ready` is always high; a SAVE read takes one cycle, responses in
request order).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from deepfpga.compiler.isa import Buffer
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.accel.buffers import (
    BankedMemory,
    BufferGeometry,
    bank_count,
    element_bits,
    operand_bits,
)
from deepfpga.rtl.accel.calc import SAT_BITS, CalcEngine, EnginePorts
from deepfpga.rtl.accel.spec import WORD_BITS


def datapath_signature(cfg: AcceleratorConfig) -> dict:
    return {
        "ld_valid": In(1), "ld_ready": Out(1), "ld_buf": In(2), "ld_addr": In(24),
        "ld_data": In(signed(element_bits(cfg))),
        "sv_req_valid": In(1), "sv_req_ready": Out(1), "sv_req_addr": In(20),
        "sv_rsp_valid": Out(1), "sv_rsp_ready": In(1),
        "sv_rsp_data": Out(signed(cfg.data_bits)),
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
        self.bias = Memory(shape=signed(cfg.bias_bits), depth=geo.bias_entries, init=[])
        self.out = BankedMemory(signed(cfg.acc_bits), geo.output_entries, b)
        super().__init__(datapath_signature(cfg))

    def cell(self, buf: str, entry: int):
        """Simulator handle of one entry of buffer 'inp', 'wgt', 'bias' or 'out'."""
        if buf == "bias":
            return self.bias.data[entry]
        return getattr(self, buf).cell(entry)

    def elaborate(self, platform):
        m = Module()
        self.inp.add_to(m, "inp")
        self.wgt.add_to(m, "wgt")
        self.out.add_to(m, "out")
        m.submodules.bias = self.bias

        # LOAD: one element per cycle into the selected buffer
        m.d.comb += self.ld_ready.eq(1)
        for buf, bm in ((Buffer.INPUT, self.inp), (Buffer.WEIGHT, self.wgt)):
            bm.single_write_port(m, self.ld_valid & (self.ld_buf == buf), self.ld_addr,
                                 self.ld_data)
        bwr = self.bias.write_port()
        m.d.comb += [bwr.en.eq(self.ld_valid & (self.ld_buf == Buffer.BIAS)),
                     bwr.addr.eq(self.ld_addr), bwr.data.eq(self.ld_data)]

        # CALC engine on its own ports
        ports = EnginePorts(inp=self.inp.read_ports(), wgt=self.wgt.read_ports(),
                            bias=self.bias.read_port(), out_rd=self.out.read_ports(),
                            out_wr=self.out.write_ports())
        m.submodules.engine = eng = CalcEngine(self.cfg, ports)
        m.d.comb += [eng.calc_valid.eq(self.calc_valid), self.calc_ready.eq(eng.calc_ready),
                     eng.calc_word.eq(self.calc_word), self.calc_done.eq(eng.calc_done),
                     self.calc_error.eq(eng.calc_error), self.calc_sat.eq(eng.calc_sat)]

        # SAVE: a one-entry response register; the read data holds while it waits
        rsp_valid = Signal()
        fire = self.sv_req_valid & self.sv_req_ready
        start = Cat(self.sv_req_addr, 0).as_signed()          # an entry, never negative
        (data, *_) = self.out.read_ports(en=fire).connect(m, start)
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
