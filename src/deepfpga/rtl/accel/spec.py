"""The accelerator's hardware contract: what the RTL top level, its C++ harness and the host
driver agree on. Plain Python (no Amaranth import), so the harness builder and the CLI read it
cheaply; the Amaranth side turns `FIELDS` into `data.StructLayout`s (see `layouts`).

- instruction field layouts come from `deepfpga.hw.isa` (one table; never re-typed here);
- the AXI4-Lite register map (32-bit registers, byte offsets);
- the sticky error codes;
- the names of the top-level ports of the Verilog module `TOP_NAME`.
"""

from __future__ import annotations

import enum

from deepfpga.hw.engines import AXI_BOUNDARY_BYTES, AXI_MAX_BURST_BEATS  # noqa: F401 - the contract's
from deepfpga.hw.isa import INSTRUCTION_BYTES, INSTRUCTION_TYPES, Opcode

TOP_NAME = "deepfpga_accel"
WORD_BITS = INSTRUCTION_BYTES * 8     # one instruction word
AXIL_ADDR_BITS = 12
AXIL_DATA_BITS = 32
AXI_ADDR_BITS = 32
ID_VALUE = 0xDF9A0001                 # read-only ID register: "deepfpga accelerator, v1"


def fields(opcode: Opcode) -> tuple[tuple[str, int, bool], ...]:
    """(name, bits, signed) of one instruction kind, from bit 0 up, as the ISA encodes them."""
    return INSTRUCTION_TYPES[opcode].all_fields()


def field_offsets(opcode: Opcode) -> dict[str, tuple[int, int, bool]]:
    """name -> (first bit, bits, signed) inside the 256-bit word."""
    out, pos = {}, 0
    for name, bits, signed in fields(opcode):
        out[name] = (pos, bits, signed)
        pos += bits
    return out


class Reg(enum.IntEnum):
    """AXI4-Lite register byte offsets (all 32 bits wide)."""

    CTRL = 0x00          # W: bit0 START (self-clearing), run from PROG_ADDR; bit1 CLEAR
    STATUS = 0x04        # R: bit0 DONE (sticky until START/CLEAR), bit1 BUSY, bit2 ERROR
    PROG_ADDR = 0x08     # RW: DDR byte address of the first instruction word to run
    PROG_COUNT = 0x0C    # RW: instruction words available from PROG_ADDR (fetch past it: error)
    ERROR_CODE = 0x10    # R: sticky ErrorCode of the first failure since START
    ERROR_INDEX = 0x14   # R: index (from PROG_ADDR, in words) of the failing instruction
    CYCLES_LO = 0x18     # R: cycles from START to DONE (or now, while busy)
    CYCLES_HI = 0x1C
    SAT_COUNT = 0x20     # R: values saturated by CALC finalizes since START
    END_INDEX = 0x24     # R: index (from PROG_ADDR) of the END that raised DONE
    ID = 0x28            # R: ID_VALUE
    CONFIG_HASH = 0x2C   # R: first 4 bytes of AcceleratorConfig.hash(), little-endian


class Status(enum.IntFlag):
    DONE = 1
    BUSY = 2
    ERROR = 4


class ErrorCode(enum.IntEnum):
    """Sticky error codes; the accelerator stops at the first one (never wraps silently)."""

    NONE = 0
    UNKNOWN_OPCODE = 1       # opcode not LOAD/CALC/SAVE/END
    BAD_FIELD = 2            # a field value the hardware does not run (unused bits, stride, ...)
    LOAD_RANGE = 3           # LOAD destination outside its buffer (or outside the FC area)
    CALC_RANGE = 4           # CALC operand or result outside its buffer
    SAVE_RANGE = 5           # SAVE source outside the output buffer
    TOKEN_UNDERFLOW = 6      # every engine waits for a token nobody will push (deadlock)
    TOKEN_LEFT = 7           # a token still outstanding at END
    FETCH_RANGE = 8          # ran past PROG_COUNT without an END
    AXI_ERROR = 9            # SLVERR/DECERR on a read or write response
    ACC_OVERFLOW = 10        # an accumulator left acc_bits (the compiler's proof was wrong)


# Top-level ports of TOP_NAME (Verilog names, exactly). DW = AcceleratorConfig.axi_data_bits.
# Clock and reset: `clk`, `rst` (synchronous, active high).
AXI_MASTER_PORTS = (
    # (name, direction seen from the accelerator, width; "DW" / "DW/8" mean the data width)
    ("m_axi_araddr", "out", AXI_ADDR_BITS), ("m_axi_arlen", "out", 8),
    ("m_axi_arsize", "out", 3), ("m_axi_arburst", "out", 2),
    ("m_axi_arvalid", "out", 1), ("m_axi_arready", "in", 1),
    ("m_axi_rdata", "in", "DW"), ("m_axi_rresp", "in", 2), ("m_axi_rlast", "in", 1),
    ("m_axi_rvalid", "in", 1), ("m_axi_rready", "out", 1),
    ("m_axi_awaddr", "out", AXI_ADDR_BITS), ("m_axi_awlen", "out", 8),
    ("m_axi_awsize", "out", 3), ("m_axi_awburst", "out", 2),
    ("m_axi_awvalid", "out", 1), ("m_axi_awready", "in", 1),
    ("m_axi_wdata", "out", "DW"), ("m_axi_wstrb", "out", "DW/8"), ("m_axi_wlast", "out", 1),
    ("m_axi_wvalid", "out", 1), ("m_axi_wready", "in", 1),
    ("m_axi_bresp", "in", 2), ("m_axi_bvalid", "in", 1), ("m_axi_bready", "out", 1),
)
AXIL_SLAVE_PORTS = (
    ("s_axil_awaddr", "in", AXIL_ADDR_BITS), ("s_axil_awvalid", "in", 1),
    ("s_axil_awready", "out", 1),
    ("s_axil_wdata", "in", AXIL_DATA_BITS), ("s_axil_wstrb", "in", AXIL_DATA_BITS // 8),
    ("s_axil_wvalid", "in", 1), ("s_axil_wready", "out", 1),
    ("s_axil_bresp", "out", 2), ("s_axil_bvalid", "out", 1), ("s_axil_bready", "in", 1),
    ("s_axil_araddr", "in", AXIL_ADDR_BITS), ("s_axil_arvalid", "in", 1),
    ("s_axil_arready", "out", 1),
    ("s_axil_rdata", "out", AXIL_DATA_BITS), ("s_axil_rresp", "out", 2),
    ("s_axil_rvalid", "out", 1), ("s_axil_rready", "in", 1),
)
# Observation ports for the harness (not needed on a board): one pulse when an engine starts an
# instruction (after its token pops) and one when it completes it (before its pushes), with the
# instruction's index from PROG_ADDR; the CALC end also carries the values it saturated.
TRACE_PORTS = (
    ("irq", "out", 1),                       # DONE or ERROR
    *((f"tr_{e}_{k}", "out", w) for e in ("load", "calc", "save")
      for k, w in (("start", 1), ("end", 1), ("index", 32))),
    ("tr_calc_sat", "out", 32),
)
