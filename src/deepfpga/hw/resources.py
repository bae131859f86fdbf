"""Resource estimate of an accelerator config on its device.

What is modelled, and how sure it is:
- Multipliers → DSP slices (structural, reliable). One multiplier per DSP when both operands fit
  the DSP's signed multiplier (25×18 DSP48E1, 27×18 DSP48E2, 18×18 ECP5); wider operands take
  ⌈a/(A−1)⌉·⌈b/(B−1)⌉ slices (unsigned partial products). With 8-bit data and weights two
  products share one slice: on Xilinx (WP486/WP487) the two must share an operand, which holds
  for a pair of PEs (same input pixel, different weights), so only PEs in pairs are packed; ECP5
  splits an 18×18 block into two 9×9. Multipliers beyond the device's DSP count are built from
  LUTs (≈1.1·a·b LUT6 each) — that is what a tool does when told to, and how a design with more
  multipliers than DSPs (like the paper's) can fit.
- Buffers → block RAMs (structural, reliable to a block or two): every buffer is double
  buffered (two banks, each half the bytes); a bank needs as many blocks as the best aspect
  ratio gives for its depth and its compute-side port width (input: one value per convolver per
  cycle; weight: one weight per convolver of every PE per cycle; output: one accumulator per PE
  per cycle; bias: one per PE). Parity bits are not used (byte-multiple widths).
- Convolver line buffers (2 rows of max_row_width per convolver, shared by the PEs) and the
  pooling line buffers go to distributed RAM.
- LUT/FF: a ROUGH estimate — adder trees, shifters, a fixed allowance for controller, DMA and
  AXI. Expect ±30%; only DSP and BRAM counts are worth comparing with a real implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepfpga.errors import InputError
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.devices import Device, get_device

# Fixed allowances for controller, instruction fetch, DMA engines and AXI interconnect (assumed).
_BASE_LUTS = 12_000
_BASE_FFS = 15_000
_LUT_MULT_FACTOR = 1.1


@dataclass(frozen=True)
class BufferEstimate:
    name: str
    bytes: int
    port_bits: int          # compute-side bits per cycle of one bank
    blocks: int             # native block RAMs, both banks

    def to_dict(self) -> dict[str, int | str]:
        return {"name": self.name, "bytes": self.bytes, "port_bits": self.port_bits,
                "blocks": self.blocks}


@dataclass(frozen=True)
class ResourceEstimate:
    device: str
    multipliers: int
    dsps: int
    fabric_multipliers: int          # multipliers built from LUTs (DSPs exhausted)
    bram_blocks: int                 # native blocks (BRAM36 on Xilinx, EBR on ECP5)
    bram36: float                    # in 36-Kbit equivalents
    buffers: tuple[BufferEstimate, ...]
    luts: int                        # rough
    ffs: int                         # rough
    lutram_luts: int                 # part of `luts` used as distributed RAM
    assumptions: tuple[str, ...]

    def utilisation(self) -> dict[str, float]:
        """Fractions of the device (1.0 = full)."""
        dev = get_device(self.device)
        return {"dsp": self.dsps / dev.dsps, "bram36": self.bram36 / dev.bram36_equivalent,
                "lut": self.luts / dev.luts, "ff": self.ffs / dev.ffs}

    def to_dict(self) -> dict[str, object]:
        return {"device": self.device, "multipliers": self.multipliers, "dsps": self.dsps,
                "fabric_multipliers": self.fabric_multipliers, "bram_blocks": self.bram_blocks,
                "bram36": self.bram36, "buffers": [b.to_dict() for b in self.buffers],
                "luts": self.luts, "ffs": self.ffs, "lutram_luts": self.lutram_luts,
                "utilisation": self.utilisation(), "assumptions": list(self.assumptions)}


def dsps_per_multiplier(a_bits: int, b_bits: int, dev: Device) -> int:
    """Slices for one a×b signed multiplier on its own (no packing)."""
    hi, lo = max(a_bits, b_bits), min(a_bits, b_bits)
    if hi <= dev.dsp_a_bits and lo <= dev.dsp_b_bits:
        return 1
    # split into unsigned pieces of A−1 and B−1 bits, one slice per partial product
    return math.ceil(hi / (dev.dsp_a_bits - 1)) * math.ceil(lo / (dev.dsp_b_bits - 1))


def multiplier_dsps(cfg: AcceleratorConfig, dev: Device) -> tuple[int, list[str]]:
    """DSP slices the multipliers need if all are in DSPs, and what was assumed."""
    per_pe = cfg.convolvers_per_pe * cfg.kernel * cfg.kernel
    notes = []
    if cfg.data_bits <= 8 and cfg.weight_bits <= 8 and dev.dsp_int8_per_slice > 1:
        if dev.family == "ecp5":
            notes.append("8-bit: two 9×9 multipliers per ECP5 18×18 block")
            return math.ceil(cfg.multipliers / 2), notes
        pairs = cfg.num_pe // 2
        notes.append(f"8-bit: two products per DSP for {2 * pairs} of {cfg.num_pe} PEs "
                     "(operand sharing, Xilinx WP486)")
        return pairs * per_pe + (cfg.num_pe % 2) * per_pe, notes
    k = dsps_per_multiplier(cfg.data_bits, cfg.weight_bits, dev)
    notes.append(f"{cfg.data_bits}×{cfg.weight_bits}-bit: {k} DSP per multiplier")
    return k * cfg.multipliers, notes


def ram_blocks(capacity_bytes: int, port_bits: int, dev: Device) -> int:
    """Native blocks for one bank of `capacity_bytes` read `port_bits` wide per cycle."""
    if capacity_bytes <= 0:
        return 0
    need_depth = math.ceil(capacity_bytes * 8 / port_bits)
    best = None
    w = 1
    while w <= dev.bram_max_width:      # aspect ratios: w bits × (data_bits / w) entries
        blocks = math.ceil(port_bits / w) * math.ceil(need_depth / (dev.bram_data_bits // w))
        best = blocks if best is None else min(best, blocks)
        w *= 2
    assert best is not None
    return best


def estimate(cfg: AcceleratorConfig) -> ResourceEstimate:
    dev = get_device(cfg.device)
    notes: list[str] = []
    dsp_need, dnotes = multiplier_dsps(cfg, dev)
    notes += dnotes
    # multipliers that do not get a DSP are built from LUTs
    if dsp_need > dev.dsps:
        per_mult = dsp_need / cfg.multipliers
        in_dsp = int(dev.dsps / per_mult)
        fabric = cfg.multipliers - in_dsp
        dsps = math.ceil(in_dsp * per_mult)
        notes.append(f"{fabric} multipliers exceed the {dev.dsps} DSPs and are built from LUTs")
    else:
        fabric, dsps = 0, dsp_need

    ports = {
        "input": cfg.convolvers_per_pe * cfg.data_bits,
        "weight": cfg.num_pe * cfg.convolvers_per_pe * cfg.weight_bits,
        "output": cfg.num_pe * cfg.acc_bits,
        "bias": cfg.num_pe * cfg.bias_bits,
    }
    sizes = {"input": cfg.input_buffer_bytes, "weight": cfg.weight_buffer_bytes,
             "output": cfg.output_buffer_bytes, "bias": cfg.bias_buffer_bytes}
    buffers = tuple(
        BufferEstimate(name, sizes[name], ports[name],
                       2 * ram_blocks(sizes[name] // 2, ports[name], dev))
        for name in ("input", "weight", "output", "bias")
    )
    blocks = sum(b.blocks for b in buffers)
    notes.append("buffers double banked; FC weight area is part of the input buffer")

    # distributed RAM: 2 line buffers per convolver (shared by PEs) + 1 pooling row per PE
    line_bits = cfg.convolvers_per_pe * 2 * cfg.max_row_width * cfg.data_bits
    pool_bits = cfg.num_pe * (cfg.max_row_width // 2 + 1) * cfg.data_bits
    lutram = math.ceil((line_bits + pool_bits) / dev.lutram_bits_per_lut)

    prod_bits = cfg.data_bits + cfg.weight_bits
    conv_adders = cfg.num_pe * cfg.convolvers_per_pe * 8 * (prod_bits + 4)  # 9-input trees
    pe_tree = cfg.num_pe * cfg.convolvers_per_pe * cfg.acc_bits            # across convolvers
    shifters = cfg.num_pe * 4 * cfg.acc_bits * max(1, math.ceil(math.log2(cfg.acc_bits)))
    fabric_luts = int(fabric * _LUT_MULT_FACTOR * cfg.data_bits * cfg.weight_bits)
    luts = _BASE_LUTS + conv_adders + pe_tree + shifters + fabric_luts + lutram
    ffs = (_BASE_FFS + conv_adders + pe_tree + cfg.num_pe * 6 * cfg.acc_bits
           + fabric * prod_bits + cfg.convolvers_per_pe * 9 * cfg.data_bits)
    notes.append("LUT/FF are rough (adder trees, shifters, fixed allowance for control/DMA)")
    return ResourceEstimate(
        device=dev.name, multipliers=cfg.multipliers, dsps=dsps, fabric_multipliers=fabric,
        bram_blocks=blocks, bram36=blocks * dev.bram_block_bits / 36864, buffers=buffers,
        luts=int(luts), ffs=int(ffs), lutram_luts=lutram, assumptions=tuple(notes))


def check_fits(cfg: AcceleratorConfig) -> None:
    """Refuse a config whose estimated resources exceed its device, saying which and by how much.

    Uses `estimate` (DSP and BRAM counts follow from the structure; LUT/FF figures are rough)."""
    dev = get_device(cfg.device)
    est = estimate(cfg)
    over = []
    for label, used, have in (("DSP", est.dsps, dev.dsps),
                              ("BRAM36-equivalent", est.bram36, dev.bram36_equivalent),
                              ("LUT (rough estimate)", est.luts, dev.luts),
                              ("FF (rough estimate)", est.ffs, dev.ffs)):
        if used > have:
            over.append(f"{label} {_fmt(used)} > {_fmt(have)} by {_fmt(used - have)}"
                        f" ({100 * (used - have) / have:.1f}% over)")
    if over:
        raise InputError(f"accelerator config {cfg.name!r} does not fit device {dev.name}: "
                         + "; ".join(over))


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if math.isclose(v, round(v)) else f"{v:,.1f}"
