"""Resource estimate of an accelerator config on its device: what the accelerator RTL
(`deepfpga.rtl.accel`) builds, as Yosys maps it (docs/rtl.md compares it with synthesis).

What is modelled, and how sure it is:
- DSP (structural): the CALC grid's `grid_channels · B` products (B = `bank_count`, the pixel
  lanes; num_pe · convolvers_per_pe when B divides it), the B products of the one-accumulator
  loop (FC, deep CONVs) and a few in the control (the CALC setup's and the decoder's range-check
  multipliers), each ⌈a/(A−1)⌉·⌈b/(B−1)⌉ slices when wider than the DSP's multiplier. At ≤ 8
  bits on a DSP48E1 the grid computes two channels' products in one multiplier (Xilinx WP486,
  `engines.packs_pairs`, `engines.grid_dsps`); otherwise Yosys maps one product per DSP48E1 at
  any width ≤ 25×18. It maps every product to a DSP whatever the device has: a design with
  more is refused, not built from LUTs.
- Block RAM (structural): every memory of the Datapath — INPUT, WEIGHT, BIAS and OUTPUT each in
  B banks of entries/B, the weight staging memory (staging_banks banks of staging_rows ×
  grid_channels weights) — on the cheapest block shape of the device (parity bits used as
  data), a block per read port (the OUTPUT banks have two: the CALC engine's, full width, and
  SAVE's, data_bits wide); the finalize's pooling row (B/2 pair maxima an entry). Memories no
  deeper than the device's `lutram_max_depth` go to distributed RAM unless block RAM costs less
  by Yosys's own library costs (`lutram_luts_per_bram36`), as Yosys puts them.
- LUT / FF: per-unit costs (`fabric_units`) fitted to the Yosys syntheses recorded in
  benchmarks/synth_results.json (benchmarks/fit_resources.py): a fixed part (controller, DMA
  engines, AXI, the CALC engine's sequencing), the banked memories' rotation multiplexers, a
  part per grid lane; plus the memories' distributed RAM, the block-RAM cascade multiplexers
  and the finalize's lanes beyond the first, counted structurally (the last at a per-bit cost
  measured on zedboard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deepfpga.errors import InputError
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.devices import Device, get_device
from deepfpga.hw.engines import (
    FIN_BITS,
    bank_count,
    grid_channels,
    grid_dsps,
    grid_multipliers,
    operand_bits,
    packs_pairs,
    pool_lanes,
    pool_line_entries,
    staging_banks,
    staging_rows,
    sum_bits,
)

# Fractions of the device a buildable design may use, leaving room for the shell (the PS-PL
# interconnect, DMA of a board design, debug): issue 13.
BUILD_LIMITS = {"dsps": 0.90, "bram36": 0.90, "luts": 0.80, "ffs": 1.0}
RESOURCE_LABELS = {"dsps": "DSP", "bram36": "BRAM36-equivalent", "luts": "LUT", "ffs": "FF"}


# LUT and FF per unit (`fabric_units`), per device family: least-squares fits to the Yosys
# synthesis of the 7-series designs in benchmarks/synth_results.json, made and checked by
# benchmarks/fit_resources.py (docs/rtl.md, "Resource model"); ECP5 takes the 7-series per-unit
# costs with its own fixed part (fitted to `tiny`); UltraScale+ the 7-series costs (LUT6 as
# well; not synthesized).
LUT_TERMS = ("fixed", "rotation_bits", "lane_lut_bits")
FF_TERMS = ("fixed", "lane_ff_bits")
_CASCADE_LUTS_PER_BIT = 1 / 3      # a k-deep column's read mux: (k − 1)/3 LUT6 per bit
# The finalize's lanes beyond the first (the fitted fixed part holds one: every record before
# the B-wide finalize measured one), per `fin_lane_bits`: zedboard synthesized with 8 lanes,
# 22,027 LUT and 13,822 FF, against 16,757 and 10,309 with one, the same config (Yosys 0.70
# synth_xilinx; docs/rtl.md): 5,270 LUT and 3,513 FF over 7 lanes of 504 bits.
_FIN_LUTS_PER_BIT = 5270 / (7 * 504)
_FIN_FFS_PER_BIT = 3513 / (7 * 504)
_LUT_COSTS = {
    "7series": {"fixed": 8597.92, "rotation_bits": 0.9977, "lane_lut_bits": 1.6528},
    "ecp5": {"fixed": 14174.94, "rotation_bits": 0.9977, "lane_lut_bits": 1.6528},
}
_FF_COSTS = {
    "7series": {"fixed": 7264.08, "lane_ff_bits": 0.7932},
    "ecp5": {"fixed": 8137.18, "lane_ff_bits": 0.7932},
}
# The DSP's accumulator (P register) width: a grid lane's exact sum up to it stays in the DSP.
# ECP5: Yosys uses MULT18X18D alone (no ALU54B), so every sum is fabric.
_DSP_ACC_BITS = {"7series": 48, "ultrascale+": 48, "ecp5": 0}
# Distributed RAM of the control (instruction FIFO, engine queues, burst records), in LUTs
_CONTROL_LUTRAM = {"7series": 972, "ecp5": 1408}
for _t in (_LUT_COSTS, _FF_COSTS, _CONTROL_LUTRAM):
    _t["ultrascale+"] = _t["7series"]


@dataclass(frozen=True)
class BufferEstimate:
    """One memory of the Datapath: `banks` instances of `depth` × `width` bits."""

    name: str
    bytes: int              # the config's capacity (0 for the staging memory)
    banks: int
    depth: int
    width: int
    read_widths: tuple[int, ...]   # bits each read port uses: a block (column set) per port
    bram36: float           # BRAM36-equivalents of all banks
    lutram_luts: int        # LUTs of all banks when in distributed RAM (then bram36 = 0)
    cascade_bits: int = 0   # read-multiplexer bits of blocks stacked in depth (all banks)

    @property
    def port_bits(self) -> int:
        """Bits the compute side reads per cycle (every bank's first port)."""
        return self.banks * self.read_widths[0]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "bytes": self.bytes, "banks": self.banks,
                "depth": self.depth, "width": self.width, "read_widths": list(self.read_widths),
                "port_bits": self.port_bits, "bram36": self.bram36,
                "lutram_luts": self.lutram_luts, "cascade_bits": self.cascade_bits}


