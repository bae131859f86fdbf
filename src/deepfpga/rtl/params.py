"""Generator parameters of the Processing Element and the widths derived from them.

Plain Python (no Amaranth import) so the CLI and the synthesis driver can validate parameters
cheaply. `PEParams.from_config` reads the one hardware description, `AcceleratorConfig`; the
ISA-derived limits (window, data-shift width) and what the RTL cannot run yet (RTL_MAX_STRIDE,
RTL_MAX_PAD) come from deepfpga.hw.arch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepfpga.errors import InputError
from deepfpga.hw.arch import DATA_SHIFT_RANGE, KERNEL, RTL_MAX_PAD, TAPS

if TYPE_CHECKING:
    from deepfpga.hw.accelerator import AcceleratorConfig

__all__ = ["KERNEL", "MAX_CONVOLVERS", "ROW_BITS", "SHIFT_BITS", "TAPS", "PEParams", "bits_for"]

ROW_BITS = 16         # run-time tile height: up to 2^16 - 1 rows (rows need no line buffer)
# run-time data shift: the CALC data_shift field's width (signed, -128..127)
SHIFT_BITS = (DATA_SHIFT_RANGE[1] - DATA_SHIFT_RANGE[0]).bit_length()
MAX_CONVOLVERS = 256


def bits_for(n: int) -> int:
    """Bits of an unsigned counter that holds 0..n."""
    return max(1, int(n).bit_length())


@dataclass(frozen=True)
class PEParams:
    """One PE: `convolvers` 3×3 convolvers working on as many input channels at once.

    max_row_width: widest unpadded input row a tile may have; the line buffers hold
    max_row_width + 2·max_pad pixels, so any padded row width up to that fits.
    """

    # No defaults: every PE comes from an AcceleratorConfig (`from_config`), or a caller that
    # names each value (tests); the config is the one description of the hardware.
    convolvers: int
    data_bits: int
    weight_bits: int
    bias_bits: int
    acc_bits: int
    max_row_width: int
    max_pad: int

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise InputError(f"PE parameter {key!r}={getattr(self, key)!r}: {what}")

        for key in ("convolvers", "data_bits", "weight_bits", "bias_bits", "acc_bits",
                    "max_row_width", "max_pad"):
            v = getattr(self, key)
            need(isinstance(v, int) and not isinstance(v, bool), key, "must be an integer")
        need(1 <= self.convolvers <= MAX_CONVOLVERS, "convolvers", f"must be 1..{MAX_CONVOLVERS}")
        need(2 <= self.data_bits <= 32, "data_bits", "must be 2..32")
        need(2 <= self.weight_bits <= 32, "weight_bits", "must be 2..32")
        need(self.data_bits + self.weight_bits <= self.acc_bits <= 60, "acc_bits",
             "must be at least data_bits + weight_bits and at most 60")
        need(2 <= self.bias_bits <= min(32, self.acc_bits), "bias_bits",
             "must be 2..32 and at most acc_bits")
        need(0 <= self.max_pad <= RTL_MAX_PAD, "max_pad",
             f"must be 0..{RTL_MAX_PAD} (the padder's limit, deepfpga.hw.arch.RTL_GAPS)")
        need(1 <= self.max_row_width <= 8192 and self.max_row_width + 2 * self.max_pad >= KERNEL,
             "max_row_width", "must be 1..8192, and a padded row must hold a 3-wide window")

    @classmethod
    def from_config(cls, cfg: AcceleratorConfig, **overrides: Any) -> PEParams:
        """The PE that `cfg` describes (convolvers_per_pe, data/weight/bias/acc bits, row width)."""
        d = {
            "convolvers": cfg.convolvers_per_pe,
            "data_bits": cfg.data_bits,
            "weight_bits": cfg.weight_bits,
            "bias_bits": min(cfg.bias_bits, cfg.acc_bits),
            "acc_bits": cfg.acc_bits,
            "max_row_width": cfg.max_row_width,
            "max_pad": cfg.max_pad,
        }
        d.update(overrides)
        return cls(**d)

    # --- derived widths ---------------------------------------------------------------------
    @property
    def line_depth(self) -> int:
        """Pixels one line buffer holds: the widest padded row."""
        return self.max_row_width + 2 * self.max_pad

    @property
    def col_bits(self) -> int:
        return bits_for(self.line_depth)

    @property
    def pad_bits(self) -> int:
        return bits_for(self.max_pad)

    @property
    def conv_bits(self) -> int:
        """Width of one convolver's result: 9 products of data×weight bits, + 4 bits of growth."""
        return self.data_bits + self.weight_bits + 4

    @property
    def multipliers(self) -> int:
        return self.convolvers * TAPS

    @property
    def weight_addr_bits(self) -> int:
        return bits_for(self.convolvers * TAPS - 1)

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("convolvers", "data_bits", "weight_bits",
                                              "bias_bits", "acc_bits", "max_row_width",
                                              "max_pad")}

    def tag(self) -> str:
        """Short name for file names: pe_c4_d16_w16_a48_r32."""
        return (f"pe_c{self.convolvers}_d{self.data_bits}_w{self.weight_bits}"
                f"_b{self.bias_bits}_a{self.acc_bits}_r{self.max_row_width}")
