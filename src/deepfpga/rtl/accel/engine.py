"""What the LOAD and SAVE engines (and the CALC issue) share: the instruction sequence
IDLE -> POP (tokens) -> body -> END (pushes), and the DMA front end: `Chunks` ->
`BurstSplitter` -> address register (AR or AW) + a FIFO of the bursts' byte ranges -> a beat
cursor (valid bytes of each beat) for the data side."""

from __future__ import annotations

from collections.abc import Callable

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import beat_bytes, burst_limit_bytes
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.burst import BurstSplitter, Chunks
from deepfpga.rtl.accel.fields import INDEX_BITS, ROW_BITS

DESC_DEPTH = 4        # bursts in flight per engine


def instruction_fsm(m: Module, eng: wiring.Component, ent: Signal,
                    on_start: Callable[[], None], body: Callable[[], None]) -> None:
    """IDLE takes an entry from the queue into `ent`; POP waits for the tokens, then calls
    `on_start` (which sets m.next to a body state or "END"); `body` adds the states that end
    in "END", which pulses tr_end and the pushes."""
    with m.FSM():
        with m.State("IDLE"):
            m.d.comb += eng.q_ready.eq(1)
            with m.If(eng.q_valid):
                m.d.sync += ent.eq(eng.q_data)
                m.next = "POP"
        with m.State("POP"):
            m.d.comb += [eng.busy.eq(1), eng.want.eq(1)]
            with m.If(eng.ok):
                m.d.comb += [eng.take.eq(1), eng.tr_start.eq(1)]
                on_start()
        body()
        with m.State("END"):
            # the next entry is taken at once (no IDLE cycle between instructions)
            m.d.comb += [eng.busy.eq(1), eng.active.eq(1), eng.tr_end.eq(1), eng.push.eq(1),
                         eng.q_ready.eq(1)]
            with m.If(eng.q_valid):
                m.d.sync += ent.eq(eng.q_data)
                m.next = "POP"
            with m.Else():
                m.next = "IDLE"