@dataclass(frozen=True)
class FitLine:
    """One resource against the device and its build limit."""

    resource: str           # dsps, bram36, luts, ffs
    used: float
    available: float
    limit: float            # fraction of the device a buildable design may use

    @property
    def fraction(self) -> float:
        return self.used / self.available

    @property
    def fits(self) -> bool:
        return self.used <= self.limit * self.available

    def to_dict(self) -> dict[str, object]:
        return {"resource": self.resource, "used": self.used, "available": self.available,
                "fraction": self.fraction, "limit": self.limit, "fits": self.fits}


def fit_report(used: dict[str, float], dev: Device) -> tuple[FitLine, ...]:
    """`used` (dsps, bram36, luts = logic + memory LUTs, ffs) against `dev` and BUILD_LIMITS:
    the one rule for a synthesis result and for an estimate."""
    have = {"dsps": dev.dsps, "bram36": dev.bram36_equivalent, "luts": dev.luts, "ffs": dev.ffs}
    return tuple(FitLine(k, float(used[k]), float(have[k]), BUILD_LIMITS[k]) for k in have)


@dataclass(frozen=True)
class ResourceEstimate:
    device: str
    multipliers: int                 # products the RTL builds (grid + one-accumulator loop)
    dsps: int
    fabric_multipliers: int          # 0: Yosys maps every product to a DSP (kept for callers)
    bram_blocks: int                 # native blocks (BRAM36 on Xilinx, EBR on ECP5), rounded up
    bram36: float                    # in 36-Kbit equivalents
    buffers: tuple[BufferEstimate, ...]
    luts: int                        # logic + distributed-RAM LUTs
    ffs: int
    lutram_luts: int                 # part of `luts` used as distributed RAM
    assumptions: tuple[str, ...]

    def utilisation(self) -> dict[str, float]:
        """Fractions of the device (1.0 = full)."""
        dev = get_device(self.device)
        return {"dsp": self.dsps / dev.dsps, "bram36": self.bram36 / dev.bram36_equivalent,
                "lut": self.luts / dev.luts, "ff": self.ffs / dev.ffs}

    def used(self) -> dict[str, float]:
        return {"dsps": self.dsps, "bram36": self.bram36, "luts": self.luts, "ffs": self.ffs}

    def fit_report(self) -> tuple[FitLine, ...]:
        return fit_report(self.used(), get_device(self.device))

    @property
    def buildable(self) -> bool:
        """Within BUILD_LIMITS (room left for the shell)."""
        return all(line.fits for line in self.fit_report())

    def to_dict(self) -> dict[str, object]:
        return {"device": self.device, "multipliers": self.multipliers, "dsps": self.dsps,
                "fabric_multipliers": self.fabric_multipliers, "bram_blocks": self.bram_blocks,
                "bram36": self.bram36, "buffers": [b.to_dict() for b in self.buffers],
                "luts": self.luts, "ffs": self.ffs, "lutram_luts": self.lutram_luts,
                "utilisation": self.utilisation(), "buildable": self.buildable,
                "fit": [line.to_dict() for line in self.fit_report()],
                "assumptions": list(self.assumptions)}


