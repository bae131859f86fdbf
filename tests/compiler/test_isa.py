"""Instruction encoding: round trips over random programs, range refusals, corrupted files."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfpga.compiler.builder import _make
from deepfpga.errors import InputError
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import (
    HEADER_BYTES,
    INSTRUCTION_BYTES,
    VERSION,
    Calc,
    CalcKind,
    End,
    Instruction,
    Load,
    Program,
    Save,
    decode_instruction,
    decode_program,
    encode_instruction,
    encode_program,
    program_crc,
)


def _field_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def instruction_strategy(cls: type[Instruction]) -> st.SearchStrategy[Instruction]:
    fields = {name: st.integers(*_field_range(bits, signed))
              for name, bits, signed in cls.all_fields() if name != "opcode"}
    return st.builds(cls, **fields)


ANY_INSTRUCTION = st.one_of(*(instruction_strategy(c) for c in (Load, Calc, Save, End)))


@settings(max_examples=300, deadline=None)
@given(ANY_INSTRUCTION)
def test_instruction_round_trip(ins: Instruction) -> None:
    word = encode_instruction(ins)
    assert len(word) == INSTRUCTION_BYTES
    assert decode_instruction(word) == ins


@settings(max_examples=60, deadline=None)
@given(st.lists(ANY_INSTRUCTION, max_size=40), st.binary(min_size=32, max_size=32))
def test_program_round_trip(ins: list[Instruction], chash: bytes) -> None:
    prog = Program(chash, tuple(ins))
    data = encode_program(prog)
    assert len(data) == HEADER_BYTES + INSTRUCTION_BYTES * len(ins)
    assert decode_program(data, chash) == prog


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([Load, Calc, Save]), st.data())
def test_out_of_range_fields_refused(cls: type[Instruction], data: st.DataObject) -> None:
    name, bits, signed = data.draw(st.sampled_from(
        [f for f in cls.all_fields() if f[0] != "opcode"]))
    lo, hi = _field_range(bits, signed)
    bad = data.draw(st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1)))
    with pytest.raises(InputError, match=rf"{cls.__name__}\.{name} = -?\d+ outside its"
                                         rf" {bits}-bit field"):
        cls(**{name: bad})
    with pytest.raises(InputError, match=rf"{cls.__name__}\.{name}"):
        _make(cls, {name: bad})          # the builder's fast constructor refuses the same


@settings(max_examples=100, deadline=None)
@given(ANY_INSTRUCTION)
def test_fast_constructor_matches_dataclass(ins: Instruction) -> None:
    values = {n: getattr(ins, n) for n, _, _ in ins.all_fields() if n != "opcode"}
    made = _make(type(ins), values)
    assert made == ins and encode_instruction(made) == encode_instruction(ins)


def test_non_integer_field_refused() -> None:
    with pytest.raises(InputError, match="must be an integer"):
        Calc(ti=1.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="must be an integer"):
        Load(length=True)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def program_bytes() -> tuple[bytes, bytes]:
    cfg = load_config("tiny")
    prog = Program(cfg.hash(), (Load(length=4, push_next=1), Calc(ti=1, to=1, pop_prev=1),
                                Save(), End()))
    return encode_program(prog), cfg.hash()


def test_truncated_program_refused(program_bytes: tuple[bytes, bytes]) -> None:
    data, chash = program_bytes
    with pytest.raises(InputError, match="truncated or padded"):
        decode_program(data[:-5], chash)
    with pytest.raises(InputError, match="shorter than its 48-byte header"):
        decode_program(data[:20], chash)


def test_flipped_byte_refused(program_bytes: tuple[bytes, bytes]) -> None:
    data, chash = program_bytes
    for pos in (HEADER_BYTES, HEADER_BYTES + 37, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x04
        with pytest.raises(InputError, match="CRC32 mismatch"):
            decode_program(bytes(bad), chash)


def test_wrong_version_magic_and_config_refused(program_bytes: tuple[bytes, bytes]) -> None:
    data, chash = program_bytes
    bad = bytearray(data)
    struct.pack_into("<H", bad, 4, 99)
    with pytest.raises(InputError, match="version 99 is not supported"):
        decode_program(bytes(bad), chash)
    with pytest.raises(InputError, match="not a deepfpga program"):
        decode_program(b"XXXX" + data[4:], chash)
    with pytest.raises(InputError, match="different accelerator configuration"):
        decode_program(data, load_config("zedboard").hash())


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions_still_read(program_bytes: tuple[bytes, bytes], version: int) -> None:
    """Version 2 added the CALC kind CONV1, version 3 the header in the CRC; a version-1 or -2
    file (CRC of the body only) is still read."""
    data, chash = program_bytes
    assert struct.unpack_from("<H", data, 4) == (VERSION,) and VERSION == 4
    old = bytearray(data)
    struct.pack_into("<H", old, 4, version)
    struct.pack_into("<I", old, 12, zlib.crc32(data[HEADER_BYTES:]))
    assert decode_program(bytes(old), chash) == decode_program(data, chash)
    old[20] ^= 1       # their CRC does not cover the config hash: only the expected hash sees it
    with pytest.raises(InputError, match="config hash mismatch"):
        decode_program(bytes(old), chash)
    conv1 = Program(chash, (Calc(kind=CalcKind.CONV1, ti=7, to=3), End()))
    assert decode_program(encode_program(conv1), chash) == conv1


def test_bad_opcode_and_stray_bits_refused(program_bytes: tuple[bytes, bytes]) -> None:
    data, chash = program_bytes

    def with_body(body: bytes) -> bytes:
        head = bytearray(data[:HEADER_BYTES])
        struct.pack_into("<I", head, 8, len(body) // INSTRUCTION_BYTES)
        struct.pack_into("<I", head, 12, program_crc(bytes(head), body))
        return bytes(head) + body

    word = bytearray(encode_instruction(End()))
    word[0] = (word[0] & 0xF0) | 7
    with pytest.raises(InputError, match="instruction 0: unknown opcode 7"):
        decode_program(with_body(bytes(word)), chash)
    word = bytearray(encode_instruction(End()))
    word[31] = 0x80
    with pytest.raises(InputError, match=r"instruction 0 \(End\): unused bits are not zero"):
        decode_program(with_body(bytes(word)), chash)


def _with_version(data: bytes, version: int) -> bytes:
    """`data` relabelled as format `version` (3 and 4: the header in the CRC)."""
    old = bytearray(data)
    struct.pack_into("<H", old, 4, version)
    struct.pack_into("<I", old, 12, 0)
    struct.pack_into("<I", old, 12, program_crc(bytes(old[:HEADER_BYTES]),
                                                bytes(old[HEADER_BYTES:])))
    return bytes(old)


def test_packed4_round_trips_and_version_3_is_read(program_bytes: tuple[bytes, bytes]
                                                   ) -> None:
    """Version 4 added LOAD.packed4 (bit 191); a version-3 program (whose LOADs have the bit
    zero) still reads, and a version-3 program with the bit set is refused as unused bits."""
    data, chash = program_bytes
    assert decode_program(_with_version(data, 3), chash) == decode_program(data, chash)
    ld = Load(buffer=1, length=27, n1=5, stride1=14, packed4=1, ddr_addr=64)
    assert decode_instruction(encode_instruction(ld)) == ld
    assert int.from_bytes(encode_instruction(ld), "little") >> 191 == 1
    prog = Program(chash, (ld, End()))
    assert decode_program(encode_program(prog), chash) == prog
    with pytest.raises(InputError, match=r"instruction 0 \(Load\): unused bits are not zero"
                       r" \(field packed4 needs format version 4"):
        decode_program(_with_version(encode_program(prog), 3), chash)
    with pytest.raises(InputError, match="packed4 = 2 outside its 1-bit field"):
        Load(packed4=2)


def test_calc_out_pitch_field_round_trips() -> None:
    c = Calc(ti=3, to=2, out_pitch=65535, data_shift=-128, out_addr=(1 << 20) - 1)
    assert decode_instruction(encode_instruction(c)) == c
    assert dataclasses.replace(c, out_pitch=0) != c
