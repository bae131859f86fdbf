"""A stand-in for the `Datapath` (tests only) speaking the real Datapath's port convention:
LOADs arrive on the masked wide `ldw_*` port (here `lanes` lanes wide, any start), SAVEs read
through `sv_*`; real buffers (block-RAM-shaped memories, one write port per lane, one SAVE read
port); a CALC completes at once as a no-op for to = 0 or ti = 0 and answers BAD_FIELD
otherwise. Optional back-pressure from a free-running LFSR exercises the engines' handshakes."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.isa import Buffer, Opcode
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.buffers import element_bits
from deepfpga.rtl.accel.datapath import datapath_signature
from deepfpga.rtl.accel.fields import field


class DatapathDouble(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, output_init: Sequence[int] = (),
                 stall: bool = False, lanes: int = 1):
        self.cfg, self.stall, self.lanes = cfg, stall, lanes
        ew = element_bits(cfg)
        # the real Datapath's attribute names, so a bench reads either
        self.inp = Memory(shape=signed(ew), depth=cfg.input_buffer_entries, init=[])
        self.wgt = Memory(shape=signed(ew), depth=cfg.weight_buffer_entries, init=[])
        self.bias = Memory(shape=signed(ew), depth=cfg.bias_buffer_entries, init=[])
        self.out = Memory(shape=signed(cfg.acc_bits), depth=cfg.output_buffer_entries,
                          init=list(output_init))
        # the real signature with a wide port of `lanes` lanes instead of bank_count(cfg)
        sig = datapath_signature(cfg) | {"ldw_mask": In(lanes), "ldw_data": In(lanes * ew)}
        super().__init__(sig)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        ew = element_bits(self.cfg)
        lfsr = Signal(16, init=0xACE1)
        m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]))
        go_ld = (lfsr[0] | lfsr[1]) if self.stall else 1
        go_sv = (lfsr[2] | lfsr[3]) if self.stall else 1
        m.d.comb += [self.ldw_ready.eq(go_ld), self.ld_ready.eq(0)]   # ld_* is not used
        fire = self.ldw_valid & self.ldw_ready
        for b, mem in ((Buffer.INPUT, self.inp), (Buffer.WEIGHT, self.wgt),
                       (Buffer.BIAS, self.bias)):
            m.submodules[f"mem{int(b)}"] = mem
            for j in range(self.lanes):
                wr = mem.write_port()
                m.d.comb += [wr.addr.eq(self.ldw_addr + j),
                             wr.data.eq(self.ldw_data[j * ew:(j + 1) * ew]),
                             wr.en.eq(fire & (self.ldw_buf == b) & self.ldw_mask[j])]
        m.submodules.output = self.out
        rd = self.out.read_port()
        accept = self.sv_req_valid & self.sv_req_ready
        m.d.comb += [self.sv_req_ready.eq(go_sv & (~self.sv_rsp_valid | self.sv_rsp_ready)),
                     rd.addr.eq(self.sv_req_addr), rd.en.eq(accept),
                     self.sv_rsp_data.eq(rd.data)]
        with m.If(accept):
            m.d.sync += self.sv_rsp_valid.eq(1)
        with m.Elif(self.sv_rsp_ready):
            m.d.sync += self.sv_rsp_valid.eq(0)
        # CALC: no-op or BAD_FIELD, done the cycle after it was handed over
        nop = (field(self.calc_word, Opcode.CALC, "to") == 0) \
            | (field(self.calc_word, Opcode.CALC, "ti") == 0)
        m.d.comb += self.calc_ready.eq(1)
        m.d.sync += [self.calc_done.eq(self.calc_valid), self.calc_sat.eq(0),
                     self.calc_error.eq(0)]
        with m.If(self.calc_valid & ~nop):
            m.d.sync += self.calc_error.eq(spec.ErrorCode.BAD_FIELD)
        return m
