"""The LOAD engine: DDR -> INPUT/WEIGHT/BIAS, up to `lanes` sign-extended elements per cycle.

Pipeline: `DmaFront` (strided segments -> legal bursts on AR, and a cursor over the valid
bytes of each returning beat) ... R beats -> `ByteQueue` -> element registers (`ld_*`). The
element size follows the buffer and the §7.3 FC role swap exactly as the functional simulator's
`load` (`element_bytes`); the decoder has range-checked the instruction. A packed4 LOAD takes
4-bit elements, two per byte (low nibble first), sign-extends them, and never writes across
the end of an odd segment, whose last high nibble is padding (engines.load_write_cycles).

Consecutive LOADs overlap: once every burst of one is issued, the next pops its tokens and
issues its bursts while the first one's data still arrives. A record per started instruction
(its destination, count, element size and push) goes to the data side, which completes the
instructions in order and pushes each one's tokens when its last element was written.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import beat_bytes
from deepfpga.hw.isa import Buffer, Opcode
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.buffers import element_bits
from deepfpga.rtl.accel.burst import ByteQueue
from deepfpga.rtl.accel.engine import DmaFront, connect_front, overlapped_fsm
from deepfpga.rtl.accel.fields import (
    COUNT_BITS,
    FLAGS,
    INDEX_BITS,
    engine_port_signature,
    field,
)

RECORDS = 4          # LOADs started and not yet completed (the next ones' bursts overlap)


def element_bytes(cfg: AcceleratorConfig, buffer: Buffer, fc_weights: bool) -> int:
    """DDR bytes of one element of a LOAD (functional simulator `load`, docs/isa.md §LOAD)."""
    if buffer == Buffer.INPUT:
        return cfg.weight_bytes if fc_weights else cfg.data_bytes
    if buffer == Buffer.WEIGHT:
        return cfg.data_bytes if fc_weights else cfg.weight_bytes
    return cfg.bias_bytes


def element_bytes_of(cfg: AcceleratorConfig, buffer: object, fc: object) -> object:
    """`element_bytes` as hardware: a mux over the (constant) cases."""
    e = {(b, f): element_bytes(cfg, b, bool(f)) for b in Buffer for f in (0, 1)}
    return Mux(buffer == Buffer.INPUT, Mux(fc, e[Buffer.INPUT, 1], e[Buffer.INPUT, 0]),
               Mux(buffer == Buffer.WEIGHT, Mux(fc, e[Buffer.WEIGHT, 1], e[Buffer.WEIGHT, 0]),
                   e[Buffer.BIAS, 0]))


def packed_allowed_of(cfg: AcceleratorConfig, buffer: object, fc: object) -> object:
    """`arch.packed_load_allowed` as hardware (the config's part is a constant)."""
    if cfg.weight_bytes != 1:
        return Const(0, 1)
    return ((buffer == Buffer.INPUT) & fc) | ((buffer == Buffer.WEIGHT) & ~fc)


def segment_bytes_of(cfg: AcceleratorConfig, buffer: object, fc: object, packed: object,
                     length: object) -> object:
    """`arch.load_segment_bytes` as hardware: ⌈length/2⌉ packed, else length elements."""
    return Mux(packed, (length + 1) >> 1, length * element_bytes_of(cfg, buffer, fc))


def _axi_read_signature(cfg: AcceleratorConfig) -> dict[str, object]:
    return {"ar_valid": Out(1), "ar_ready": In(1), "ar_addr": Out(spec.AXI_ADDR_BITS),
            "ar_len": Out(8), "r_valid": In(1), "r_ready": Out(1),
            "r_data": In(cfg.axi_data_bits), "r_resp": In(2), "r_last": In(1)}


class LoadEngine(wiring.Component):
    """Up to `lanes` consecutive entries per cycle: `ld_count` of them, lane j in `ld_wide[j]`
    for entry `ld_addr + j` (the top level turns them into the Datapath's `ldw_*` mask and
    data)."""

    def __init__(self, cfg: AcceleratorConfig, lanes: int = 1) -> None:
        self.cfg, self.lanes = cfg, lanes
        ew = element_bits(cfg)
        super().__init__({
            **engine_port_signature(), **_axi_read_signature(cfg),
            "ld_valid": Out(1), "ld_ready": In(1), "ld_buf": Out(2), "ld_addr": Out(24),
            "ld_count": Out(range(lanes + 1)), "ld_wide": Out(data.ArrayLayout(signed(ew), lanes)),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.cfg
        bb = beat_bytes(cfg)
        sizes = sorted({element_bytes(cfg, b, bool(f)) for b in Buffer for f in (0, 1)})
        emax = max(sizes)
        m.submodules.front = front = DmaFront(cfg)
        lanes = self.lanes
        m.submodules.bytes = q = ByteQueue(2 * bb + lanes * emax, bb, lanes * emax)
        # packed: 4-bit elements two per byte; odd: its segments of `seg` elements are odd, so
        # each ends on a pad nibble (the element writes stop there)
        rec_lay = data.StructLayout({"index": INDEX_BITS, "buffer": 2, "buf_addr": 24,
                                     "n": COUNT_BITS, "eb": range(emax + 1), "push_next": 1,
                                     "packed": 1, "odd": 1, "seg": 16})
        m.submodules.recs = recs = SyncFIFOBuffered(width=rec_lay.size, depth=RECORDS)

        # --- address side: tokens, then the bursts of one instruction after another -------
        ent = Signal.like(self.q_data)
        word = ent.word
        f = {name: field(word, Opcode.LOAD, name) for name in
             ("buffer", "fc_weights", "buf_addr", "ddr_addr", "length", "n1", "stride1", "n2",
              "stride2", "packed4")}
        eb = Signal(range(emax + 1))
        seg = Signal(len(front.seg))
        m.d.comb += [eb.eq(element_bytes_of(cfg, f["buffer"], f["fc_weights"])),
                     seg.eq(segment_bytes_of(cfg, f["buffer"], f["fc_weights"], f["packed4"],
                                             f["length"])),
                     self.index.eq(ent.index), front.tag.eq(ent.index)]
        connect_front(m, front, f, seg, ent.row)
        m.d.comb += [self.ar_valid.eq(front.a_valid), front.a_ready.eq(self.ar_ready),
                     self.ar_addr.eq(front.a_addr), self.ar_len.eq(front.a_len)]
        new = Signal(rec_lay)
        m.d.comb += [new.index.eq(ent.index), new.buffer.eq(f["buffer"]),
                     new.buf_addr.eq(f["buf_addr"]), new.n.eq(ent.n), new.eb.eq(eb),
                     new.packed.eq(f["packed4"]), new.odd.eq(f["packed4"] & f["length"][0]),
                     new.seg.eq(f["length"]),
                     new.push_next.eq(field(word, Opcode.LOAD, "push_next")),
                     recs.w_data.eq(new)]
        for fl in FLAGS:
            if fl != "push_next":
                m.d.comb += getattr(self, fl).eq(field(word, Opcode.LOAD, fl))

        # --- R beats -> byte queue ---------------------------------------------------------
        m.d.comb += [
            self.r_ready.eq(front.cur & (q.level <= q.cap - bb)),
            front.beat.eq(self.r_valid & self.r_ready),
            q.push_en.eq(front.beat), q.push_n.eq(front.nb),
            q.push_data.eq(self.r_data >> (front.lo * 8)),
            self.err_valid.eq(front.beat & (self.r_resp != 0)),
            self.err_code.eq(spec.ErrorCode.AXI_ERROR), self.err_index.eq(front.cur_tag),
        ]

        # --- data side: the oldest started instruction's elements, then its pushes -----------
        rec = Signal(rec_lay)
        m.d.comb += rec.eq(recs.r_data)
        k = Signal(COUNT_BITS)            # elements of `rec` emitted
        left = Signal(COUNT_BITS)
        m.d.comb += left.eq(rec.n - k)
        # c = elements this cycle: lanes j with j·eb bytes queued and j elements left
        c, pop_n = Signal(range(lanes + 1)), Signal(range(lanes * emax + 1))
        ext = [Signal(signed(element_bits(cfg)), name=f"ext{j}") for j in range(lanes)]
        # packed: h = the head byte's low nibble was taken; s = elements of the current (odd)
        # segment taken. Nibble i of the stream after h is element i; at an odd segment's end
        # its pad nibble is taken too, so the next segment starts on a byte.
        h, s_pos = Signal(), Signal(16)
        seg_left, avail, nib = Signal(17), Signal(range(2 * q.cap + 1)), Signal(range(lanes + 3))
        ends = Signal()
        m.d.comb += [seg_left.eq(rec.seg - s_pos), avail.eq((q.level << 1) - h)]
        assert (lanes + 2) // 2 <= lanes * emax, "the queue's head holds a packed cycle"
        with m.If(rec.packed):
            m.d.comb += [c.eq(sum((avail >= j) & (left >= j) & (~rec.odd | (seg_left >= j))
                                  for j in range(1, lanes + 1))),
                         ends.eq(rec.odd & (c == seg_left)),
                         nib.eq(h + c + ends), pop_n.eq(nib >> 1)]
            nibbles = [q.head[4 * i:4 * (i + 1)].as_signed() for i in range(lanes + 1)]
            m.d.comb += [ext[j].eq(Mux(h, nibbles[j + 1], nibbles[j])) for j in range(lanes)]
        with m.Else(), m.Switch(rec.eb):
            for e in sizes:
                with m.Case(e):
                    m.d.comb += [c.eq(sum((q.level >= j * e) & (left >= j)
                                          for j in range(1, lanes + 1))),
                                 pop_n.eq(c * e)]
                    m.d.comb += [ext[j].eq(q.head[8 * e * j:8 * e * (j + 1)].as_signed())
                                 for j in range(lanes)]
        emit, finish = Signal(), Signal()
        m.d.comb += [
            emit.eq(recs.r_rdy & (~self.ld_valid | self.ld_ready) & (c != 0)),
            q.pop_en.eq(emit), q.pop_n.eq(pop_n),
            # complete once the last element was taken (the same cycle as its handshake)
            finish.eq(recs.r_rdy & (k == rec.n) & (~self.ld_valid | self.ld_ready)),
            recs.r_en.eq(finish),
            self.tr_end.eq(finish), self.push.eq(finish), self.push_next.eq(rec.push_next),
            self.tr_index.eq(Mux(finish, rec.index, ent.index)),
        ]
        with m.If(self.ld_valid & self.ld_ready):
            m.d.sync += self.ld_valid.eq(0)
        with m.If(emit):
            m.d.sync += [self.ld_valid.eq(1), self.ld_buf.eq(rec.buffer),
                         self.ld_addr.eq(rec.buf_addr + k), k.eq(k + c), self.ld_count.eq(c),
                         *(self.ld_wide[j].eq(ext[j]) for j in range(lanes))]
            with m.If(rec.packed):
                m.d.sync += [h.eq(nib[0]), s_pos.eq(Mux(ends, 0, s_pos + c))]
        with m.If(finish):
            m.d.sync += [k.eq(0), h.eq(0), s_pos.eq(0)]

        m.d.comb += self.active.eq(recs.r_rdy | (recs.level != 0) | ~front.idle | self.ld_valid)
        overlapped_fsm(m, self, ent, recs.w_rdy & front.can_start, finish,
                       [recs.w_en.eq(1), front.start.eq(ent.n != 0)])
        return m
