"""The SAVE engine: OUTPUT -> DDR, data elements little-endian, partial beats by `wstrb`.

Requests (`sv_req_*`, a few in flight) -> responses into a `ByteQueue` (each value as
`data_bytes` two's-complement bytes) -> W beats of the bursts the `BurstSplitter` cut
(first/last beat of a run partial). The instruction completes when every burst's write
response has come back, so a later LOAD that waits for it reads the new bytes.

Consecutive SAVEs overlap: once every burst of one is issued, the next pops its tokens and
starts; its OUTPUT reads follow the previous one's, and the SAVEs complete (and push) in order
as their last bursts are acknowledged.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import beat_bytes
from deepfpga.hw.isa import Opcode
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.burst import ByteQueue
from deepfpga.rtl.accel.engine import DmaFront, connect_front, overlapped_fsm
from deepfpga.rtl.accel.fields import (
    COUNT_BITS,
    FLAGS,
    INDEX_BITS,
    engine_port_signature,
    field,
)

REQ_IN_FLIGHT = 4      # OUTPUT reads outstanding
RECORDS = 4            # SAVEs started and not yet completed
WRITES_IN_FLIGHT = 8   # write bursts awaiting their response


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
        req_lay = data.StructLayout({"ob_addr": 20, "n": COUNT_BITS})
        end_lay = data.StructLayout({"index": INDEX_BITS, "empty": 1, "push_prev": 1})
        m.submodules.reqs = reqs = SyncFIFOBuffered(width=req_lay.size, depth=RECORDS)
        m.submodules.ends = ends = SyncFIFOBuffered(width=end_lay.size, depth=RECORDS)
        # per burst on AW, until its write response: (ends its instruction, instruction index)
        m.submodules.wr = wr = SyncFIFOBuffered(width=1 + INDEX_BITS, depth=WRITES_IN_FLIGHT)

        # --- address side: tokens, then the bursts of one SAVE after another --------------
        ent = Signal.like(self.q_data)
        word = ent.word
        f = {name: field(word, Opcode.SAVE, name) for name in
             ("ob_addr", "ddr_addr", "length", "n1", "stride1", "n2", "stride2")}
        seg = Signal(len(front.seg))
        m.d.comb += [seg.eq(f["length"] * db), self.index.eq(ent.index),
                     front.tag.eq(ent.index)]
        for fl in FLAGS:
            if fl != "push_prev":
                m.d.comb += getattr(self, fl).eq(field(word, Opcode.SAVE, fl))
        connect_front(m, front, f, seg, ent.row)
        new_req, new_end = Signal(req_lay), Signal(end_lay)
        m.d.comb += [new_req.ob_addr.eq(f["ob_addr"]), new_req.n.eq(ent.n),
                     new_end.index.eq(ent.index), new_end.empty.eq(ent.n == 0),
                     new_end.push_prev.eq(field(word, Opcode.SAVE, "push_prev")),
                     reqs.w_data.eq(new_req), ends.w_data.eq(new_end)]

        # --- OUTPUT reads (oldest started SAVE first) -> byte queue ------------------------
        req = Signal(req_lay)
        m.d.comb += req.eq(reqs.r_data)
        kq = Signal(COUNT_BITS)
        inflight = Signal(range(REQ_IN_FLIGHT + 1))
        sent = self.sv_req_valid & self.sv_req_ready
        rsp = self.sv_rsp_valid & self.sv_rsp_ready
        m.d.comb += [
            self.sv_req_valid.eq(reqs.r_rdy & (kq != req.n) & (inflight != REQ_IN_FLIGHT)),
            self.sv_req_addr.eq(req.ob_addr + kq),
            reqs.r_en.eq(reqs.r_rdy & (kq == req.n)),
            self.sv_rsp_ready.eq(q.level <= q.cap - db),
            q.push_en.eq(rsp), q.push_n.eq(db),
            q.push_data.eq(self.sv_rsp_data.as_signed()),
        ]
        m.d.sync += inflight.eq(inflight + sent - rsp)
        with m.If(sent):
            m.d.sync += kq.eq(kq + 1)
        with m.If(reqs.r_en):
            m.d.sync += kq.eq(0)

        # --- AW (a burst waits while the write-response FIFO is full; it only empties then,
        # so awvalid never drops before its handshake) -> W beats from the byte queue -----------
        aw = self.aw_valid & self.aw_ready
        m.d.comb += [self.aw_valid.eq(front.a_valid & wr.w_rdy), front.a_ready.eq(aw),
                     self.aw_addr.eq(front.a_addr), self.aw_len.eq(front.a_len),
                     wr.w_en.eq(aw), wr.w_data.eq(front.a_last | (front.a_tag << 1))]
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

        # --- write responses complete the SAVEs in order (a SAVE pushes its tokens only once
        # its last burst is acknowledged, so a LOAD that waits for it reads the new bytes) ----
        done = Signal(range(WRITES_IN_FLIGHT + 1))    # instructions acknowledged, not ended
        resp = self.b_valid & self.b_ready
        m.d.comb += [self.b_ready.eq(wr.r_rdy), wr.r_en.eq(self.b_valid),
                     self.err_valid.eq(resp & (self.b_resp != 0)),
                     self.err_code.eq(spec.ErrorCode.AXI_ERROR),
                     self.err_index.eq(wr.r_data[1:])]
        end = Signal(end_lay)
        finish = Signal()
        m.d.comb += [end.eq(ends.r_data),
                     finish.eq(ends.r_rdy & (end.empty | (done != 0))),
                     ends.r_en.eq(finish),
                     self.tr_end.eq(finish), self.push.eq(finish),
                     self.push_prev.eq(end.push_prev),
                     self.tr_index.eq(Mux(finish, end.index, ent.index))]
        m.d.sync += done.eq(done + (resp & wr.r_data[0]) - (finish & ~end.empty))

        m.d.comb += self.active.eq(ends.r_rdy | (ends.level != 0) | reqs.r_rdy
                                   | (reqs.level != 0) | ~front.idle | self.w_valid
                                   | (q.level != 0) | wr.r_rdy | (wr.level != 0))
        overlapped_fsm(m, self, ent, reqs.w_rdy & ends.w_rdy & front.can_start, finish,
                       [ends.w_en.eq(1), reqs.w_en.eq(ent.n != 0), front.start.eq(ent.n != 0)])
        return m
