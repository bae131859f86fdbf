"""The CALC side of the controller: pops the tokens of a CALC, hands the raw word to the
`Datapath` and waits for `calc_done` (one CALC in the Datapath at a time)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.hw.isa import Opcode
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.engine import instruction_fsm
from deepfpga.rtl.accel.fields import FLAGS, engine_port_signature, field


class CalcIssue(wiring.Component):
    def __init__(self) -> None:
        super().__init__({
            **engine_port_signature(),
            "calc_valid": Out(1), "calc_ready": In(1), "calc_word": Out(spec.WORD_BITS),
            "calc_done": In(1), "calc_error": In(8), "calc_sat": In(32),
            "sat": Out(32),              # with tr_end: values the CALC saturated
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        ent = Signal.like(self.q_data)
        m.d.comb += [getattr(self, fl).eq(field(ent.word, Opcode.CALC, fl)) for fl in FLAGS]
        m.d.comb += [self.index.eq(ent.index), self.calc_word.eq(ent.word),
                     self.tr_index.eq(ent.index), self.err_index.eq(ent.index)]
        err = Signal(8)
        m.d.comb += [self.err_valid.eq(self.tr_end & (err != 0)), self.err_code.eq(err)]

        def finish() -> None:
            m.d.sync += [err.eq(self.calc_error), self.sat.eq(self.calc_sat)]
            m.next = "END"

        def on_start() -> None:
            m.next = "HAND"

        def body() -> None:
            with m.State("HAND"):
                m.d.comb += [self.busy.eq(1), self.active.eq(1), self.calc_valid.eq(1)]
                with m.If(self.calc_ready):
                    with m.If(self.calc_done):
                        finish()
                    with m.Else():
                        m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += [self.busy.eq(1), self.active.eq(1)]
                with m.If(self.calc_done):
                    finish()

        instruction_fsm(m, self, ent, on_start, body)
        return m
