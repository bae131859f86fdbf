"""The CALC grid's geometry from the two keys it depends on, written once: deepfpga.hw.engines
(the RTL's rules) and AcceleratorConfig's peak both use it, without importing each other."""

from __future__ import annotations


def banks(convolvers_per_pe: int) -> int:
    """B: the largest power of two ≤ convolvers_per_pe / 2 (see engines.bank_count)."""
    return 1 << (max(1, convolvers_per_pe // 2).bit_length() - 1)


def channels(num_pe: int, convolvers_per_pe: int) -> int:
    """Output channels of the grid: the PEs' lanes over B."""
    return max(1, num_pe * convolvers_per_pe // banks(convolvers_per_pe))


def products(num_pe: int, convolvers_per_pe: int) -> int:
    """Products the grid computes per cycle: channels × B lanes, one product per lane."""
    return channels(num_pe, convolvers_per_pe) * banks(convolvers_per_pe)
