"""The accelerator's semantics, written once: what the compiler, the cost model, both simulators
and the RTL parameters must agree on.

- ISA field limits, derived from the encoding table in `deepfpga.hw.isa` (never literals);
- what the configured hardware supports (kernel, strides, padding) and `check_layer`, the one
  refusal of what it cannot run; `RTL_GAPS`: what the config allows but the generated RTL does
  not run yet (the one list of that gap);
- element bytes per buffer and role (the paper's §7.3 FC role swap);
- DMA runs (segments merged into contiguous DDR runs), their AXI bursts and cycles, and the
  CALC cycles of an instruction — the RTL's rules, from deepfpga.hw.engines;
- the three engines and the token-channel table of the dependency flags;
- the host-layer float rule (a host-only layer that is a graph output stays float).

Plain Python and numpy: no Amaranth, no compiler stages. Every function takes scalars or numpy
arrays; the vectorised form is the only form (a scalar is a length-1 call).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TYPE_CHECKING

import numpy as np

from deepfpga.errors import InputError
from deepfpga.hw import engines
from deepfpga.hw.accelerator import CONVOLVER_KERNEL
from deepfpga.hw.isa import CALC_TAPS, Buffer, Calc, CalcKind, Load, Save

if TYPE_CHECKING:
    from deepfpga.hw.accelerator import AcceleratorConfig
    from deepfpga.ir.layers import Layer

IntArray = np.ndarray | int

# --- ISA field limits (from the encoding table) --------------------------------------------------

CALC_DIM_MAX = Calc.max("ti")            # ti, to, in/out rows and cols (12-bit fields)
for _f in ("to", "in_rows", "in_cols", "out_rows", "out_cols"):
    assert Calc.max(_f) == CALC_DIM_MAX, _f
DMA_COUNT_MAX = Load.max("length")       # DMA length, n1, n2 (16-bit fields)
for _cls in (Load, Save):
    for _f in ("length", "n1", "n2"):
        assert _cls.max(_f) == DMA_COUNT_MAX, (_cls, _f)
OUT_PITCH_MAX = Calc.max("out_pitch")     # per-channel pitch of finalized outputs
OUTPUT_ENTRIES_MAX = Calc.max("ob_addr") + 1   # output-buffer entries the address fields reach
DDR_BYTES_MAX = Load.max("ddr_addr") + 1       # DDR bytes the 32-bit addresses reach
STRIDE_MAX = Calc.max("stride")
PAD_MAX = Calc.max("pad_top")
KOFF_MAX = Calc.max("koff_y")
BIAS_SHIFT_RANGE = Calc.field_range("bias_shift")
DATA_SHIFT_RANGE = Calc.field_range("data_shift")
LAYER_MAX = Calc.max("layer")             # layer index of every instruction (timing, diffing)

# The PE's convolver window (paper §6.2); AcceleratorConfig refuses any other kernel.
KERNEL = CONVOLVER_KERNEL
TAPS = KERNEL * KERNEL
assert CALC_TAPS[CalcKind.CONV] == TAPS
calc_taps = engines.calc_taps             # terms per input channel of a CALC kind
# Sub-kernel offsets koff = 0, 3, 6, …: a kernel of k > 3 is decomposed into ⌈k/3⌉ per axis, and
# the largest offset 3·(⌈k/3⌉ − 1) must fit the koff field.
MAX_SUB_KERNELS = KOFF_MAX // KERNEL + 1


# --- what the configured hardware runs -----------------------------------------------------------

def supported_strides(cfg: AcceleratorConfig) -> range:
    return range(1, cfg.max_stride + 1)


def check_conv(name: str, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], cfg: AcceleratorConfig) -> None:
    """Refuse, naming the layer and the limit, a convolution the configured hardware cannot run."""
    if stride[0] != stride[1]:
        raise InputError(f"layer {name!r}: stride {stride} is not square (the accelerator has"
                         " one stride)")
    if stride[0] not in supported_strides(cfg):
        raise InputError(f"layer {name!r}: stride {stride[0]} not supported by {cfg.name}"
                         f" (max_stride {cfg.max_stride})")
    if max(padding) > cfg.max_pad:
        raise InputError(f"layer {name!r}: padding {padding} exceeds the padder of {cfg.name}"
                         f" (max_pad {cfg.max_pad})")
    if padding[0] >= kernel[0] or padding[1] >= kernel[1]:
        raise InputError(f"layer {name!r}: padding {padding} not smaller than the kernel"
                         f" {kernel} (output pixels that see no input)")
    if max(math.ceil(k / KERNEL) for k in kernel) > MAX_SUB_KERNELS:
        big = KERNEL * MAX_SUB_KERNELS
        raise InputError(f"layer {name!r}: kernel {kernel} larger than {big}×{big} (the"
                         f" {KOFF_MAX.bit_length()}-bit sub-kernel offsets)")


def check_shifts(name: str, bias_shift: int | None, data_shift: int) -> None:
    """Refuse shifts the CALC fields cannot carry."""
    lo, hi = BIAS_SHIFT_RANGE
    if bias_shift is not None and not lo <= bias_shift <= hi:
        raise InputError(f"layer {name!r}: bias shift {bias_shift} outside {lo}..{hi}"
                         " (bias fl must be ≤ input fl + weight fl)")
    lo, hi = DATA_SHIFT_RANGE
    if not lo <= data_shift <= hi:
        raise InputError(f"layer {name!r}: data shift {data_shift} outside {lo}..{hi}")


# What an AcceleratorConfig may declare that the generated RTL (deepfpga.rtl) does not run yet:
# (config key, what the RTL runs). The next RTL issue closes these; until then this is the list.
# The accelerator's CALC engine (deepfpga.rtl.accel.calc) addresses the window arithmetically,
# so it runs every stride the ISA encodes; padding is verified (random CALCs against the
# functional simulator) up to 3 per side, which is also the stand-alone PE's padder limit.
RTL_MAX_STRIDE = STRIDE_MAX
RTL_MAX_PAD = 3
RTL_GAPS: tuple[tuple[str, int, str], ...] = (
    ("max_stride", RTL_MAX_STRIDE, "the CALC engine runs the ISA's strides 1..7"),
    ("max_pad", RTL_MAX_PAD,
     "padding above 3 per side is not verified on the RTL (and the PE's padder stops at 3)"),
)


def rtl_gaps(cfg: AcceleratorConfig) -> list[str]:
    """The parts of `cfg` the generated RTL cannot run (empty: it runs everything the compiler
    accepts for `cfg`)."""
    return [f"{cfg.name}: {key} {getattr(cfg, key)} > {limit}: {why}"
            for key, limit, why in RTL_GAPS if getattr(cfg, key) > limit]


# --- element bytes and port rates ----------------------------------------------------------------

def load_element_bytes(cfg: AcceleratorConfig, buffer: IntArray, fc_weights: IntArray
                       ) -> np.ndarray:
    """Bytes per element a LOAD moves. fc_weights swaps the roles (paper §7.3): FC weight blocks
    go into INPUT (weight bytes), the FC input vector into WEIGHT (data bytes)."""
    buffer, fc = np.asarray(buffer), np.asarray(fc_weights) == 1
    return np.where(buffer == Buffer.INPUT, np.where(fc, cfg.weight_bytes, cfg.data_bytes),
                    np.where(buffer == Buffer.WEIGHT,
                             np.where(fc, cfg.data_bytes, cfg.weight_bytes), cfg.bias_bytes))


# Packed 4-bit weights (LOAD packed4): two per DDR byte, low nibble first, sign-extended on chip.
PACKED_BITS = 4
PACKED_PER_BYTE = 8 // PACKED_BITS


def packed_load_allowed(cfg: AcceleratorConfig, buffer: IntArray, fc_weights: IntArray
                        ) -> np.ndarray:
    """Whether a LOAD may be packed4: it loads weights (FC weight blocks into INPUT, CONV
    weights into WEIGHT) and the config's weight element is one byte."""
    b, fc = np.asarray(buffer), np.asarray(fc_weights) == 1
    weights = ((b == Buffer.INPUT) & fc) | ((b == Buffer.WEIGHT) & ~fc)
    return weights & (cfg.weight_bytes == 1)


