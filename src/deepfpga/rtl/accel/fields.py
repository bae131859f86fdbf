"""Instruction-word fields as Amaranth slices, from `spec.field_offsets` (never re-typed), and
the configuration-derived constants the DMA engines share."""

from __future__ import annotations

from amaranth.hdl import Value

from deepfpga.hw.isa import Opcode
from deepfpga.rtl.accel import spec

INDEX_BITS = 32          # instruction index (from PROG_ADDR, in words)
COUNT_BITS = 48          # n2·n1·length elements (three 16-bit factors)
ROW_BITS = 35            # bytes of one contiguous row: n1·length·element bytes (≤ 2^34)


def field(word: Value, opcode: Opcode, name: str) -> Value:
    """The field `name` of an instruction of kind `opcode` (signed fields sign-extended)."""
    off, bits, signed = spec.field_offsets(opcode)[name]
    v = word[off:off + bits]
    return v.as_signed() if signed else v


def used_bits(opcode: Opcode) -> int:
    """Bits of the word the fields of `opcode` occupy (the rest must be zero)."""
    return sum(bits for _, bits, _ in spec.fields(opcode))


FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


def entry_layout() -> dict[str, int]:
    """One instruction in an engine queue: the raw word, its index and what the decoder
    already computed for a LOAD/SAVE (elements n2·n1·length, bytes of a contiguous row)."""
    return {"word": spec.WORD_BITS, "index": INDEX_BITS, "n": COUNT_BITS, "row": ROW_BITS}


def engine_port_signature() -> dict[str, object]:
    """What every engine shares: its queue (read side), the token handshake and trace pulses.
    `want` with the current instruction's flags asks the token unit; `ok` grants the pops (taken
    on `take`); `push` gives the pushes; `active` = started and not finished. `index` is the
    instruction waiting for its tokens, `tr_index` the one a trace pulse is about, `err_index`
    the one an error report is about (they differ while an engine overlaps two instructions)."""
    from amaranth.lib import data
    from amaranth.lib.wiring import In, Out

    return {
        "q_valid": In(1), "q_ready": Out(1), "q_data": In(data.StructLayout(entry_layout())),
        **{f: Out(1) for f in FLAGS},
        "want": Out(1), "ok": In(1), "take": Out(1), "push": Out(1),
        "busy": Out(1), "active": Out(1), "index": Out(INDEX_BITS),
        "tr_start": Out(1), "tr_end": Out(1), "tr_index": Out(INDEX_BITS),
        "err_valid": Out(1), "err_code": Out(8), "err_index": Out(INDEX_BITS),
    }
