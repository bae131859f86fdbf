"""The SAVE engine: OUTPUT -> DDR, data elements little-endian, partial beats by `wstrb`.

Requests (`sv_req_*`, a few in flight) -> responses into a `ByteQueue` (each value as
`data_bytes` two's-complement bytes) -> W beats of the bursts the `BurstSplitter` cut
(first/last beat of a run partial). The instruction completes when every burst's write
response has come back, so a later LOAD that waits for it reads the new bytes.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.compiler.isa import Opcode
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.burst import ByteQueue
from deepfpga.rtl.accel.engine import DmaFront, connect_front, dma_start, instruction_fsm
from deepfpga.rtl.accel.fields import COUNT_BITS, FLAGS, beat_bytes, engine_port_signature, field

REQ_IN_FLIGHT = 4      # OUTPUT reads outstanding


class SaveEngine(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig) -> None:
        self.cfg = cfg
        dw = cfg.axi_data_bits
        super().__init__({
            **engine_port_signature(),
            "aw_valid": Out(1), "aw_ready": In(1), "aw_addr": Out(spec.AXI_ADDR_BITS),
            "aw_len": Out(8), "w_valid": Out(1), "w_ready": In(1), "w_data": Out(dw),
            "w_strb": Out(dw // 8), "w_last": Out(1), "b_valid": In(1), "b_ready": Out(1),
            "b_resp": In(2),
            "sv_req_valid": Out(1), "sv_req_ready": In(1), "sv_req_addr": Out(20),
            "sv_rsp_valid": In(1), "sv_rsp_ready": Out(1), "sv_rsp_data": In(signed(cfg.data_bits)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.cfg
        bb, db = beat_bytes(cfg), cfg.data_bytes
        m.submodules.front = front = DmaFront(cfg)
        m.submodules.bytes = q = ByteQueue(2 * bb + 2 * db, db, bb)
        ent = Signal.like(self.q_data)
        word = ent.word
        f = {name: field(word, Opcode.SAVE, name) for name in
             ("ob_addr", "ddr_addr", "length", "n1", "stride1", "n2", "stride2")}
        seg = Signal(len(front.seg))
        m.d.comb += [seg.eq(f["length"] * db), self.index.eq(ent.index),
                     self.tr_index.eq(ent.index), self.err_index.eq(ent.index)]
        m.d.comb += [getattr(self, fl).eq(field(word, Opcode.SAVE, fl)) for fl in FLAGS]
        connect_front(m, front, f, seg, ent.row)
        running = Signal()

        # OUTPUT reads -> byte queue (each value as data_bytes two's-complement bytes)
        kq, kr = Signal(COUNT_BITS), Signal(COUNT_BITS)        # requested, received
        inflight = Signal(range(REQ_IN_FLIGHT + 1))
        req = self.sv_req_valid & self.sv_req_ready
        rsp = self.sv_rsp_valid & self.sv_rsp_ready
        m.d.comb += [
            self.sv_req_valid.eq(running & (kq != ent.n) & (inflight != REQ_IN_FLIGHT)),
            self.sv_req_addr.eq(f["ob_addr"] + kq),
            self.sv_rsp_ready.eq(running & (q.level <= q.cap - db)),
            q.push_en.eq(rsp), q.push_n.eq(db),
            q.push_data.eq(self.sv_rsp_data.as_signed()),
        ]
        m.d.sync += inflight.eq(inflight + req - rsp)
        with m.If(req):
            m.d.sync += kq.eq(kq + 1)
        with m.If(rsp):
            m.d.sync += kr.eq(kr + 1)

        # bursts -> AW; byte queue -> W beats (partial strobes at the ends of a run)
        issued, acked = Signal(COUNT_BITS), Signal(COUNT_BITS)       # bursts
        m.d.comb += [self.aw_valid.eq(front.a_valid), front.a_ready.eq(self.aw_ready),
                     self.aw_addr.eq(front.a_addr), self.aw_len.eq(front.a_len)]
        with m.If(self.aw_valid & self.aw_ready):
            m.d.sync += issued.eq(issued + 1)
        m.d.comb += [front.beat.eq(front.cur & (~self.w_valid | self.w_ready)
                                   & (q.level >= front.nb)),
                     q.pop_en.eq(front.beat), q.pop_n.eq(front.nb)]
        with m.If(self.w_valid & self.w_ready):
            m.d.sync += self.w_valid.eq(0)
        strb = Signal(bb)
        m.d.comb += strb.eq(((Const(1, bb + 1) << front.nb) - 1) << front.lo)
        with m.If(front.beat):
            m.d.sync += [self.w_valid.eq(1), self.w_data.eq(q.head << (front.lo * 8)),
                         self.w_strb.eq(strb), self.w_last.eq(front.last)]

        # write responses: the instruction completes when every burst is acknowledged
        m.d.comb += self.b_ready.eq(1)
        with m.If(self.b_valid):
            m.d.sync += acked.eq(acked + 1)
        m.d.comb += [self.err_valid.eq(self.b_valid & (self.b_resp != 0)),
                     self.err_code.eq(spec.ErrorCode.AXI_ERROR)]

        on_start = dma_start(m, front, ent.n, running, [kq, kr, issued, acked])

        def body() -> None:
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), self.active.eq(1)]
                with m.If((kr == ent.n) & (q.level == 0) & front.idle & ~self.w_valid
                          & (issued == acked)):
                    m.d.sync += running.eq(0)
                    m.next = "END"

        instruction_fsm(m, self, ent, on_start, body)
        return m
