"""The instruction set, as the compiler and its users import it: deepfpga.hw.isa is its home
(the hardware/software contract sits with the hardware description, below the compiler)."""

from deepfpga.hw.isa import (
    HEADER_BYTES,
    INSTRUCTION_BYTES,
    INSTRUCTION_TYPES,
    MAGIC,
    VERSION,
    Buffer,
    Calc,
    CalcKind,
    End,
    Instruction,
    Load,
    Opcode,
    Program,
    Save,
    decode_instruction,
    decode_program,
    encode_instruction,
    encode_program,
    program_stats,
    replace,
)

__all__ = ["HEADER_BYTES", "INSTRUCTION_BYTES", "INSTRUCTION_TYPES", "MAGIC", "VERSION", "Buffer",
           "Calc", "CalcKind", "End", "Instruction", "Load", "Opcode", "Program", "Save",
           "decode_instruction", "decode_program", "encode_instruction", "encode_program",
           "program_stats", "replace"]