def weights_packed(cfg: AcceleratorConfig, fc: bool, weight_bits: int) -> bool:
    """Whether a layer's weights are stored and loaded packed4: at most 4 bits each, and the
    config allows a packed LOAD of them (FC blocks into INPUT, CONV weights into WEIGHT)."""
    buffer, role = (Buffer.INPUT, 1) if fc else (Buffer.WEIGHT, 0)
    return weight_bits <= PACKED_BITS and bool(packed_load_allowed(cfg, buffer, role))


def load_segment_bytes(cfg: AcceleratorConfig, buffer: IntArray, fc_weights: IntArray,
                       packed4: IntArray, length: IntArray) -> np.ndarray:
    """DDR bytes of one segment of `length` elements: ⌈length/2⌉ packed, else length elements
    of `load_element_bytes`."""
    return load_segment_bytes_of(load_element_bytes(cfg, buffer, fc_weights), packed4, length)


def load_segment_bytes_of(element_bytes: IntArray, packed4: IntArray, length: IntArray
                          ) -> np.ndarray:
    """`load_segment_bytes` from the element's bytes."""
    n = np.asarray(length, np.int64)
    return np.where(np.asarray(packed4) == 1, cdiv(n, PACKED_PER_BYTE), n * element_bytes)


def load_split_segments(length: IntArray, n1: IntArray, n2: IntArray, packed4: IntArray
                        ) -> np.ndarray:
    """Segments a LOAD's element writes do not cross (engines.load_write_cycles): every segment
    of a packed LOAD with an odd length, else none (0)."""
    n = np.asarray(length, np.int64)
    return np.where((np.asarray(packed4) == 1) & (n % 2 == 1), np.asarray(n1, np.int64) * n2, 0)


