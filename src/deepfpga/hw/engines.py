"""Cycle rules of the accelerator's engines as the generated RTL builds them (deepfpga.rtl.accel),
written once: the RTL's modules take their geometry from here, and the timing model
(deepfpga.sim.timing) and the compiler's cost model (deepfpga.compiler.cost) their cycles,
through deepfpga.hw.arch; the resource model (deepfpga.hw.resources) its widths and geometry.

- the CALC engine's geometry: B banks, the product grid of `grid_channels` output channels × B
  pixel lanes, the weight staging depth and banks, the pixels of one grid block;
- the CALC cycles of an instruction on the Datapath (calc_valid accepted → calc_done), exact:
  `tests/rtl/accel/test_calc_timing.py` checks them against amaranth.sim cycle for cycle;
- the AXI4 bursts of a DMA run (beats, 4 KiB boundaries, the burst limit) and the per-burst
  latency and beat rate of the DDR; the LOAD element lanes and the SAVE element rate;
- the instruction fetch's bursts.

docs/rtl.md explains the CALC terms; docs/timing.md the DMA model and its measured error.
Plain Python and numpy, no Amaranth: every function takes scalars or numpy arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from deepfpga.hw import geometry
from deepfpga.hw.devices import get_device
from deepfpga.hw.isa import CALC_TAPS, INSTRUCTION_BYTES, CalcKind

if TYPE_CHECKING:
    from deepfpga.hw.accelerator import AcceleratorConfig

IntArray = np.ndarray | int

AXI_MAX_BURST_BEATS = 256      # AXI4 INCR: arlen/awlen 0..255
AXI_BOUNDARY_BYTES = 4096      # an INCR burst never crosses a 4 KiB boundary


def _cdiv(a: IntArray, b: IntArray) -> np.ndarray:
    return -(-np.asarray(a, np.int64) // np.asarray(b, np.int64))


# --- the CALC engine's geometry ------------------------------------------------------------------

def bank_count(cfg: AcceleratorConfig) -> int:
    """B: banks of INPUT, WEIGHT and OUTPUT — the values one CALC read or write moves: the
    largest power of two ≤ convolvers_per_pe / 2. (A trade-off measured on fmnist-vgg and
    fmnist-alex on `zedboard`: B = 8 against 16 costs 13 % more CALC cycles on fmnist-vgg, saves
    18 % on fmnist-alex's narrow maps, and simulates 1.5× faster under Verilator.)"""
    return geometry.banks(cfg.convolvers_per_pe)


def grid_channels(cfg: AcceleratorConfig) -> int:
    """Output channels of the grid: the PEs' lanes (num_pe · convolvers_per_pe) over B."""
    return geometry.channels(cfg.num_pe, cfg.convolvers_per_pe)


def grid_multipliers(cfg: AcceleratorConfig) -> int:
    """Products the CALC grid computes per cycle: grid_channels × B pixel lanes, one product per
    lane (≈ num_pe · convolvers_per_pe; not 9 per convolver: the grid takes a 3×3 window's taps
    one per cycle). The peak (AcceleratorConfig.peak_gops) counts it; the DSPs that compute
    them are `grid_dsps` (two products per DSP when `packs_pairs`)."""
    return geometry.products(cfg.num_pe, cfg.convolvers_per_pe)


# --- two products per DSP (Xilinx WP486) ---------------------------------------------------------
# Channels u and u+1 meet the same pixel: one multiplier computes pix·(w_hi·2^16 + w_lo) + 2^15.
# At ≤ 8 bits |pix·w_lo| ≤ 2^14, so pix·w_lo + 2^15 lies in [0, 2^16): the low 16 bits hold it
# without a borrow from the high field, which is then pix·w_hi exactly (tests/hw/test_packing.py
# checks every 8-bit triple). The packed operand is 25 bits (a DSP48E1's A port), the pixel 8
# (its 18-bit B port), the sum 32 bits.
PACK_SHIFT = 16
PACK_BIAS = 1 << (PACK_SHIFT - 1)
PACK_MAX_BITS = 8


def packs_pairs(cfg: AcceleratorConfig) -> bool:
    """Whether the grid computes two channels' products in one multiplier: operands of at most
    8 bits and a DSP whose ports take the packed weight (PACK_SHIFT + 9 bits) and the pixel."""
    ob, dev = operand_bits(cfg), get_device(cfg.device)
    return (ob <= PACK_MAX_BITS and dev.dsp_a_bits >= PACK_SHIFT + ob + 1
            and dev.dsp_b_bits >= ob)


def grid_dsps(cfg: AcceleratorConfig) -> int:
    """Multipliers the grid builds: one per channel pair (the last channel alone when
    grid_channels is odd) and pixel lane when `packs_pairs`, else one per product."""
    n = grid_channels(cfg)
    return bank_count(cfg) * ((n + 1) // 2 if packs_pairs(cfg) else n)


def packed_weight(w_hi: IntArray, w_lo: IntArray) -> np.ndarray:
    """The multiplier operand of a channel pair."""
    return np.asarray(w_hi, np.int64) * (1 << PACK_SHIFT) + np.asarray(w_lo, np.int64)


def split_packed(p: IntArray) -> tuple[np.ndarray, np.ndarray]:
    """(pix·w_hi, pix·w_lo) from p = pix·packed_weight(w_hi, w_lo) + PACK_BIAS: the low field
    less the bias (its top bit inverted, read signed), and the high field as it is."""
    p = np.asarray(p, np.int64)
    return p >> PACK_SHIFT, (p & ((1 << PACK_SHIFT) - 1)) - PACK_BIAS


def staging_depth(cfg: AcceleratorConfig) -> int:
    """Words of the grid's weight staging memory (WEIGHT entries / channels); a CONV whose
    terms (9·ti, a CONV1's ti) fit the depth runs on the grid, others on the one-accumulator
    loop."""
    return max(9, cfg.weight_buffer_entries // grid_channels(cfg))


def staging_banks(cfg: AcceleratorConfig) -> int:
    """Banks of the staging memory (term t in bank t mod S): S = B, what one wide WEIGHT read
    moves, so PSTAGE stages B consecutive terms of a channel per cycle."""
    return bank_count(cfg)


def staging_rows(cfg: AcceleratorConfig) -> int:
    """Rows of each staging bank: the staging depth over the banks."""
    return -(-staging_depth(cfg) // staging_banks(cfg))


def staging_cycles(cfg: AcceleratorConfig, terms: IntArray) -> np.ndarray:
    """PSTAGE cycles per output channel of `terms` (9·ti) weights: one wide WEIGHT read of
    staging_banks consecutive terms per cycle (a channel's last read may be partial)."""
    return _cdiv(terms, staging_banks(cfg))


def block_width(banks: IntArray, stride: IntArray) -> np.ndarray:
    """Output pixels of one grid block: those whose leftmost tap lies in one wide INPUT read
    of `banks` consecutive entries (pixel p reads entry lane stride·p)."""
    return np.maximum(1, np.asarray(banks, np.int64) // np.maximum(1, stride))


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


def pool_lanes(cfg: AcceleratorConfig) -> int:
    """Pool lanes of the finalize: the horizontal pairs of one chunk of B columns (B = 1: one
    pair over two chunks)."""
    return max(1, bank_count(cfg) // 2)


def pool_line_entries(cfg: AcceleratorConfig) -> int:
    """Entries of the finalize's pooling row: one per chunk of a pooled row (B columns, at
    least 2), each `pool_lanes` pair maxima wide."""
    return (pool_width(cfg) - 1) // max(2, bank_count(cfg)) + 1


# --- CALC cycles ---------------------------------------------------------------------------------

def calc_taps(kind: IntArray) -> np.ndarray:
    """Terms per input channel of each CALC (isa.CALC_TAPS): 9 for a CONV's 3×3 window, 1 for a
    CONV1 (its one tap) and an FC weight; 0 for an invalid kind."""
    k = np.asarray(kind)
    taps = np.zeros(k.shape, np.int64)
    for kk, n in CALC_TAPS.items():
        taps = np.where(k == kk, n, taps)
    return taps


FIN_BITS = 64               # finalize width: the functional simulator's int64 (bias << 63 wraps)
SETUP_CYCLES = 11 + 1       # Setup.STEPS products, then the checks
MAC_DRAIN_CYCLES = 4        # the MAC pipeline empties before FIN reads the accumulators
# read → read register → bias shift → add → ReLU → 4-stage shift → pool → write register
FIN_DRAIN_CYCLES = 12
PIXEL_DRAIN_CYCLES = 3      # output-channel-parallel MAC: last term → sums ready
NOP_CYCLES = 2              # ti = 0 or to = 0: accepted and done
# CALC engine, measured on the RTL trace: tokens taken → calc_done is the Datapath's cycles + 2
# (the issue register and calc_valid), and the next CALC takes its tokens one cycle later.
CALC_ISSUE_CYCLES = 3


def fin_chunks(cfg: AcceleratorConfig, to: IntArray, out_rows: IntArray, out_cols: IntArray,
               pool: IntArray) -> np.ndarray:
    """Cycles the finalize issues: chunks of up to B consecutive accumulators, one per cycle,
    never spanning two channels (the bias is per channel) — and, when pooling, never two rows
    (a chunk then holds whole horizontal pairs)."""
    b = bank_count(cfg)
    r, c = np.asarray(out_rows, np.int64), np.asarray(out_cols, np.int64)
    per_channel = np.where(np.asarray(pool).astype(bool), r * _cdiv(c, b), _cdiv(r * c, b))
    return np.asarray(to, np.int64) * per_channel


def _calc_body(cfg: AcceleratorConfig, kind: IntArray, ti: IntArray, to: IntArray,
               out_rows: IntArray, out_cols: IntArray, stride: IntArray, pool: IntArray,
               accumulate: IntArray, finalize: IntArray) -> dict[str, np.ndarray]:
    """The body of a CALC on the Datapath (between setup and MAC drain) and its finalize: their
    cycles, the cycles in which products are formed, and the geometry they come from."""
    ti, to = np.asarray(ti, np.int64), np.asarray(to, np.int64)
    rows, cols = np.asarray(out_rows, np.int64), np.asarray(out_cols, np.int64)
    pixels = rows * cols
    fc = np.asarray(kind) == CalcKind.FC
    b = bank_count(cfg)
    terms = calc_taps(kind) * ti          # CONV: t = i·9 + ky·3 + kx; CONV1: t = i
    groups = _cdiv(to, grid_channels(cfg))
    blocks = rows * _cdiv(cols, block_width(b, stride))
    pre = np.where(np.asarray(accumulate).astype(bool), to, groups)
    staging = to * staging_cycles(cfg, terms)
    block_io = blocks * (pre + groups * PIXEL_DRAIN_CYCLES + to)
    grid = staging + block_io + blocks * groups * terms
    on_grid = ~fc & (terms <= staging_depth(cfg))
    fc_reads = _cdiv(ti, b)
    body = np.where(fc, to * fc_reads, np.where(on_grid, grid, to * pixels * terms))
    # grid: the terms of each block and channel group; FC and the loop: every body cycle
    mac = np.where(on_grid, blocks * groups * terms, body)
    fin = np.where(np.asarray(finalize).astype(bool),
                   fin_chunks(cfg, to, rows, cols, pool) + FIN_DRAIN_CYCLES, 0)
    return {"fin": fin, "body": body, "mac": mac, "fc": fc, "on_grid": on_grid, "ti": ti, "to": to,
            "pixels": pixels, "terms": terms, "groups": groups, "blocks": blocks,
            "fc_reads": fc_reads, "staging": np.where(on_grid, staging, 0),
            "block_io": np.where(on_grid, block_io, 0)}


def datapath_cycles(cfg: AcceleratorConfig, kind: IntArray, ti: IntArray, to: IntArray,
                    out_rows: IntArray, out_cols: IntArray, stride: IntArray, pool: IntArray,
                    accumulate: IntArray, finalize: IntArray) -> np.ndarray:
    """Cycles of CALC instructions on the Datapath, from the cycle after calc_valid was accepted
    to calc_done (inclusive), for CALCs that pass their checks.

    GRID (CONV whose terms, 9·ti or a CONV1's ti, fit the staging depth): per group of
    `grid_channels` output channels, stage its terms' weights per channel, B per cycle
    (`staging_cycles`), then per block of B pixels (one output row) its terms plus the old
    accumulators (one per channel, or one cycle when not accumulating), the drain and one write
    per channel. FC: one wide read of B inputs per cycle per output. Other CONVs: one product
    per cycle. Then the MAC drain and, when finalizing, one chunk of B values per cycle
    (`fin_chunks`)."""
    c = _calc_body(cfg, kind, ti, to, out_rows, out_cols, stride, pool, accumulate, finalize)
    ti, to, pixels = c["ti"], c["to"], c["pixels"]
    t = SETUP_CYCLES + c["body"] + MAC_DRAIN_CYCLES + c["fin"] + 1
    t = np.where(pixels == 0, SETUP_CYCLES + 1, t)
    return np.where((ti == 0) | (to == 0), NOP_CYCLES, t)


# Where the product slots of a CALC's cycles go (calc_slots); the keys after "products" are
# losses: channels of the last group beyond `to`, pixel lanes a block leaves empty (stride,
# the row's edge), the one-product loop's idle slots, FC's slots beyond its B lanes and its
# last read beyond ti, and the cycles around the products: the grid's weight staging, its
# per-block accumulator reads, pixel drains and writes, the finalize (B values per cycle),
# and the rest (setup, MAC drain, issue).
CALC_SLOT_PARTS = ("products", "idle_channels", "idle_pixel_lanes", "loop_path",
                   "fc_idle_convolvers", "fc_lane_remainder", "pass_staging", "pass_block_io",
                   "pass_finalize", "pass_fixed")


def calc_slots(cfg: AcceleratorConfig, kind: IntArray, ti: IntArray, to: IntArray,
               out_rows: IntArray, out_cols: IntArray, stride: IntArray, pool: IntArray,
               accumulate: IntArray, finalize: IntArray) -> dict[str, np.ndarray]:
    """The grid_multipliers × calc_engine_cycles slots of each CALC, split by CALC_SLOT_PARTS
    (they add up exactly); "products" are the products formed (CONV: all 9 taps of ti inputs,
    CONV1: one)."""
    p, b = grid_multipliers(cfg), bank_count(cfg)
    c = _calc_body(cfg, kind, ti, to, out_rows, out_cols, stride, pool, accumulate, finalize)
    ti, to, fc, grid = c["ti"], c["to"], c["fc"], c["on_grid"]
    cycles = calc_engine_cycles(cfg, kind, ti, to, out_rows, out_cols, stride, pool,
                                accumulate, finalize)
    live = (ti > 0) & (to > 0) & (c["pixels"] > 0)
    mac = np.where(live, c["mac"], 0)
    staging, block_io = np.where(live, c["staging"], 0), np.where(live, c["block_io"], 0)
    fin = np.where(live, c["fin"], 0)
    products = np.where(fc, ti * to, to * c["pixels"] * c["terms"])
    lanes = c["blocks"] * c["terms"]
    parts = {
        "products": np.where(live, products, 0),
        "idle_channels": np.where(live & grid, (c["groups"] * grid_channels(cfg) - to) * b
                                  * lanes, 0),
        "idle_pixel_lanes": np.where(live & grid, to * (b * c["blocks"] - c["pixels"])
                                     * c["terms"], 0),
        "loop_path": np.where(live & ~fc & ~grid, (p - 1) * products, 0),
        "fc_idle_convolvers": np.where(live & fc, (p - b) * mac, 0),
        "fc_lane_remainder": np.where(live & fc, to * (b * c["fc_reads"] - ti), 0),
        "pass_staging": p * staging,
        "pass_block_io": p * block_io,
        "pass_finalize": p * fin,
        "pass_fixed": p * (cycles - mac - staging - block_io - fin),
    }
    return parts


def calc_engine_cycles(cfg: AcceleratorConfig, kind: IntArray, ti: IntArray, to: IntArray,
                       out_rows: IntArray, out_cols: IntArray, stride: IntArray, pool: IntArray,
                       accumulate: IntArray, finalize: IntArray) -> np.ndarray:
    """Cycles the CALC engine spends on each instruction: from taking its tokens to taking the
    next instruction's (the Datapath's cycles plus the issue)."""
    return datapath_cycles(cfg, kind, ti, to, out_rows, out_cols, stride, pool, accumulate,
                           finalize) + CALC_ISSUE_CYCLES


# --- AXI bursts and the DDR -----------------------------------------------------------------------

def beat_bytes(cfg: AcceleratorConfig) -> int:
    return cfg.axi_data_bits // 8


def burst_limit_bytes(cfg: AcceleratorConfig) -> int:
    """Longest burst the engines issue: 256 beats, 4 KiB and `max_burst_bytes` (rounded down to
    whole beats, at least one beat)."""
    bb = beat_bytes(cfg)
    return min(AXI_MAX_BURST_BEATS * bb, AXI_BOUNDARY_BYTES,
               max(bb, cfg.max_burst_bytes // bb * bb))


def run_bursts(cfg: AcceleratorConfig, addr: IntArray, nbytes: IntArray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(bursts, beats) of contiguous runs of `nbytes` from DDR byte `addr` (0 bytes → 0, 0), as
    the engines' BurstSplitter cuts them: from the beat-aligned start, bursts of at most
    `burst_limit_bytes`, each cut again at a 4 KiB boundary."""
    a, n = np.asarray(addr, np.int64), np.asarray(nbytes, np.int64)
    bb, lim, page = beat_bytes(cfg), burst_limit_bytes(cfg), AXI_BOUNDARY_BYTES
    a0 = a - a % bb
    e = _cdiv(a + n, bb) * bb                     # end, rounded up to a beat
    beats = np.where(n > 0, (e - a0) // bb, 0)
    p0, p1 = a0 // page, (e - 1) // page
    first_end = np.minimum(e, (p0 + 1) * page)
    bursts = (_cdiv(first_end - a0, lim) + np.maximum(0, p1 - p0 - 1) * _cdiv(page, lim)
              + np.where(p1 > p0, _cdiv(e - p1 * page, lim), 0))
    return np.where(n > 0, bursts, 0), beats


def beat_cycles(cfg: AcceleratorConfig) -> float:
    """Cycles per beat of one channel: one per cycle unless the DDR's byte rate is lower."""
    return max(1.0, beat_bytes(cfg) / cfg.ddr_bytes_per_cycle)


def load_lanes(cfg: AcceleratorConfig) -> int:
    """Elements per cycle the LOAD engine writes into a buffer (the masked wide port: one per
    bank)."""
    return bank_count(cfg)


# LOAD (measured on the RTL trace): tokens taken → the first burst's service starts (chunker,
# splitter, AR register, the read arbiter, the DDR's acceptance) and the last beat → the last
# element written; together 6 cycles on `tiny` and `zedboard`.
LOAD_ISSUE_CYCLES = 4
LOAD_TAIL_CYCLES = 2
# SAVE: OUTPUT values (one per cycle) → a byte queue of 2 beats + 2 values → W beats; while a
# burst waits out its latency the queue fills and the OUTPUT reads stop. The first OUTPUT read
# and the last write response: 5 cycles together (measured).
SAVE_ISSUE_CYCLES = 3
SAVE_TAIL_CYCLES = 2


def save_stall_cycles(cfg: AcceleratorConfig) -> int:
    """Cycles a SAVE's value stream stops per burst: the burst latency beyond what its byte
    queue (2 beats + 2 values, one value per cycle) absorbs."""
    return max(0, cfg.burst_overhead_cycles - (2 * beat_bytes(cfg) // cfg.data_bytes + 2) + 1)


def load_write_cycles(cfg: AcceleratorConfig, elements: IntArray, split: IntArray = 0
                      ) -> np.ndarray:
    """Cycles the LOAD engine's element lanes take to write `elements`: `load_lanes` per cycle
    across segment boundaries, except that the writes never cross the end of a packed odd
    segment (its pad nibble is dropped there): `split` > 0 such segments of equal length cost
    ⌈length/lanes⌉ cycles each."""
    n, k = np.asarray(elements, np.int64), np.asarray(split, np.int64)
    lanes = load_lanes(cfg)
    return np.where(k > 0, k * _cdiv(n // np.maximum(k, 1), lanes), _cdiv(n, lanes))


def load_cycles(cfg: AcceleratorConfig, bursts: IntArray, beats: IntArray, elements: IntArray,
                split: IntArray = 0) -> np.ndarray:
    """Read-channel cycles of LOADs: the bursts' latency plus their beats, or the element lanes
    when they are slower (`load_write_cycles`; `split`: packed odd segments)."""
    return (np.asarray(bursts, np.int64) * cfg.burst_overhead_cycles
            + np.maximum(np.ceil(np.asarray(beats) * beat_cycles(cfg) - 1e-9).astype(np.int64),
                         load_write_cycles(cfg, elements, split)))


def save_cycles(cfg: AcceleratorConfig, bursts: IntArray, beats: IntArray, elements: IntArray
                ) -> np.ndarray:
    """Write-channel cycles of SAVEs: one value per cycle (plus the stalls at each burst), or
    the bursts' latency and beats when those are slower."""
    b = np.asarray(bursts, np.int64)
    ddr = b * cfg.burst_overhead_cycles + np.ceil(np.asarray(beats) * beat_cycles(cfg)
                                                  - 1e-9).astype(np.int64)
    return np.maximum(np.asarray(elements, np.int64) + b * save_stall_cycles(cfg), ddr)


# --- instruction fetch ----------------------------------------------------------------------------

FETCH_DEPTH = 16             # words the fetch FIFO holds
DISPATCH_DEPTH = 8           # instructions each engine's dispatch queue holds
# Words the fetch runs ahead of a LOAD at most: its FIFO and the three dispatch queues (the
# best fit of the trace too: 24 words leaves fc8 on `tiny` +3 %, 40 words −0.2 %).
FETCH_AHEAD_WORDS = FETCH_DEPTH + 3 * DISPATCH_DEPTH
# From START to the first instruction's dispatch, beyond its burst (fetch request, arbiter,
# decode): measured on the RTL trace.
FETCH_START_CYCLES = 12


def fetch_burst_words(cfg: AcceleratorConfig) -> int:
    """Words of one fetch burst: half the FIFO, within the burst limit."""
    return max(1, min(burst_limit_bytes(cfg) // INSTRUCTION_BYTES, FETCH_DEPTH // 2))


def fetch_word_cycles(cfg: AcceleratorConfig) -> float:
    """Read-channel cycles one fetched instruction word costs on average (its beats and its share
    of a burst's latency): the fetch shares the read channel with LOAD."""
    return (INSTRUCTION_BYTES // beat_bytes(cfg) * beat_cycles(cfg)
            + cfg.burst_overhead_cycles / fetch_burst_words(cfg))


def _word_beat_cycles(cfg: AcceleratorConfig) -> int:
    return int(np.ceil(INSTRUCTION_BYTES // beat_bytes(cfg) * beat_cycles(cfg)))


def fetch_share_cycles(cfg: AcceleratorConfig, words: IntArray) -> np.ndarray:
    """Read-channel cycles the fetch has taken from LOAD once it has read the first `words` of
    a segment (every START fetches again from the segment's first word): their beats and burst
    latencies, less the first burst's latency and first word, which come before the first
    dispatch (`start_cycles`)."""
    w = np.asarray(words, np.int64)
    taken = np.floor(fetch_word_cycles(cfg) * w).astype(np.int64)
    return np.maximum(0, taken - (cfg.burst_overhead_cycles + _word_beat_cycles(cfg)))


def start_cycles(cfg: AcceleratorConfig) -> int:
    """Cycles from START to the first instruction's dispatch: the first fetch burst's latency
    and one word's beats."""
    return FETCH_START_CYCLES + cfg.burst_overhead_cycles + _word_beat_cycles(cfg)
