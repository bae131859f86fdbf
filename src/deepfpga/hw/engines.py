"""Rules of the accelerator's engines as the generated RTL builds them (deepfpga.rtl.accel),
written once: the RTL's modules take their geometry from here, and so does the resource model
(deepfpga.hw.resources).

- the CALC engine's geometry: B banks, the product grid of `grid_channels` output channels × B
  pixel lanes, the weight staging depth.

Plain Python, no Amaranth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepfpga.hw.accelerator import AcceleratorConfig


# --- the CALC engine's geometry ------------------------------------------------------------------

def bank_count(cfg: AcceleratorConfig) -> int:
    """B: banks of INPUT, WEIGHT and OUTPUT — the values one CALC read or write moves: the
    largest power of two ≤ convolvers_per_pe / 2. (A trade-off measured on fmnist-vgg and
    fmnist-alex on `zedboard`: B = 8 against 16 costs 13 % more CALC cycles on fmnist-vgg, saves
    18 % on fmnist-alex's narrow maps, and simulates 1.5× faster under Verilator.)"""
    return 1 << (max(1, cfg.convolvers_per_pe // 2).bit_length() - 1)


def grid_channels(cfg: AcceleratorConfig) -> int:
    """Output channels of the grid: the PEs' lanes (num_pe · convolvers_per_pe) over B."""
    return max(1, cfg.num_pe * cfg.convolvers_per_pe // bank_count(cfg))


def staging_depth(cfg: AcceleratorConfig) -> int:
    """Words of the grid's weight staging memory (WEIGHT entries / channels); a CONV with
    9·ti ≤ depth runs on the grid, others on the one-accumulator loop."""
    return max(9, cfg.weight_buffer_entries // grid_channels(cfg))


# --- widths and the finalize's pooling row --------------------------------------------------------

def operand_bits(cfg: AcceleratorConfig) -> int:
    """Entry width of INPUT and WEIGHT (the FC role swap puts weights into INPUT and data into
    WEIGHT)."""
    return max(cfg.data_bits, cfg.weight_bits)


def sum_bits(cfg: AcceleratorConfig) -> int:
    """Width at which an accumulator's sum is exact: |old| < 2^(acc_bits−1) plus at most
    9·4095 < 2^15.2 products of magnitude ≤ 2^(2·ob−2) stays below 2^max(acc_bits−1, 2·ob+14)+1,
    so overflow past acc_bits is always seen, never wrapped."""
    return max(cfg.acc_bits + 1, 2 * operand_bits(cfg) + 16)


def pool_width(cfg: AcceleratorConfig) -> int:
    """Widest accumulator row the finalize max-pool holds (the PE's padded row)."""
    return cfg.max_row_width + 2 * cfg.max_pad
