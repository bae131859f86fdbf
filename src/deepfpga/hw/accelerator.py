"""AcceleratorConfig: the one description of the accelerator.

The compiler, both simulators, the RTL generator and the resource model all read this and
nothing else; the rules they derive from it live in deepfpga.hw.arch. Loading (TOML, presets,
the device-fit check) is deepfpga.hw.config, which re-exports this class.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from deepfpga.errors import InputError
from deepfpga.hw.geometry import products as grid_products
from deepfpga.hw.isa import Calc

CONVOLVER_KERNEL = 3   # the convolver's window, 3×3 (paper §6.2); deepfpga.hw.arch.KERNEL
# Fields that only bound what the compiler accepts: a program does not depend on them, so they
# are not part of the config hash (programs compiled before they existed keep their hash).
_NOT_HASHED = ("name", "notes", "max_stride")
# Plausible ranges (inclusive): beyond them a value is a typo, and the cost model would overflow
# or divide by next to nothing. Numeric fields not listed here get the default bounds below.
_BOUNDS: dict[str, tuple[float, float]] = {
    "clock_mhz": (1.0, 10_000.0),
    "ddr_bandwidth_gbps": (1e-3, 10_000.0),
    "num_pe": (1, 1 << 16),
    "convolvers_per_pe": (1, 1 << 16),
    "max_row_width": (1, 1 << 16),
    "datain_port_num": (1, 1 << 16),
    "weightin_port_num": (1, 1 << 16),
    "dataout_port_num": (1, 1 << 16),
    "burst_overhead_cycles": (1, 1 << 20),
}
_DEFAULT_INT_BOUNDS = (1, 1 << 40)       # buffers and bursts: up to a TiB
_DEFAULT_FLOAT_BOUNDS = (1e-9, 1e12)


@dataclass(frozen=True)
class AcceleratorConfig:
    name: str
    device: str                      # key into deepfpga.hw.devices
    clock_mhz: float
    # PE structure (paper §6.2)
    num_pe: int                      # inter-output parallelism
    convolvers_per_pe: int           # intra-output parallelism (input channels at once)
    kernel: int                      # convolver window (3×3: 9 multipliers)
    max_row_width: int               # longest row the line buffers hold (bounds the tile width Tc)
    # Widths (bits)
    data_bits: int
    weight_bits: int
    bias_bits: int
    acc_bits: int
    # On-chip buffers (bytes)
    input_buffer_bytes: int
    output_buffer_bytes: int
    weight_buffer_bytes: int
    bias_buffer_bytes: int
    fc_buffer_bytes: int             # part of the input buffer that holds FC weight blocks (§7.3)
    # Ports (values per cycle, paper §7)
    datain_port_num: int
    weightin_port_num: int
    dataout_port_num: int
    # DDR: peak bandwidth, and a burst model of fixed cycles per transaction
    ddr_bandwidth_gbps: float        # GB/s (10^9 bytes per second)
    burst_overhead_cycles: int       # accelerator cycles lost per DMA transaction
    max_burst_bytes: int             # longest single DMA transaction
    # RTL structure (the generated hardware; the compiler and simulators honour it too)
    max_pad: int = 3                 # widest zero padding per side the PE's padder inserts
    axi_data_bits: int = 64          # width of the AXI4 master's data bus to DDR
    max_stride: int = 4              # largest convolution stride the PE runs (strides 1..max)
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in ("name", "device", "notes", "max_pad", "max_stride"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise InputError(f"accelerator config {self.name!r}: key {f.name!r} must be a"
                                 f" positive number, got {v!r}")
            if f.type == "int" and not isinstance(v, int):
                raise InputError(f"accelerator config {self.name!r}: key {f.name!r} must be an"
                                 f" integer, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise InputError(f"accelerator config {self.name!r}: key {f.name!r} must be"
                                 f" finite, got {v!r}")
            lo, hi = _BOUNDS.get(f.name, _DEFAULT_INT_BOUNDS if f.type == "int"
                                 else _DEFAULT_FLOAT_BOUNDS)
            if not lo <= v <= hi:
                raise InputError(f"accelerator config {self.name!r}: key {f.name!r} = {v!r} is"
                                 f" outside the plausible range {lo:g}..{hi:g}")
        for key, lo, hi in (("max_pad", 0, Calc.max("pad_top")),
                            ("max_stride", 1, Calc.max("stride"))):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(f"accelerator config {self.name!r}: key {key!r} must be an"
                                 f" integer {lo}..{hi} (the ISA's field), got {v!r}")
        if self.axi_data_bits not in (32, 64, 128, 256):
            raise InputError(f"accelerator config {self.name!r}: key 'axi_data_bits' must be"
                             f" 32, 64, 128 or 256, got {self.axi_data_bits!r}")
        if self.kernel != CONVOLVER_KERNEL:
            raise InputError(f"accelerator config {self.name!r}: key 'kernel' must be 3"
                             " (the convolver is 3×3)")
        for k in ("data_bits", "weight_bits", "bias_bits"):
            if not 2 <= getattr(self, k) <= 32:
                raise InputError(f"accelerator config {self.name!r}: key {k!r} outside 2..32")
        if self.fc_buffer_bytes > self.input_buffer_bytes:
            raise InputError(f"accelerator config {self.name!r}: key 'fc_buffer_bytes' exceeds"
                             " input_buffer_bytes (FC weights live in the input buffer)")
        if not self.data_bits + self.weight_bits <= self.acc_bits <= 60:
            raise InputError(f"accelerator config {self.name!r}: key 'acc_bits' must be at"
                             " least data_bits + weight_bits and at most 60")

    # --- derived figures --------------------------------------------------------------------
    @property
    def multipliers(self) -> int:
        """Products the RTL's CALC grid computes per cycle (deepfpga.hw.engines.grid_multipliers:
        one per convolver lane, ≈ num_pe · convolvers_per_pe)."""
        return grid_products(self.num_pe, self.convolvers_per_pe)

    @property
    def convolver_taps(self) -> int:
        """num_pe · convolvers_per_pe · 9: the multipliers of the paper's 3×3 convolvers (one per
        tap). Not what the RTL builds; only the reading of the paper (zc706-paper) needs it."""
        return self.num_pe * self.convolvers_per_pe * self.kernel * self.kernel

    @property
    def peak_gops(self) -> float:
        """2 operations (multiply, add) per grid product per cycle: what the RTL can reach."""
        return 2 * self.multipliers * self.clock_mhz * 1e6 / 1e9

    @property
    def ddr_bytes_per_cycle(self) -> float:
        return self.ddr_bandwidth_gbps * 1e9 / (self.clock_mhz * 1e6)

    @property
    def data_bytes(self) -> int:
        return (self.data_bits + 7) // 8

    @property
    def weight_bytes(self) -> int:
        return (self.weight_bits + 7) // 8

    @property
    def bias_bytes(self) -> int:
        return (self.bias_bits + 7) // 8

    @property
    def acc_bytes(self) -> int:
        return (self.acc_bits + 7) // 8

    # Buffer capacities in entries (values), as the compiler and simulators address them.
    @property
    def input_buffer_entries(self) -> int:
        return self.input_buffer_bytes // self.data_bytes

    @property
    def fc_buffer_entries(self) -> int:
        return self.fc_buffer_bytes // self.weight_bytes

    @property
    def weight_buffer_entries(self) -> int:
        return self.weight_buffer_bytes // self.weight_bytes

    @property
    def bias_buffer_entries(self) -> int:
        return self.bias_buffer_bytes // self.bias_bytes

    @property
    def output_buffer_entries(self) -> int:
        """Accumulator entries; finalized data values occupy entries of the same buffer."""
        return self.output_buffer_bytes // self.acc_bytes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> bytes:
        """SHA-256 over every field that affects a program (not the name, the notes, or the
        limits of what the compiler accepts)."""
        d = {k: v for k, v in self.to_dict().items() if k not in _NOT_HASHED}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).digest()

    def replace(self, **changes: Any) -> AcceleratorConfig:
        return dataclasses.replace(self, **changes)


