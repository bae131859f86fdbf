"""The Datapath's on-chip buffers: widths and capacities from the one AcceleratorConfig.

Every buffer is an `amaranth.lib.memory.Memory` with synchronous read ports and one write port:
the shape block RAM maps to. Entry widths follow docs/isa.md and RTL_INTERFACES: INPUT and
WEIGHT hold max(data_bits, weight_bits) (the FC role swap puts weights into INPUT and data into
WEIGHT), BIAS holds bias_bits, OUTPUT holds acc_bits (finalized data values live there too,
sign-extended).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.params import bits_for


def element_bits(cfg: AcceleratorConfig) -> int:
    """EW: the width of `ld_data` (any element the LOAD engine delivers)."""
    return max(cfg.data_bits, cfg.weight_bits, cfg.bias_bits)


def operand_bits(cfg: AcceleratorConfig) -> int:
    """Entry width of INPUT and WEIGHT."""
    return max(cfg.data_bits, cfg.weight_bits)


@dataclass(frozen=True)
class BufferGeometry:
    """Entries of each buffer and the address widths the CALC engine uses."""

    input_entries: int
    weight_entries: int
    bias_entries: int
    output_entries: int
    fc_entries: int          # FC weight blocks: the first fc_entries entries of INPUT

    @classmethod
    def of(cls, cfg: AcceleratorConfig) -> BufferGeometry:
        return cls(cfg.input_buffer_entries, cfg.weight_buffer_entries,
                   cfg.bias_buffer_entries, cfg.output_buffer_entries,
                   min(cfg.fc_buffer_entries, cfg.input_buffer_entries))

    def addr_bits(self, entries: int) -> int:
        return bits_for(max(1, entries - 1))