def save_element_bytes(cfg: AcceleratorConfig) -> int:
    """SAVE writes finalized data values."""
    return cfg.data_bytes


# --- DMA: runs, bursts and cycles (the RTL's rules are deepfpga.hw.engines') ---------------------

def cdiv(a: IntArray, b: IntArray) -> np.ndarray:
    return -(-np.asarray(a, np.int64) // np.asarray(b, np.int64))


def dma_runs(seg_bytes: IntArray, n1: IntArray, stride1: IntArray, n2: IntArray,
             stride2: IntArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The contiguous DDR runs of DMA instructions as two (count, bytes) groups each.

    Segments are issued in order (j, i); two consecutive segments merge when the second starts
    at the byte after the first ends: inside a row when stride1 == seg_bytes, across a row
    boundary when stride2 == (n1−1)·stride1 + seg_bytes."""
    seg, n1, s1, n2, s2 = (np.asarray(a, np.int64) for a in (seg_bytes, n1, stride1, n2,
                                                             stride2))
    c1, c2 = _contiguous(seg, n1, s1, n2, s2)
    cnt_a = np.select([c1 & c2, c1, c2], [np.ones_like(n1), n2, n2 - 1], n1 * n2)
    len_a = np.select([c1 & c2, c1, c2], [n1 * n2 * seg, n1 * seg, 2 * seg], seg)
    # c2 alone (n1 ≥ 2): the last segment of a row joins the first of the next
    cnt_b = np.where(~c1 & c2, n1 * n2 - 2 * (n2 - 1), 0)
    return cnt_a, len_a, cnt_b, seg


def _contiguous(seg: np.ndarray, n1: np.ndarray, s1: np.ndarray, n2: np.ndarray,
                s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside rows, across rows) contiguous."""
    return (n1 == 1) | (s1 == seg), (n2 == 1) | (s2 == (n1 - 1) * s1 + seg)


def dma_bursts(cfg: AcceleratorConfig, addr: IntArray, seg_bytes: IntArray, n1: IntArray,
               stride1: IntArray, n2: IntArray, stride2: IntArray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, bursts, beats) of DMA instructions, exactly as the engines cut them: the
    segments' contiguous runs (consecutive segments merge when the second starts where the
    first ends), each cut into bursts from its beat-aligned DDR address
    (`engines.run_bursts`: burst limit, 4 KiB boundaries)."""
    a, seg, n1, s1, n2, s2 = (np.atleast_1d(np.asarray(v, np.int64))
                              for v in (addr, seg_bytes, n1, stride1, n2, stride2))
    n = len(a)
    c1, c2 = _contiguous(seg, n1, s1, n2, s2)
    whole = c1 & c2
    rows = c1 & ~c2                          # one run per row
    loose = ~c1                              # every segment on its own, merged where adjacent
    run_addr, run_bytes, run_of = [a[whole]], [(n1 * n2 * seg)[whole]], [np.flatnonzero(whole)]
    k = np.flatnonzero(rows)
    if len(k):
        of = np.repeat(k, n2[k])
        j = np.arange(len(of)) - np.repeat(np.cumsum(n2[k]) - n2[k], n2[k])
        run_addr.append(a[of] + j * s2[of])
        run_bytes.append((n1 * seg)[of])
        run_of.append(of)
    k = np.flatnonzero(loose & (n1 * n2 * seg > 0))
    if len(k):
        cnt = n1[k] * n2[k]
        of = np.repeat(k, cnt)
        q = np.arange(len(of)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        j, i = q // n1[of], q % n1[of]
        start = a[of] + j * s2[of] + i * s1[of]
        end = start + seg[of]
        new = np.ones(len(of), bool)
        new[1:] = (of[1:] != of[:-1]) | (start[1:] != end[:-1])
        rid = np.cumsum(new) - 1
        run_addr.append(start[new])
        run_bytes.append(np.bincount(rid, weights=seg[of]).astype(np.int64))
        run_of.append(of[new])
    ra, rb, ro = (np.concatenate(x) for x in (run_addr, run_bytes, run_of))
    bursts, beats = engines.run_bursts(cfg, ra, rb)
    total = np.bincount(ro, weights=rb, minlength=n).astype(np.int64)
    return (total, np.bincount(ro, weights=bursts, minlength=n).astype(np.int64),
            np.bincount(ro, weights=beats, minlength=n).astype(np.int64))


def load_dma_cycles(cfg: AcceleratorConfig, bursts: IntArray, beats: IntArray,
                    elements: IntArray, split: IntArray = 0) -> np.ndarray:
    """Read-channel cycles of LOADs (engines.load_cycles; `split`: load_split_segments)."""
    return engines.load_cycles(cfg, bursts, beats, elements, split)


def save_dma_cycles(cfg: AcceleratorConfig, bursts: IntArray, beats: IntArray,
                    elements: IntArray) -> np.ndarray:
    """Write-channel cycles of SAVEs (engines.save_cycles)."""
    return engines.save_cycles(cfg, bursts, beats, elements)


def run_dma(cfg: AcceleratorConfig, nbytes: IntArray, element_bytes: IntArray, *,
            save: bool, addr: IntArray = 0, elements: IntArray | None = None,
            split: IntArray = 0) -> tuple[np.ndarray, np.ndarray]:
    """(bursts, cycles) of one contiguous run of `nbytes` from `addr` (0 → 0), for closed forms
    that do not know the DDR address of every run (the compiler's cost model). `elements`
    (default nbytes / element_bytes) and `split` (load_split_segments) for packed loads."""
    bursts, beats = engines.run_bursts(cfg, addr, nbytes)
    if elements is None:
        elements = np.asarray(nbytes, np.int64) // np.asarray(element_bytes, np.int64)
    if save:
        cyc = save_dma_cycles(cfg, bursts, beats, elements)
    else:
        cyc = load_dma_cycles(cfg, bursts, beats, elements, split)
    return bursts, np.where(np.asarray(nbytes) > 0, cyc, 0)


# --- the CALC engine -----------------------------------------------------------------------------

def fc_lanes(cfg: AcceleratorConfig) -> int:
    """Inputs one FC output takes per cycle: one wide read of B banks."""
    return engines.bank_count(cfg)


def calc_cycles(cfg: AcceleratorConfig, kind: IntArray, ti: IntArray, to: IntArray,
                out_rows: IntArray, out_cols: IntArray, stride: IntArray, pool: IntArray,
                accumulate: IntArray, finalize: IntArray) -> np.ndarray:
    """Cycles the CALC engine spends on CALC instructions (engines.calc_engine_cycles: the
    RTL's Datapath cycles plus the issue); ti = 0 or to = 0 is a synchronisation no-op."""
    return engines.calc_engine_cycles(cfg, kind, ti, to, out_rows, out_cols, stride, pool,
                                      accumulate, finalize)


def calc_macs(cfg: AcceleratorConfig, kind: IntArray, ti: IntArray, to: IntArray,
              out_rows: IntArray, out_cols: IntArray) -> np.ndarray:
    """Multiply-accumulates a CALC performs (CONV: all 9 taps, padding included; CONV1: one;
    FC: out_rows = out_cols = 1)."""
    ti, to = np.asarray(ti, np.int64), np.asarray(to, np.int64)
    return ti * to * np.asarray(out_rows) * out_cols * calc_taps(kind)


# --- engines and token channels ------------------------------------------------------------------

ENGINES = ("LOAD", "CALC", "SAVE")
LOAD, CALC, SAVE = 0, 1, 2
ENGINE_OF = {Load: LOAD, Calc: CALC, Save: SAVE}
FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")
# The token channels, producer → consumer, with the producer's push flag and the consumer's pop
# flag. A channel's index is its position here.
CHANNEL_TABLE: tuple[tuple[int, int, str, str], ...] = (
    (LOAD, CALC, "push_next", "pop_prev"),
    (CALC, LOAD, "push_prev", "pop_next"),
    (CALC, SAVE, "push_next", "pop_prev"),
    (SAVE, CALC, "push_prev", "pop_next"),
)
CHANNELS = tuple(f"{ENGINES[p]}→{ENGINES[c]}" for p, c, _, _ in CHANNEL_TABLE)
# (producer, consumer) → (push flag, pop flag)
CHANNEL_FLAGS = {(p, c): (push, pop) for p, c, push, pop in CHANNEL_TABLE}
CONSUMER = tuple(c for _, c, _, _ in CHANNEL_TABLE)


def flag_channels(engine: int) -> dict[str, tuple[int, bool]]:
    """Per flag of `engine`'s instructions: (channel, is_pop). A flag absent here has no
    neighbour on that side and must be 0."""
    out = {}
    for ch, (p, c, push, pop) in enumerate(CHANNEL_TABLE):
        if p == engine:
            out[push] = (ch, False)
        if c == engine:
            out[pop] = (ch, True)
    return out


# --- the host ------------------------------------------------------------------------------------

def stays_float(layer: Layer, graph_outputs: Collection[str]) -> bool:
    """A host layer computed in float (softmax, LRN, …) whose value is a graph output is kept in
    float: no later layer needs it quantized (the contract's host rule, docs/arithmetic.md)."""
    return layer.host_float and layer.name in graph_outputs
