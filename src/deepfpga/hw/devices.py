"""The FPGA devices deepfpga targets: the one device table. Resources (for the resource model and
the fit check, deepfpga.hw.resources), and the synthesis flow of each (Yosys command and family,
nextpnr device) for `deepfpga rtl synth`.

Figures are the device data sheets' totals (Xilinx DS190 Zynq-7000, DS891 Zynq UltraScale+,
Lattice FPGA-DS-02012 ECP5). `bram_blocks` counts the device's own block-RAM primitive
(BRAM36 on Xilinx, 18-Kbit EBR on ECP5); `bram36_equivalent` converts to 36-Kbit blocks so
devices can be compared. `dsps` counts DSP slices (ECP5: 18×18 multipliers).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfpga.errors import InputError


@dataclass(frozen=True)
class Device:
    name: str                   # the key used by AcceleratorConfig.device
    part: str                   # full part family name
    family: str                 # "7series", "ultrascale+", "ecp5"
    luts: int
    ffs: int
    bram_blocks: int            # native block RAMs
    bram_block_bits: int        # bits per native block, data + parity
    bram_data_bits: int         # bits per native block usable at byte-multiple widths
    bram_max_width: int         # widest data port of one block in simple dual-port mode (bits)
    dsps: int
    dsp_a_bits: int             # signed multiplier operand widths of one DSP
    dsp_b_bits: int
    lutram_bits_per_lut: int    # distributed RAM: bits per LUT used as memory
    yosys_synth: str            # Yosys synthesis command: "synth_xilinx" or "synth_ecp5"
    yosys_family: str | None    # synth_xilinx -family argument (None: not a Xilinx part)
    nextpnr_device: str | None  # nextpnr-ecp5 device flag ("85k"); None: no open place & route
    dsp_cell: str               # the DSP primitive Yosys maps multipliers to
    bram18_cell: str            # the 18-Kbit block-RAM primitive Yosys reports
    bram36_cell: str | None     # the 36-Kbit one (None: the family has none)
    # Block-RAM shapes Yosys maps a memory to: (depth, width, BRAM36-equivalents per block), the
    # parity bits usable as data (2K×9, 1K×18, 512×36/72); widest ones only in simple dual port
    bram_shapes: tuple[tuple[int, int, float], ...] = ()
    # Distributed-RAM primitives for one write and one read port: (depth, width, LUTs each), and
    # the deepest memory Yosys puts there rather than in block RAM (measured, docs/rtl.md)
    lutram_shapes: tuple[tuple[int, int, int], ...] = ()
    lutram_max_depth: int = 0
    # Distributed-RAM LUTs that cost as much as one BRAM36-equivalent in Yosys's memory_libmap
    # (its library costs: 7-series 8 per 4-LUT RAM32M/RAM64M against 257 per RAMB36E1; ECP5 4
    # per 4-LUT DPR16X4 against 128 per DP16KD); a memory within lutram_max_depth still goes to
    # block RAM when that is cheaper (the wide staging banks of `zc706`). 0: no comparison.
    lutram_luts_per_bram36: float = 0.0

    @property
    def bram36_equivalent(self) -> float:
        return self.bram_blocks * self.bram_block_bits / 36864

    @property
    def bram_bytes(self) -> int:
        """Usable capacity at byte-multiple widths (parity bits unused)."""
        return self.bram_blocks * self.bram_data_bits // 8


_XC7_BRAM = (
    # RAMB18E1 (half a BRAM36) and RAMB36E1, UG473
    (16384, 1, 0.5), (8192, 2, 0.5), (4096, 4, 0.5), (2048, 9, 0.5), (1024, 18, 0.5),
    (512, 36, 0.5),
    (32768, 1, 1.0), (16384, 2, 1.0), (8192, 4, 1.0), (4096, 9, 1.0), (2048, 18, 1.0),
    (1024, 36, 1.0), (512, 72, 1.0),
)
# DP16KD (18 Kbit, half a BRAM36), FPGA-TN-02204; 512×36 as PDPW16KD (one write, one read port)
# RAM32M (32 × 6 bits simple dual port) and RAM64M (64 × 3), four LUTs each (UG474)
_XC7_LUTRAM = ((32, 6, 4), (64, 3, 4))
_ECP5_BRAM = ((16384, 1, 0.5), (8192, 2, 0.5), (4096, 4, 0.5), (2048, 9, 0.5), (1024, 18, 0.5),
              (512, 36, 0.5))

DEVICES: dict[str, Device] = {
    d.name: d for d in (
        # Zynq-7000 (DS190): BRAM36 = 36 Kbit (32 Kbit at ×64), 512×72 in SDP mode; DSP48E1 25×18.
        # INT8 packing (Xilinx WP486, two 8-bit products sharing one operand per DSP48) follows
        # from the port widths: hw.engines.packs_pairs.
        Device("XC7Z020", "Zynq-7000 XC7Z020", "7series", luts=53_200, ffs=106_400,
               bram_blocks=140, bram_block_bits=36_864, bram_data_bits=32_768,
               bram_max_width=64, dsps=220, dsp_a_bits=25, dsp_b_bits=18,
               lutram_bits_per_lut=64,
               yosys_synth="synth_xilinx", yosys_family="xc7", nextpnr_device=None,
               dsp_cell="DSP48E1", bram18_cell="RAMB18E1",
               bram36_cell="RAMB36E1", bram_shapes=_XC7_BRAM,
               lutram_shapes=_XC7_LUTRAM, lutram_max_depth=256,
               lutram_luts_per_bram36=128.5),
        Device("XC7Z045", "Zynq-7000 XC7Z045", "7series", luts=218_600, ffs=437_200,
               bram_blocks=545, bram_block_bits=36_864, bram_data_bits=32_768,
               bram_max_width=64, dsps=900, dsp_a_bits=25, dsp_b_bits=18,
               lutram_bits_per_lut=64,
               yosys_synth="synth_xilinx", yosys_family="xc7", nextpnr_device=None,
               dsp_cell="DSP48E1", bram18_cell="RAMB18E1",
               bram36_cell="RAMB36E1", bram_shapes=_XC7_BRAM,
               lutram_shapes=_XC7_LUTRAM, lutram_max_depth=256,
               lutram_luts_per_bram36=128.5),
        # Zynq UltraScale+ (DS891): DSP48E2 27×18; ZU9EG has no UltraRAM. INT8 packing: WP487.
        Device("XCZU9EG", "Zynq UltraScale+ XCZU9EG", "ultrascale+", luts=274_080,
               ffs=548_160, bram_blocks=912, bram_block_bits=36_864, bram_data_bits=32_768,
               bram_max_width=64, dsps=2_520, dsp_a_bits=27, dsp_b_bits=18,
               lutram_bits_per_lut=64,
               yosys_synth="synth_xilinx", yosys_family="xcup",
               nextpnr_device=None, dsp_cell="DSP48E2", bram18_cell="RAMB18E2",
               bram36_cell="RAMB36E2", bram_shapes=_XC7_BRAM,
               lutram_shapes=_XC7_LUTRAM, lutram_max_depth=256,
               lutram_luts_per_bram36=128.5),
        # ECP5 LFE5U-85F (FPGA-DS-02012): 84K LUT4 (one FF each), 208 EBR of 18 Kbit
        # (16 Kbit at ×32 in pseudo dual port), 156 18×18 multipliers, each splittable into
        # two 9×9 (not used: Yosys maps one product per MULT18X18D, so no packing here).
        # Distributed RAM: 16 bits per LUT4.
        Device("LFE5U-85F", "Lattice ECP5 LFE5U-85F", "ecp5", luts=83_640, ffs=83_640,
               bram_blocks=208, bram_block_bits=18_432, bram_data_bits=16_384,
               bram_max_width=32, dsps=156, dsp_a_bits=18, dsp_b_bits=18,
               lutram_bits_per_lut=16,
               yosys_synth="synth_ecp5", yosys_family=None, nextpnr_device="85k",
               dsp_cell="MULT18X18D", bram18_cell="DP16KD", bram36_cell=None,
               bram_shapes=_ECP5_BRAM, lutram_shapes=((16, 4, 4),), lutram_max_depth=64,
               lutram_luts_per_bram36=256.0),
    )
}

# Accepted spellings of the device names (the brief's and the vendors' usual short forms).
_ALIASES = {"ZU9EG": "XCZU9EG", "ECP5-85F": "LFE5U-85F", "LFE5U-85": "LFE5U-85F"}


def get_device(name: str) -> Device:
    key = _ALIASES.get(name.upper(), name.upper())
    if key not in DEVICES:
        raise InputError(f"unknown device {name!r} (known: {', '.join(DEVICES)})")
    return DEVICES[key]


def device_names() -> list[str]:
    """Every accepted spelling (lower case), for command-line choices."""
    return sorted({n.lower() for n in (*DEVICES, *_ALIASES)})