class DmaFront(wiring.Component):
    """One strided transfer (`start` with its parameters; never empty) as bursts on an
    address channel (`a_*`, registered) and, for the data side, a cursor over the beats:
    `lo`/`nb` = first valid byte / valid bytes of the current beat, `last` = last beat of its
    burst; `beat` advances it. `idle`: every burst issued and every beat consumed."""

    def __init__(self, cfg: AcceleratorConfig) -> None:
        self.cfg = cfg
        bb = beat_bytes(cfg)
        super().__init__({
            "start": In(1), "addr": In(spec.AXI_ADDR_BITS), "n2": In(16), "s2": In(32),
            "n1": In(16), "s1": In(32), "seg": In(ROW_BITS), "row": In(ROW_BITS),
            "a_valid": Out(1), "a_ready": In(1), "a_addr": Out(spec.AXI_ADDR_BITS),
            "a_len": Out(8),
            "cur": Out(1), "lo": Out(range(bb)), "nb": Out(range(bb + 1)), "last": Out(1),
            "beat": In(1), "idle": Out(1),
            # the next transfer may start (every burst of this one is issued or queued)
            "can_start": Out(1),
            # an instruction index carried with every burst to the beat cursor
            "tag": In(INDEX_BITS), "cur_tag": Out(INDEX_BITS),
            # with the address: the burst ends its transfer; its transfer's tag
            "a_last": Out(1), "a_tag": Out(INDEX_BITS),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bb = beat_bytes(self.cfg)
        m.submodules.chunks = chunks = Chunks()
        m.submodules.split = split = BurstSplitter(self.cfg)
        nd = len(split.b_off) + len(split.b_bytes)
        m.submodules.desc = desc = SyncFIFOBuffered(width=nd + INDEX_BITS, depth=DESC_DEPTH)
        tag = Signal(INDEX_BITS)
        with m.If(self.start):
            m.d.sync += tag.eq(self.tag)
        m.d.comb += [
            chunks.start.eq(self.start), chunks.addr.eq(self.addr), chunks.n2.eq(self.n2),
            chunks.s2.eq(self.s2), chunks.n1.eq(self.n1), chunks.s1.eq(self.s1),
            chunks.seg.eq(self.seg), chunks.row.eq(self.row),
            chunks.merged.eq((self.n1 == 1) | (self.s1 == self.seg)),
            split.c_valid.eq(chunks.c_valid), chunks.c_ready.eq(split.c_ready),
            split.c_addr.eq(chunks.c_addr), split.c_bytes.eq(chunks.c_bytes),
            split.c_last.eq(chunks.c_last),
            split.b_ready.eq((~self.a_valid | self.a_ready) & desc.w_rdy),
            desc.w_en.eq(split.b_valid & split.b_ready),
            desc.w_data.eq(split.b_off | (split.b_bytes << len(split.b_off)) | (tag << nd)),
            self.can_start.eq(split.idle & ~chunks.c_valid),
        ]
        with m.If(self.a_valid & self.a_ready):
            m.d.sync += self.a_valid.eq(0)
        with m.If(split.b_valid & split.b_ready):
            m.d.sync += [self.a_valid.eq(1), self.a_addr.eq(split.b_addr),
                         self.a_len.eq(split.b_len), self.a_last.eq(split.b_last),
                         self.a_tag.eq(tag)]
        rem = Signal(range(burst_limit_bytes(self.cfg) + 1))
        m.d.comb += [
            desc.r_en.eq(~self.cur),
            self.nb.eq(Mux(rem < bb - self.lo, rem, bb - self.lo)),
            self.last.eq(rem == self.nb),
            self.idle.eq(split.idle & ~chunks.c_valid & ~self.cur & ~desc.r_rdy
                         & ~self.a_valid),
        ]
        with m.If(~self.cur & desc.r_rdy):
            m.d.sync += [self.cur.eq(1), self.lo.eq(desc.r_data[:len(self.lo)]),
                         rem.eq(desc.r_data[len(split.b_off):nd]),
                         self.cur_tag.eq(desc.r_data[nd:])]
        with m.If(self.beat):
            m.d.sync += [self.lo.eq(0), rem.eq(rem - self.nb)]
            with m.If(self.last):
                m.d.sync += self.cur.eq(0)
        return m


def connect_front(m: Module, front: DmaFront, f: dict[str, object], seg: object,
                  row: object) -> None:
    """Feed a DmaFront from the decoded fields of a LOAD or SAVE."""
    m.d.comb += [front.addr.eq(f["ddr_addr"]), front.n2.eq(f["n2"]), front.s2.eq(f["stride2"]),
                 front.n1.eq(f["n1"]), front.s1.eq(f["stride1"]), front.seg.eq(seg),
                 front.row.eq(row)]



def overlapped_fsm(m: Module, eng: wiring.Component, ent: Signal, can_start: Value,
                   finish: Value, start: list[object]) -> None:
    """The address side of an engine whose instructions overlap (LOAD, SAVE): IDLE takes an
    entry, POP takes its tokens once `can_start` and runs the `start` statements, taking the
    next entry in the same cycle (the front and the records latched this one). `busy` = POP or
    `active`. A start never shares a cycle with an end (`finish`): one trace index port."""
    with m.FSM():
        with m.State("IDLE"):
            m.d.comb += [eng.q_ready.eq(1), eng.busy.eq(eng.active)]
            with m.If(eng.q_valid):
                m.d.sync += ent.eq(eng.q_data)
                m.next = "POP"
        with m.State("POP"):
            m.d.comb += [eng.busy.eq(1), eng.want.eq(1)]
            with m.If(eng.ok & can_start & ~finish):
                m.d.comb += [eng.take.eq(1), eng.tr_start.eq(1), eng.q_ready.eq(1), *start]
                with m.If(eng.q_valid):
                    m.d.sync += ent.eq(eng.q_data)
                with m.Else():
                    m.next = "IDLE"
