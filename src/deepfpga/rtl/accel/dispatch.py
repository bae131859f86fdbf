"""Decode and in-order dispatch.

Each word from the fetch FIFO is checked in program order, exactly as the functional simulator
checks it (docs/isa.md), before it is dispatched to its engine's queue:

1. an error response on its fetch (AXI_ERROR), an unknown opcode (UNKNOWN_OPCODE), nonzero
   unused bits (BAD_FIELD);
2. its flags in the order pop_prev, pop_next, push_prev, push_next: a flag without a neighbour
   is BAD_FIELD, a pop with no earlier push *in program order* is TOKEN_UNDERFLOW (the decoder
   keeps program-order token counts; so every dispatched pop is satisfiable and the engines
   cannot deadlock); an END with tokens outstanding is TOKEN_LEFT, with flags BAD_FIELD;
3. LOAD: buffer 3 / fc_weights on BIAS / packed4 where not allowed (BAD_FIELD), destination
   outside its buffer or the FC area, or DDR bytes beyond 2^32 (LOAD_RANGE); SAVE: source
   outside OUTPUT, DDR bytes beyond 2^32 (SAVE_RANGE), segments overlapping in DDR
   (BAD_FIELD). CALC fields are the Datapath's.

At the first failure the decoder stops dispatching; the instructions before it still run (as
in the functional simulator, which executed them), then the accelerator stops with the error.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import DISPATCH_DEPTH
from deepfpga.hw.isa import Buffer, Opcode
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.fields import (
    COUNT_BITS,
    FLAGS,
    INDEX_BITS,
    ROW_BITS,
    entry_layout,
    field,
    used_bits,
)
from deepfpga.rtl.accel.load import element_bytes_of, packed_allowed_of
from deepfpga.rtl.accel.tokens import CHANNEL_COUNT, flag_channel

QUEUE_DEPTH = DISPATCH_DEPTH
ENGINE_OPCODES = (Opcode.LOAD, Opcode.CALC, Opcode.SAVE)   # engine index = position
E = spec.ErrorCode


class Decoder(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig) -> None:
        self.cfg = cfg
        lay = data.StructLayout(entry_layout())
        super().__init__({
            "start": In(1), "count": In(INDEX_BITS), "halt": In(1),
            "f_valid": In(1), "f_ready": Out(1), "f_data": In(spec.WORD_BITS + 1),
            **{f"q{e}_{k}": d for e in range(3) for k, d in
               (("valid", Out(1)), ("ready", In(1)), ("data", Out(lay)))},
            "engines_idle": In(1),
            "need_words": Out(1), "finished": Out(1), "end_ok": Out(1),
            "end_index": Out(INDEX_BITS), "blocked": Out(1),
            "err_valid": Out(1), "err_code": Out(8), "err_index": Out(INDEX_BITS),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cfg = self.cfg
        lay = data.StructLayout(entry_layout())
        fifos = []
        for e in range(3):
            fifo = SyncFIFOBuffered(width=lay.size, depth=QUEUE_DEPTH)
            m.submodules[f"q{e}"] = fifo
            fifos.append(fifo)
            m.d.comb += [getattr(self, f"q{e}_valid").eq(fifo.r_rdy),
                         getattr(self, f"q{e}_data").eq(fifo.r_data),
                         fifo.r_en.eq(getattr(self, f"q{e}_ready"))]

        w = Signal(spec.WORD_BITS)
        w_err = Signal()
        index = Signal(INDEX_BITS)
        po = [Signal(INDEX_BITS, name=f"po{c}") for c in range(CHANNEL_COUNT)]
        op = Signal(4)
        m.d.comb += op.eq(w[:4])
        is_load = op == Opcode.LOAD

        # --- stage 1: products (LOAD and SAVE share the multipliers) ----------------------
        def pick(name: str) -> object:
            return Mux(is_load, field(w, Opcode.LOAD, name), field(w, Opcode.SAVE, name))

        length, n1, n2 = pick("length"), pick("n1"), pick("n2")
        s1, s2, ddr = pick("stride1"), pick("stride2"), pick("ddr_addr")
        buffer, fc = field(w, Opcode.LOAD, "buffer"), field(w, Opcode.LOAD, "fc_weights")
        packed = field(w, Opcode.LOAD, "packed4")
        eb = Mux(is_load, element_bytes_of(cfg, buffer, fc), cfg.data_bytes)
        n1m, n2m = Signal(signed(18)), Signal(signed(18))
        m.d.comb += [n1m.eq(Cat(n1, 0).as_signed() - 1), n2m.eq(Cat(n2, 0).as_signed() - 1)]
        n12, p1, p2 = Signal(32), Signal(signed(51)), Signal(signed(51))
        segb = Signal(ROW_BITS)
        m.d.sync += [n12.eq(n1 * n2), p1.eq(n1m * s1), p2.eq(n2m * s2),
                     segb.eq(Mux(is_load & packed, (length + 1) >> 1, length * eb))]
        # --- stage 2 ---------------------------------------------------------------------
        n = Signal(COUNT_BITS)
        end, row = Signal(signed(54)), Signal(signed(52))
        m.d.sync += [n.eq(n12 * length), end.eq(ddr + p1 + p2 + segb), row.eq(p1 + segb)]

        # --- stage 3: the checks, in the functional simulator's order ----------------------
        caps = {Buffer.INPUT: cfg.input_buffer_entries, Buffer.WEIGHT: cfg.weight_buffer_entries,
                Buffer.BIAS: cfg.bias_buffer_entries}
        fc_cap = min(cfg.fc_buffer_entries, cfg.input_buffer_entries)
        cap = Mux(buffer == Buffer.INPUT, Mux(fc, fc_cap, caps[Buffer.INPUT]),
                  Mux(buffer == Buffer.WEIGHT, caps[Buffer.WEIGHT], caps[Buffer.BIAS]))
        ddr_over = (n != 0) & (end > (1 << spec.AXI_ADDR_BITS))
        load_err = Mux(buffer == 3, E.BAD_FIELD,
                       Mux(fc & (buffer == Buffer.BIAS), E.BAD_FIELD,
                           Mux(packed & ~packed_allowed_of(cfg, buffer, fc), E.BAD_FIELD,
                               Mux((field(w, Opcode.LOAD, "buf_addr") + n > cap) | ddr_over,
                                   E.LOAD_RANGE, 0))))
        overlap = ((n1 > 1) & (s1 < segb)) | ((n2 > 1) & (s2 < row))
        save_err = Mux((field(w, Opcode.SAVE, "ob_addr") + n > cfg.output_buffer_entries)
                       | ddr_over, E.SAVE_RANGE, Mux(overlap, E.BAD_FIELD, 0))
        flags = {f: field(w, Opcode.END, f) for f in FLAGS}
        any_flag = flags["pop_prev"] | flags["pop_next"] | flags["push_prev"] | flags["push_next"]

        def token_err(engine: int) -> object:
            """First failing flag of an instruction of `engine`, in the simulator's order."""
            code = 0
            for f in reversed(FLAGS):
                spec_ = flag_channel(engine, f)
                if spec_ is None:
                    bad = flags[f]
                    code = Mux(bad, E.BAD_FIELD, code)
                elif spec_[1]:                         # a pop
                    code = Mux(flags[f] & (po[spec_[0]] == 0), E.TOKEN_UNDERFLOW, code)
            return code

        tokens_left = 0
        for c in range(CHANNEL_COUNT):
            tokens_left = tokens_left | (po[c] != 0)
        unused = Signal()
        with m.Switch(op):
            for o in Opcode:
                with m.Case(o):
                    ub = used_bits(o)
                    m.d.comb += unused.eq(w[ub:] != 0 if ub < spec.WORD_BITS else 0)
        code = Signal(8)
        with m.Switch(op):
            for e, o in enumerate(ENGINE_OPCODES):
                with m.Case(o):
                    te = token_err(e)
                    rest = {Opcode.LOAD: load_err, Opcode.SAVE: save_err}.get(o, 0)
                    m.d.comb += code.eq(Mux(unused, E.BAD_FIELD, Mux(te != 0, te, rest)))
            with m.Case(Opcode.END):
                m.d.comb += code.eq(Mux(unused, E.BAD_FIELD,
                                        Mux(tokens_left, E.TOKEN_LEFT,
                                            Mux(any_flag, E.BAD_FIELD, 0))))
            with m.Default():
                m.d.comb += code.eq(E.UNKNOWN_OPCODE)
        final_code = Mux(w_err, E.AXI_ERROR, code)

        # --- dispatch ----------------------------------------------------------------------
        entry = Signal(lay)
        m.d.comb += [entry.word.eq(w), entry.index.eq(index), entry.n.eq(n),
                     entry.row.eq(row)]
        for fifo in fifos:
            m.d.comb += fifo.w_data.eq(entry)
        queues_empty = 1
        for fifo in fifos:
            queues_empty = queues_empty & ~fifo.r_rdy & (fifo.level == 0)
        m.d.comb += [self.err_index.eq(index), self.end_index.eq(index)]
        def take_word() -> None:
            m.d.comb += self.f_ready.eq(1)
            m.d.sync += [w.eq(self.f_data[:spec.WORD_BITS]), w_err.eq(self.f_data[spec.WORD_BITS])]
            m.next = "S1"

        with m.FSM():
            with m.State("IDLE"), m.If(self.start):
                m.d.sync += [index.eq(0), *(p.eq(0) for p in po), self.end_ok.eq(0)]
                m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += self.need_words.eq(1)
                with m.If(self.halt):
                    m.next = "FINISHED"
                with m.Elif(index == self.count):
                    m.d.comb += [self.err_valid.eq(1), self.err_code.eq(E.FETCH_RANGE)]
                    m.next = "DRAIN"
                with m.Elif(self.f_valid):
                    take_word()
            with m.State("S1"):
                m.d.comb += self.need_words.eq(1)
                m.next = "S2"
            with m.State("S2"):
                m.d.comb += self.need_words.eq(1)
                m.next = "CHECK"
            with m.State("CHECK"):
                # check and dispatch in one cycle, and take the next word at once if it is there
                m.d.comb += self.need_words.eq(1)
                with m.If(self.halt):
                    m.next = "FINISHED"
                with m.Elif(final_code != 0):
                    m.d.comb += [self.err_valid.eq(1), self.err_code.eq(final_code)]
                    m.next = "DRAIN"
                with m.Elif(op == Opcode.END):
                    m.d.sync += self.end_ok.eq(1)
                    m.next = "DRAIN"
                for e, o in enumerate(ENGINE_OPCODES):
                    with m.Elif((op == o) & fifos[e].w_rdy):
                        m.d.comb += fifos[e].w_en.eq(1)
                        for f in FLAGS:
                            ch = flag_channel(e, f)
                            if ch is not None:
                                p = po[ch[0]]
                                m.d.sync += p.eq(Mux(flags[f], p - 1 if ch[1] else p + 1, p))
                        m.d.sync += index.eq(index + 1)
                        with m.If(self.f_valid & (index + 1 != self.count)):
                            take_word()
                        with m.Else():
                            m.next = "FETCH"
                with m.Else():
                    m.d.comb += self.blocked.eq(1)
            with m.State("DRAIN"):
                m.d.comb += self.blocked.eq(1)
                with m.If(self.halt | (queues_empty & self.engines_idle)):
                    m.next = "FINISHED"
            with m.State("FINISHED"):
                m.d.comb += self.finished.eq(1)
                with m.If(self.start):
                    m.d.sync += [index.eq(0), *(p.eq(0) for p in po), self.end_ok.eq(0)]
                    m.next = "FETCH"
        return m