def dsps_per_multiplier(a_bits: int, b_bits: int, dev: Device) -> int:
    """Slices for one a×b signed multiplier on its own (no packing)."""
    hi, lo = max(a_bits, b_bits), min(a_bits, b_bits)
    if hi <= dev.dsp_a_bits and lo <= dev.dsp_b_bits:
        return 1
    # split into unsigned pieces of A−1 and B−1 bits, one slice per partial product
    return math.ceil(hi / (dev.dsp_a_bits - 1)) * math.ceil(lo / (dev.dsp_b_bits - 1))


def ram_blocks(capacity_bytes: int, port_bits: int, dev: Device) -> int:
    """Native blocks for `capacity_bytes` read `port_bits` wide per cycle (one read port)."""
    if capacity_bytes <= 0:
        return 0
    depth = math.ceil(capacity_bytes * 8 / port_bits)
    return math.ceil(memory_bram36(depth, (port_bits,), dev) * 36864 / dev.bram_block_bits)


def _lane_shapes(dev: Device, granularity: int) -> list[tuple[int, int, float]]:
    """The device's block shapes as a memory written in lanes of `granularity` bits uses them:
    a lane takes whole 9-bit byte-enable groups of a 9·k-bit wide shape (Yosys 0.70: each 8- or
    16-bit staging lane of zc706 and zc706-8 took one or two, 64 of a RAMB36's 72 bits)."""
    if not granularity:
        return list(dev.bram_shapes)
    groups = -(-granularity // 9)
    shapes = [(d, (w // 9 // groups) * granularity if w % 9 == 0 else w, c)
              for d, w, c in dev.bram_shapes]
    return [sh for sh in shapes if sh[1] > 0]


def _columns(depth: int, width: int, dev: Device, granularity: int = 0
             ) -> list[tuple[int, float, int]]:
    """How Yosys lays a depth × width memory out in block RAM: (bits, BRAM36-equivalents,
    blocks stacked in depth) of each column of blocks from bit 0 up. Either every column in one
    shape, or whole columns of a primitive's widest shape and one more column of that primitive
    for the rest of the bits;
    the cheapest, then the fewest blocks, then the most (narrowest) columns (this matches Yosys
    0.70's memory_libmap on every memory of the designs in docs/rtl.md)."""
    def layout(bits: int, shape) -> list[tuple[int, float, int]]:
        d, w, cost = shape
        blocks = math.ceil(depth / d)
        return [(min(w, bits - k * w), cost * blocks, blocks)
                for k in range(math.ceil(bits / w))]

    def rank(cols):
        return (sum(c[1] for c in cols), sum(c[2] for c in cols), -len(cols))

    shapes = _lane_shapes(dev, granularity)
    candidates = [layout(width, sh) for sh in shapes]
    for cost in sorted({sh[2] for sh in shapes}):
        prim = [sh for sh in shapes if sh[2] == cost]
        widest = max(prim, key=lambda sh: sh[1])
        whole = width // widest[1]
        rest = width - whole * widest[1]
        if whole and rest:
            head = layout(whole * widest[1], widest)
            candidates += [head + layout(rest, sh) for sh in prim if sh[1] >= rest]
    return min(candidates, key=rank)


def memory_layout(depth: int, read_widths: tuple[int, ...], dev: Device, granularity: int = 0
                  ) -> tuple[float, int]:
    """(BRAM36-equivalents, cascade bits) of one depth-entry memory with a read port per entry
    of `read_widths` (the first reads every bit): a copy per read port, laid out like the
    first, keeping only the columns holding bits that port reads. Cascade bits: per column
    stacked k blocks deep, its bits × (k − 1) — the read multiplexer Yosys builds in LUTs.
    `granularity`: the bits of a write lane with its own enable (0: whole entries)."""
    layout = _columns(depth, read_widths[0], dev, granularity)
    total, cascade = 0.0, 0
    for used in read_widths:
        low = 0
        for bits, cost, blocks in layout:
            if low < used:
                total += cost
                cascade += bits * (blocks - 1)
            low += bits
    return total, cascade


def memory_bram36(depth: int, read_widths: tuple[int, ...], dev: Device) -> float:
    """BRAM36-equivalents of one memory (`memory_layout`)."""
    return memory_layout(depth, read_widths, dev)[0]


def lutram_luts(depth: int, width: int, dev: Device) -> int:
    """LUTs of one memory in distributed RAM (its cheapest primitive, one write + one read)."""
    return min(luts * math.ceil(width / w) * math.ceil(depth / d)
               for d, w, luts in dev.lutram_shapes)


def _memory(name: str, nbytes: int, banks: int, depth: int, width: int,
            read_widths: tuple[int, ...], dev: Device, granularity: int = 0) -> BufferEstimate:
    bram, cascade = memory_layout(depth, read_widths, dev, granularity)
    luts = sum(lutram_luts(depth, w, dev) for w in read_widths)
    # the choice against distributed RAM as the rule was fitted (zc706's staging banks): on
    # the whole-entry block count; the write lanes' byte enables then cost the blocks counted
    whole = memory_layout(depth, read_widths, dev)[0] if granularity else bram
    cheaper = not dev.lutram_luts_per_bram36 or luts <= whole * dev.lutram_luts_per_bram36
    if depth <= dev.lutram_max_depth and cheaper:
        return BufferEstimate(name, nbytes, banks, depth, width, read_widths, 0.0, banks * luts,
                              0)
    return BufferEstimate(name, nbytes, banks, depth, width, read_widths, banks * bram, 0,
                          banks * cascade)


def memories(cfg: AcceleratorConfig, dev: Device) -> tuple[BufferEstimate, ...]:
    """The Datapath's memories (rtl/accel/buffers.py, lanes.py) as Yosys maps them."""
    b, ob = bank_count(cfg), operand_bits(cfg)
    pool_bits = pool_lanes(cfg) * cfg.data_bits

    def rows(entries: int) -> int:
        return max(1, -(-entries // b))

    n = grid_channels(cfg)
    return (
        _memory("input", cfg.input_buffer_bytes, b, rows(cfg.input_buffer_entries), ob,
                (ob,), dev),
        _memory("weight", cfg.weight_buffer_bytes, b, rows(cfg.weight_buffer_entries), ob,
                (ob,), dev),
        _memory("bias", cfg.bias_buffer_bytes, b, rows(cfg.bias_buffer_entries), cfg.bias_bits,
                (cfg.bias_bits,), dev),
        # the CALC engine reads whole accumulators, SAVE only their data_bits
        _memory("output", cfg.output_buffer_bytes, b, rows(cfg.output_buffer_entries),
                cfg.acc_bits, (cfg.acc_bits, min(cfg.data_bits, cfg.acc_bits)), dev),
        # written one channel's weight (ob bits) at a time: rtl/accel/staging.py
        _memory("staging", 0, staging_banks(cfg), staging_rows(cfg), n * ob, (n * ob,), dev,
                granularity=ob),
        # rtl/accel/finalize.py: an entry per chunk of B columns, its pair maxima
        _memory("pool row", 0, 1, pool_line_entries(cfg), pool_bits, (pool_bits,), dev),
    )


def fin_lane_bits(cfg: AcceleratorConfig) -> int:
    """Register bits of one finalize lane (rtl/accel/finalize.py): the accumulator read twice
    registered and written back (3·acc_bits), the 64-bit sum, ReLU and the data shift's four
    stages (≈ 6·FIN_BITS), the shift's data_bits growth, the pool's and the write's values."""
    return 3 * cfg.acc_bits + 6 * FIN_BITS + 3 * cfg.data_bits


def fabric_units(cfg: AcceleratorConfig, dev: Device, finalize_lanes: int | None = None
                 ) -> dict[str, float]:
    """What the LUT and FF counts scale with (their costs per family are fitted, `_LUT_COSTS`,
    `_FF_COSTS`):
    fixed — the controller, DMA engines, AXI, the CALC sequencing and finalize (1 each);
    rotation_bits — B·log2(B) × the bits of the banked memories' wide ports (each lane of a
    wide read or write picks one of B banks; Yosys builds the B lanes' selections as log2(B)
    levels of 2:1 multiplexers; the B² form overestimated a B = 32 design by 66 %);
    cascade_bits — the block-RAM read multiplexers of memories stacked in depth, and the
    staging banks' term select (structural);
    lane_lut_bits — per grid lane, its sum bits: the lane's adder, first-term select and the
    channel read-out of its sum scale with them (the forms tried, and how each predicted the
    records it was not fitted to: docs/rtl.md, "The resource model against synthesis");
    lane_ff_bits — per grid lane: the old accumulator (acc_bits register bits); when the sum
    does not sit in the DSP (MREG, post-adder and PREG: it fits its 48-bit accumulator, and the
    lane is not one of a packed pair, whose P register holds the packed product) the sum and
    product registers too;
    fin_lane_bits — the finalize lanes beyond the first (B − 1; `finalize_lanes` − 1 for a
    record of an earlier RTL: it had one) × `fin_lane_bits(cfg)`: a lane's 64-bit add,
    shifters, saturation and ReLU (LUT) and its stages (FF) scale with them (structural, at the
    cost per bit measured on zedboard)."""
    b, ob, sb = bank_count(cfg), operand_bits(cfg), sum_bits(cfg)
    ew = max(cfg.data_bits, cfg.weight_bits, cfg.bias_bits)
    port_bits = (2 * ob + cfg.bias_bits + cfg.acc_bits + cfg.data_bits      # reads
                 + 3 * ew + cfg.acc_bits)                                    # writes
    in_dsp = sb <= _DSP_ACC_BITS.get(dev.family, 0)
    lanes = grid_multipliers(cfg)
    # the staging banks' term select (staging.py): an S:1 multiplexer per bit of the staged
    # word, the same structure as a column S blocks deep
    cascade = (sum(m.cascade_bits for m in memories(cfg, dev))
               + (staging_banks(cfg) - 1) * grid_channels(cfg) * ob)
    # lanes of channel pairs (an odd count's last channel is alone) have their sums in the
    # fabric: the DSP's P register holds the packed product
    n = grid_channels(cfg)
    packed = b * (n - n % 2) if packs_pairs(cfg) else 0
    fabric = packed if in_dsp else lanes
    return {"fixed": 1.0, "rotation_bits": float(b * math.log2(b) * port_bits),
            "cascade_bits": float(cascade),
            # LUT: the sum bits of every grid lane (see the docstring)
            "lane_lut_bits": float(lanes * sb),
            "lane_ff_bits": float((lanes - fabric) * cfg.acc_bits
                                  + fabric * (cfg.acc_bits + sb + 2 * ob)),
            "fin_lane_bits": float(((b if finalize_lanes is None else finalize_lanes) - 1)
                                   * fin_lane_bits(cfg))}


def record_finalize_lanes(record: dict) -> int:
    """The finalize lanes of the RTL a synthesis record (benchmarks/synth_results.json)
    measured: `finalize_lanes` when recorded, else 1 (the RTL before the B-wide finalize)."""
    return int(record.get("finalize_lanes", 1))


def fixed_lut_units(units: dict[str, float]) -> float:
    """The LUTs of `fabric_units` that are structural, not fitted: the cascade multiplexers and
    the finalize lanes beyond the first."""
    return (units["cascade_bits"] * _CASCADE_LUTS_PER_BIT
            + units["fin_lane_bits"] * _FIN_LUTS_PER_BIT)


def fixed_ff_units(units: dict[str, float]) -> float:
    """The FFs of `fabric_units` that are structural, not fitted: the finalize lanes beyond the
    first."""
    return units["fin_lane_bits"] * _FIN_FFS_PER_BIT


def estimate(cfg: AcceleratorConfig, finalize_lanes: int | None = None) -> ResourceEstimate:
    """What `cfg`'s RTL takes. `finalize_lanes`: the finalize's lanes of the RTL modelled (default
    B, this RTL's; 1 models a synthesis record of the RTL before the B-wide finalize)."""
    dev = get_device(cfg.device)
    b, ob, n = bank_count(cfg), operand_bits(cfg), grid_channels(cfg)
    notes: list[str] = []

    lanes = grid_multipliers(cfg)
    per = dsps_per_multiplier(ob, ob, dev)
    control = _CONTROL_DSPS[dev.family]
    grid = grid_dsps(cfg)
    dsps = per * (grid + b) + control
    pairing = (f", two per DSP ({grid} multipliers: channel pairs)" if packs_pairs(cfg)
               else "")
    notes.append(f"{lanes} grid products ({n} channels × {b} lanes{pairing}) + {b}"
                 f" one-accumulator products, {per} DSP each at {ob}×{ob} bits; {control} DSP in"
                 " the control")

    bufs = memories(cfg, dev)
    bram36 = sum(x.bram36 for x in bufs)
    lutram = sum(x.lutram_luts for x in bufs)
    notes.append(f"memories in {b} banks; OUTPUT read by CALC and SAVE (a block per port)")

    units = fabric_units(cfg, dev, finalize_lanes)
    family = dev.family
    lutram += _CONTROL_LUTRAM[family]
    luts = (lutram + fixed_lut_units(units)
            + sum(_LUT_COSTS[family][k] * units[k] for k in LUT_TERMS))
    ffs = fixed_ff_units(units) + sum(_FF_COSTS[family][k] * units[k] for k in FF_TERMS)
    notes.append("LUT/FF: per-unit costs fitted to Yosys synthesis (docs/rtl.md)")
    return ResourceEstimate(
        device=dev.name, multipliers=lanes + b, dsps=dsps, fabric_multipliers=0,
        bram_blocks=math.ceil(bram36 * 36864 / dev.bram_block_bits), bram36=bram36,
        buffers=bufs, luts=round(luts), ffs=round(ffs), lutram_luts=lutram,
        assumptions=tuple(notes))


# DSP slices outside the grid and the one-accumulator loop: the CALC setup's shared multiplier
# and the decoder's range checks (measured: tiny on ECP5, the xc7 designs of docs/rtl.md).
_CONTROL_DSPS = {"7series": 8, "ultrascale+": 8, "ecp5": 9}


def not_buildable_reason(cfg: AcceleratorConfig) -> str | None:
    """Why a config is a reference, not a design (its `[notes] not_buildable`), or None."""
    return cfg.notes.get("not_buildable")


def check_fits(cfg: AcceleratorConfig) -> None:
    """Refuse a config whose estimated resources exceed its device, saying which and by how much.

    A config whose notes say `not_buildable` (zc706-paper: our reading of the paper, for the
    models only) is not checked."""
    dev = get_device(cfg.device)
    if not_buildable_reason(cfg) is not None:
        return
    est = estimate(cfg)
    over = []
    for line in est.fit_report():
        if line.used > line.available:
            over.append(f"{RESOURCE_LABELS[line.resource]} {_fmt(line.used)} >"
                        f" {_fmt(line.available)}"
                        f" by {_fmt(line.used - line.available)}"
                        f" ({100 * (line.used - line.available) / line.available:.1f}% over)")
    if over:
        raise InputError(f"accelerator config {cfg.name!r} does not fit device {dev.name}: "
                         + "; ".join(over))


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if math.isclose(v, round(v)) else f"{v:,.1f}"
