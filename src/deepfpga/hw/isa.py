"""The accelerator's instruction set: instructions, program header, binary encoding.

Every instruction is one 256-bit (32-byte) little-endian word. Fields are packed from bit 0 in the
order of each class's FIELDS table; every field is range-checked on encode and on decode, so a
program can never carry a value the hardware would silently truncate. docs/isa.md is the manual.

Three engines run the stream, as in the paper's controller: LOAD (DDR → input/weight/bias
buffer), CALC (the PEs) and SAVE (output buffer → DDR). Each executes its own instructions in
program order; the four dependency flags synchronise neighbours through token counters so that
loads, compute and stores of adjacent tiles overlap (double buffering):
  LOAD:  pop_next waits for a CALC→LOAD token (buffer free); push_next gives LOAD→CALC (data ready)
  CALC:  pop_prev waits for LOAD→CALC; pop_next waits for SAVE→CALC (output region free);
         push_prev gives CALC→LOAD; push_next gives CALC→SAVE (results ready)
  SAVE:  pop_prev waits for CALC→SAVE; push_prev gives SAVE→CALC
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from deepfpga.errors import InputError

INSTRUCTION_BYTES = 32
MAGIC = b"DFPG"
# 2: CALC kind CONV1 (a 1×1 convolution, one term per input channel). 3: the CRC covers the
# header's other fields too (1 and 2 covered only the body, so a damaged config hash decoded as
# another config's program). Older programs are still read (their CRC checked as they wrote
# it); a tool that knows only an older version refuses a newer file by its header. 4: LOAD
# field packed4 (4-bit weights two per byte); in an older program its bit is an unused bit.
VERSION = 4
READ_VERSIONS = (1, 2, 3, 4)
_BODY_CRC_VERSIONS = (1, 2)
# magic, version, flags, instruction count, CRC32, config SHA-256
_HEADER = struct.Struct("<4sHHII32s")
HEADER_BYTES = _HEADER.size


class Opcode(enum.IntEnum):
    LOAD = 1
    CALC = 2
    SAVE = 3
    END = 15


class Buffer(enum.IntEnum):
    INPUT = 0     # feature-map tiles (CONV); FC weight blocks (paper §7.3)
    WEIGHT = 1    # 3×3 (sub-)kernels (CONV); the FC input vector
    BIAS = 2


class CalcKind(enum.IntEnum):
    CONV = 0
    FC = 1
    CONV1 = 2     # 1×1 convolution: weights dense (to, ti), one term per input channel


# Weight values (= terms) per (output, input) channel pair of each CALC kind: the 3×3 window of
# a CONV, the single tap of a CONV1 or an FC weight. The one table of the ISA's weight shapes.
CALC_TAPS: dict[CalcKind, int] = {CalcKind.CONV: 9, CalcKind.FC: 1, CalcKind.CONV1: 1}


# (name, bits, signed). Common header of every instruction comes first.
_COMMON: tuple[tuple[str, int, bool], ...] = (
    ("opcode", 4, False),
    ("pop_prev", 1, False),
    ("pop_next", 1, False),
    ("push_prev", 1, False),
    ("push_next", 1, False),
    ("layer", 12, False),        # index into the manifest's layer table (timing, diffing)
)


@dataclass(frozen=True)
class Instruction:
    pop_prev: int = 0
    pop_next: int = 0
    push_prev: int = 0
    push_next: int = 0
    layer: int = 0

    OPCODE: ClassVar[Opcode]
    FIELDS: ClassVar[tuple[tuple[str, int, bool], ...]]

    @classmethod
    def all_fields(cls) -> tuple[tuple[str, int, bool], ...]:
        return _COMMON + cls.FIELDS

    @classmethod
    def field_range(cls, name: str) -> tuple[int, int]:
        """Smallest and largest value field `name` encodes (from the encoding table)."""
        for fname, bits, signed in cls.all_fields():
            if fname == name:
                return _field_range(bits, signed)
        raise KeyError(f"{cls.__name__} has no field {name!r}")

    @classmethod
    def max(cls, name: str) -> int:
        """Largest value field `name` encodes: `Calc.max("ti")` = 4095."""
        return cls.field_range(name)[1]

    def __post_init__(self) -> None:
        for name, bits, signed in self.all_fields():
            if name == "opcode":
                continue
            _check_range(type(self).__name__, name, getattr(self, name), bits, signed)


@dataclass(frozen=True)
class Load(Instruction):
    """DDR → buffer. Reads n2 × n1 segments of `length` elements:
    segment (j, i) starts at ddr_addr + j·stride2 + i·stride1 (bytes) and lands densely, in that
    order, at buf_addr (elements) of `buffer`. Element size: data, weight or bias bytes of the
    config by buffer. `fc_weights` = 1 marks the FC role swap (paper §7.3): into INPUT it loads
    FC weight blocks (weight bytes; they must lie in the first fc_buffer_bytes of the buffer),
    into WEIGHT it loads the FC input vector (data bytes). `packed4` = 1: weights of 4 bits two
    per DDR byte, low nibble first, sign-extended into the entries; a segment takes
    ⌈length/2⌉ bytes (an odd segment's last high nibble is padding). Only for weight loads
    (INPUT with fc_weights, WEIGHT without) on a config whose weight element is one byte."""

    buffer: int = 0
    fc_weights: int = 0
    buf_addr: int = 0
    ddr_addr: int = 0
    length: int = 1
    n1: int = 1
    stride1: int = 0
    n2: int = 1
    stride2: int = 0
    packed4: int = 0

    OPCODE: ClassVar[Opcode] = Opcode.LOAD
    FIELDS: ClassVar[tuple[tuple[str, int, bool], ...]] = (
        ("buffer", 2, False),
        ("fc_weights", 1, False),
        ("buf_addr", 24, False),
        ("ddr_addr", 32, False),
        ("length", 16, False),
        ("n1", 16, False),
        ("stride1", 32, False),
        ("n2", 16, False),
        ("stride2", 32, False),
        ("packed4", 1, False),       # since format version 4
    )


# Fields added by a format version: in an older program their bits are unused (must be zero).
FIELD_SINCE: dict[tuple[Opcode, str], int] = {(Opcode.LOAD, "packed4"): 4}


@dataclass(frozen=True)
class Calc(Instruction):
    """One tile of compute on the PEs.

    CONV: input tile at ib_addr, dense (ti, in_rows, in_cols); weights at wb_addr, dense
    (to, ti, 3, 3); accumulators at ob_addr, dense (to, out_rows, out_cols). Output (o, y, x) adds
    Σ_{i,ky,kx<3} w[o,i,ky,kx] · tile[i, y·stride + koff_y + ky − pad_top,
    x·stride + koff_x + kx − pad_left], positions outside the tile reading 0 (zero padding).
    koff_y/koff_x select the 3×3 sub-kernel of a decomposed larger kernel.
    CONV1: the same with one tap: weights dense (to, ti), ky = kx = 0 only.
    FC: the vector (ti) at wb_addr, the weight block dense (to, ti) at ib_addr; out_rows =
    out_cols = in_rows = in_cols = 1.
    accumulate=0 initialises the accumulators, 1 adds to them. finalize=1 then applies the
    contract's steps 2–5 to the accumulators: + bias[bb_addr..] << bias_shift (if has_bias), ReLU
    (if relu), data shift by data_shift (signed; round half up), saturate to out_bits, 2×2/2 max
    pool (if pool), and writes the data values (to, rows, cols) at out_addr in the output
    buffer, rows × cols dense per channel and channel o at out_addr + o·out_pitch (out_pitch = 0:
    dense, pitch rows·cols). A pitch lets consecutive tiles' outputs interleave in a staging area
    so one SAVE writes long per-channel runs (paper §7.2). Pooling floors odd sizes.
    to = 0 (or ti = 0) is a no-operation: only its dependency flags act (a synchronisation
    point, e.g. to relay a SAVE→LOAD dependency through DDR)."""

    kind: int = 0
    ib_addr: int = 0
    wb_addr: int = 0
    ob_addr: int = 0
    ti: int = 1
    to: int = 1
    in_rows: int = 1
    in_cols: int = 1
    out_rows: int = 1
    out_cols: int = 1
    stride: int = 1
    pad_top: int = 0
    pad_left: int = 0
    koff_y: int = 0
    koff_x: int = 0
    accumulate: int = 0
    finalize: int = 0
    has_bias: int = 0
    bb_addr: int = 0
    bias_shift: int = 0
    relu: int = 0
    data_shift: int = 0
    out_bits: int = 16
    pool: int = 0
    out_addr: int = 0
    out_pitch: int = 0

    OPCODE: ClassVar[Opcode] = Opcode.CALC
    FIELDS: ClassVar[tuple[tuple[str, int, bool], ...]] = (
        ("kind", 2, False),           # CalcKind: 0 CONV, 1 FC, 2 CONV1 (3 invalid)
        ("ib_addr", 24, False),
        ("wb_addr", 24, False),
        ("ob_addr", 20, False),
        ("ti", 12, False),
        ("to", 12, False),
        ("in_rows", 12, False),
        ("in_cols", 12, False),
        ("out_rows", 12, False),
        ("out_cols", 12, False),
        ("stride", 3, False),
        ("pad_top", 3, False),
        ("pad_left", 3, False),
        ("koff_y", 4, False),
        ("koff_x", 4, False),
        ("accumulate", 1, False),
        ("finalize", 1, False),
        ("has_bias", 1, False),
        ("bb_addr", 16, False),
        ("bias_shift", 6, False),
        ("relu", 1, False),
        ("data_shift", 8, True),
        ("out_bits", 6, False),
        ("pool", 1, False),
        ("out_addr", 20, False),
        ("out_pitch", 16, False),
    )


@dataclass(frozen=True)
class Save(Instruction):
    """Output buffer → DDR: the data values at ob_addr (dense, in order) are written as n2 × n1
    segments of `length` elements, segment (j, i) at ddr_addr + j·stride2 + i·stride1 (bytes)."""

    ob_addr: int = 0
    ddr_addr: int = 0
    length: int = 1
    n1: int = 1
    stride1: int = 0
    n2: int = 1
    stride2: int = 0

    OPCODE: ClassVar[Opcode] = Opcode.SAVE
    FIELDS: ClassVar[tuple[tuple[str, int, bool], ...]] = (
        ("ob_addr", 20, False),
        ("ddr_addr", 32, False),
        ("length", 16, False),
        ("n1", 16, False),
        ("stride1", 32, False),
        ("n2", 16, False),
        ("stride2", 32, False),
    )


@dataclass(frozen=True)
class End(Instruction):
    """Every engine drains, then the accelerator raises done. The last instruction is always END;
    an END before it closes an accelerator segment: the host runs its layers (manifest
    `schedule`) and restarts the accelerator at the next instruction. No token crosses an END."""

    OPCODE: ClassVar[Opcode] = Opcode.END
    FIELDS: ClassVar[tuple[tuple[str, int, bool], ...]] = ()


INSTRUCTION_TYPES: dict[Opcode, type[Instruction]] = {
    cls.OPCODE: cls for cls in (Load, Calc, Save, End)
}

for _cls in INSTRUCTION_TYPES.values():  # the layout must fit one word; checked once, cheaply
    assert sum(b for _, b, _ in _cls.all_fields()) <= INSTRUCTION_BYTES * 8, _cls


@functools.cache
def _decode_table(cls: type[Instruction]) -> tuple[tuple[tuple[str, int, int, int], ...], int]:
    """(name, shift, mask, sign bit or 0) per field after the opcode, and the used bits."""
    out, pos = [], 0
    for name, bits, signed in cls.all_fields():
        if name != "opcode":
            out.append((name, pos, (1 << bits) - 1, 1 << (bits - 1) if signed else 0))
        pos += bits
    return tuple(out), pos


def _field_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _check_range(where: str, name: str, value: object, bits: int, signed: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}.{name} must be an integer, got {value!r}")
    lo, hi = _field_range(bits, signed)
    if not lo <= value <= hi:
        raise InputError(f"{where}.{name} = {value} outside its {bits}-bit field [{lo}, {hi}]")


@dataclass(frozen=True)
class Program:
    """An instruction stream bound to one AcceleratorConfig (by its hash)."""

    config_hash: bytes
    instructions: tuple[Instruction, ...]

    def __post_init__(self) -> None:
        if len(self.config_hash) != 32:
            raise InputError("program config hash must be 32 bytes (SHA-256)")
        object.__setattr__(self, "instructions", tuple(self.instructions))


def encode_instruction(ins: Instruction) -> bytes:
    word, pos = 0, 0
    for name, bits, signed in ins.all_fields():
        v = int(ins.OPCODE) if name == "opcode" else getattr(ins, name)
        _check_range(type(ins).__name__, name, v, bits, signed)
        word |= (v & ((1 << bits) - 1)) << pos
        pos += bits
    return word.to_bytes(INSTRUCTION_BYTES, "little")


def decode_instruction(data: bytes, index: int = 0, version: int = VERSION) -> Instruction:
    """One instruction word of a program of format `version` (fields added after it must be
    zero: they were unused bits then)."""
    word = int.from_bytes(data, "little")
    opcode = word & 0xF
    try:
        cls = INSTRUCTION_TYPES[Opcode(opcode)]
    except ValueError:
        raise InputError(f"instruction {index}: unknown opcode {opcode}") from None
    fields, pos = _decode_table(cls)
    if word >> pos:
        raise InputError(f"instruction {index} ({cls.__name__}): unused bits are not zero")
    values = {}
    for name, shift, mask, sign in fields:
        v = (word >> shift) & mask
        if sign and v & sign:
            v -= sign << 1
        values[name] = v
    for (op, name), since in FIELD_SINCE.items():
        if op == cls.OPCODE and version < since and values[name]:
            raise InputError(f"instruction {index} ({cls.__name__}): unused bits are not zero"
                             f" (field {name} needs format version {since}, the program is"
                             f" version {version})")
    # Every field was masked to its width (signed ones sign-extended), so each value lies in
    # its field's range by construction: the constructor's range checks could never fail here
    # and are skipped (encode and direct construction still check).
    ins = object.__new__(cls)
    ins.__dict__.update(values)
    return ins


def program_crc(header: bytes, body: bytes) -> int:
    """CRC32 of the header with its CRC field zeroed, then the body."""
    return zlib.crc32(body, zlib.crc32(header[:12] + bytes(4) + header[16:]))


def encode_program(program: Program) -> bytes:
    body = b"".join(encode_instruction(i) for i in program.instructions)
    header = _HEADER.pack(MAGIC, VERSION, 0, len(program.instructions), 0, program.config_hash)
    header = _HEADER.pack(MAGIC, VERSION, 0, len(program.instructions),
                          program_crc(header, body), program.config_hash)
    return header + body


def decode_program(data: bytes, expected_config_hash: bytes | None = None) -> Program:
    """Parse and check a program file; refuses bad magic, version, length, CRC or config."""
    if len(data) < HEADER_BYTES:
        raise InputError(f"program is {len(data)} bytes, shorter than its {HEADER_BYTES}-byte"
                         " header (truncated?)")
    magic, version, _flags, count, crc, chash = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise InputError(f"not a deepfpga program: magic {magic!r}, expected {MAGIC!r}")
    if version not in READ_VERSIONS:
        raise InputError(f"program format version {version} is not supported (this reads"
                         f" {', '.join(map(str, READ_VERSIONS))})")
    body = data[HEADER_BYTES:]
    if len(body) != count * INSTRUCTION_BYTES:
        raise InputError(f"program body is {len(body)} bytes, header says {count} instructions"
                         f" ({count * INSTRUCTION_BYTES} bytes): truncated or padded")
    actual = (zlib.crc32(body) if version in _BODY_CRC_VERSIONS
              else program_crc(data[:HEADER_BYTES], body))
    if actual != crc:
        raise InputError(f"program CRC32 mismatch (recorded {crc:#010x}, header and body give"
                         f" {actual:#010x}): the file is corrupted")
    if expected_config_hash is not None and chash != expected_config_hash:
        raise InputError("program was compiled for a different accelerator configuration"
                         " (config hash mismatch)")
    ins = tuple(
        decode_instruction(body[k * INSTRUCTION_BYTES:(k + 1) * INSTRUCTION_BYTES], k, version)
        for k in range(count)
    )
    return Program(chash, ins)


def replace(ins: Instruction, **changes: int) -> Instruction:
    return dataclasses.replace(ins, **changes)


def program_stats(instructions: Sequence[Instruction]) -> dict[str, int]:
    counts = {op.name: 0 for op in Opcode}
    for i in instructions:
        counts[i.OPCODE.name] += 1
    return counts
