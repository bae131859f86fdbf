"""`Datapath(cfg)`: the accelerator's buffers and CALC engine behind the interface the core's
top level drives (RTL_INTERFACES: LOAD writes, SAVE reads, one CALC at a time).

    ld_* ──► INPUT / WEIGHT / BIAS (write ports) ──► CalcEngine (read ports) ──► OUTPUT
                                                                    sv_* ◄── OUTPUT (read port)

The LOAD write port and the SAVE read port are the buffers' own ports, independent of the CALC
engine's, so LOADs and SAVEs of other entries proceed while a CALC runs (`ld_ready` is always
high; a SAVE read takes one cycle, responses in request order).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from deepfpga.compiler.isa import Buffer
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.accel.buffers import BufferGeometry, element_bits, operand_bits
from deepfpga.rtl.accel.calc import SAT_BITS, CalcEngine
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
        # Memories are created here so testbenches can reach their contents (`.data`).
        self.inp = Memory(shape=signed(ob), depth=geo.input_entries, init=[])
        self.wgt = Memory(shape=signed(ob), depth=geo.weight_entries, init=[])
        self.bias = Memory(shape=signed(cfg.bias_bits), depth=geo.bias_entries, init=[])
        self.out = Memory(shape=signed(cfg.acc_bits), depth=geo.output_entries, init=[])
        super().__init__(datapath_signature(cfg))

    def elaborate(self, platform):
        m = Module()
        m.submodules.inp = self.inp
        m.submodules.wgt = self.wgt
        m.submodules.bias = self.bias
        m.submodules.out = self.out
        m.submodules.engine = eng = CalcEngine(self.cfg)

        # LOAD: one element per cycle into the selected buffer
        m.d.comb += self.ld_ready.eq(1)
        for buf, mem in ((Buffer.INPUT, self.inp), (Buffer.WEIGHT, self.wgt),
                         (Buffer.BIAS, self.bias)):
            wr = mem.write_port()
            m.d.comb += [wr.en.eq(self.ld_valid & (self.ld_buf == buf)),
                         wr.addr.eq(self.ld_addr), wr.data.eq(self.ld_data)]

        # CALC engine ports
        for mem, addr, dat in ((self.inp, eng.in_addr, eng.in_data),
                               (self.wgt, eng.w_addr, eng.w_data),
                               (self.bias, eng.b_addr, eng.b_data),
                               (self.out, eng.o_raddr, eng.o_rdata)):
            rd = mem.read_port()
            m.d.comb += [rd.addr.eq(addr), dat.eq(rd.data)]
        owr = self.out.write_port()
        m.d.comb += [owr.en.eq(eng.o_we), owr.addr.eq(eng.o_waddr), owr.data.eq(eng.o_wdata)]
        m.d.comb += [eng.calc_valid.eq(self.calc_valid), self.calc_ready.eq(eng.calc_ready),
                     eng.calc_word.eq(self.calc_word), self.calc_done.eq(eng.calc_done),
                     self.calc_error.eq(eng.calc_error), self.calc_sat.eq(eng.calc_sat)]

        # SAVE: a one-entry response register; the read data holds while it waits
        srd = self.out.read_port()
        rsp_valid = Signal()
        fire = self.sv_req_valid & self.sv_req_ready
        m.d.comb += [
            self.sv_req_ready.eq(~rsp_valid | self.sv_rsp_ready),
            srd.addr.eq(self.sv_req_addr), srd.en.eq(fire),
            self.sv_rsp_valid.eq(rsp_valid),
            self.sv_rsp_data.eq(srd.data[:self.cfg.data_bits]),
        ]
        with m.If(fire):
            m.d.sync += rsp_valid.eq(1)
        with m.Elif(self.sv_rsp_ready):
            m.d.sync += rsp_valid.eq(0)
        return m
