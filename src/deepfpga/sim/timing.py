"""Cycle-level timing model of the accelerator running a program (docs/timing.md).

Three engines (LOAD, CALC, SAVE) each execute their own instructions in program order, start an
instruction as soon as its dependency tokens are available, and push their tokens when it
completes. LOAD and SAVE share one DDR port: their transfers never overlap (first come, first
served, whole instructions). Instruction durations come from closed formulas:

- DMA (LOAD/SAVE): the instruction's segments are merged into runs of contiguous DDR bytes, each
  run split into transactions of at most `max_burst_bytes`; a transaction of b bytes takes
  `burst_overhead_cycles + ceil(b / rate)` cycles, rate = min(DDR bytes per cycle, port width ×
  element bytes).
- CALC CONV: ceil(ti / convolvers_per_pe) · ceil(to / num_pe) passes, each streaming the
  (out_rows−1)·stride+3 × (out_cols−1)·stride+3 window region one pixel per cycle (line-buffer
  fill included), plus the pipeline depth once.
- CALC FC: ceil(to / num_pe) · ceil(ti / (9 · convolvers_per_pe)) cycles plus the pipeline depth.

Each END closes a segment (the host runs between segments, untimed); a CALC with ti = 0 or
to = 0 is a one-cycle synchronisation no-op. The scheduler is an event loop with O(1) work per
instruction; durations are computed with numpy. docs/timing.md has the equations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfpga.compiler.isa import Buffer, Calc, CalcKind, End, Instruction, Load, Program, Save
from deepfpga.errors import InputError
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.sim.roofline import layer_bound

if TYPE_CHECKING:
    from deepfpga.compiler.mapping import Stage
    from deepfpga.compiler.tiling import Tiling

ENGINES = ("LOAD", "CALC", "SAVE")
_LOAD, _CALC, _SAVE = 0, 1, 2
# Token channels, named producer→consumer.
CHANNELS = ("LOAD→CALC", "CALC→LOAD", "CALC→SAVE", "SAVE→CALC")
_L2C, _C2L, _C2S, _S2C = 0, 1, 2, 3
_EPS = 1e-9  # float guard for ceil(bytes / rate) when the rate is a float like 28.000000000004


class DeadlockError(InputError):
    """The program can never finish: some engine waits for a token that is never pushed."""


# --- instruction costs -------------------------------------------------------------------------

def pipeline_depth(cfg: AcceleratorConfig, pool: bool = False) -> int:
    """Cycles from a pixel entering a convolver to its result leaving the PE: multiplier (1),
    the convolver's 9-input adder tree (4), the PE's adder tree over the convolvers plus the
    partial-sum/bias input (ceil log2(cpp + 1)), ReLU (1), data shift + saturation (1), and the
    2×2 pool comparator (1) when pooling."""
    k2 = cfg.kernel * cfg.kernel
    return (1 + math.ceil(math.log2(k2)) + math.ceil(math.log2(cfg.convolvers_per_pe + 1))
            + 2 + int(bool(pool)))


def conv_calc_cycles(cfg: AcceleratorConfig, ti: int, to: int, out_rows: int, out_cols: int,
                     stride: int, pool: bool = False) -> int:
    """One CONV tile: every (channel group, output group) pass streams the window region."""
    passes = -(-ti // cfg.convolvers_per_pe) * -(-to // cfg.num_pe)
    rows = (out_rows - 1) * stride + cfg.kernel
    cols = (out_cols - 1) * stride + cfg.kernel
    return passes * rows * cols + pipeline_depth(cfg, pool)


def fc_calc_cycles(cfg: AcceleratorConfig, ti: int, to: int) -> int:
    """One FC block: each PE takes one output row per pass, its 9·cpp multipliers one input each."""
    lanes = cfg.kernel * cfg.kernel * cfg.convolvers_per_pe
    return -(-to // cfg.num_pe) * -(-ti // lanes) + pipeline_depth(cfg)


def dma_runs(seg_bytes: int, n1: int, stride1: int, n2: int, stride2: int
             ) -> list[tuple[int, int]]:
    """The contiguous runs of one DMA instruction, as (count, bytes) groups.

    Segments are issued in order (j, i); two consecutive segments merge when the second starts
    at the byte after the first ends: inside a row when stride1 == seg_bytes, across a row
    boundary when stride2 == (n1−1)·stride1 + seg_bytes."""
    c1 = n1 == 1 or stride1 == seg_bytes
    c2 = n2 == 1 or stride2 == (n1 - 1) * stride1 + seg_bytes
    if c1 and c2:
        return [(1, n1 * n2 * seg_bytes)]
    if c1:
        return [(n2, n1 * seg_bytes)]
    if c2:  # n1 ≥ 2: the last segment of a row joins the first of the next
        return [(n2 - 1, 2 * seg_bytes), (n1 * n2 - 2 * (n2 - 1), seg_bytes)]
    return [(n1 * n2, seg_bytes)]


def transfer_cycles(run_bytes: int, rate: float, cfg: AcceleratorConfig) -> tuple[int, int]:
    """(transactions, cycles) of one contiguous run of `run_bytes` at `rate` bytes per cycle."""
    m = cfg.max_burst_bytes
    full, rem = divmod(run_bytes, m)
    cyc = full * (cfg.burst_overhead_cycles + math.ceil(m / rate - _EPS))
    if rem:
        cyc += cfg.burst_overhead_cycles + math.ceil(rem / rate - _EPS)
    return full + (rem > 0), cyc


def dma_element_bytes(ins: Load | Save, cfg: AcceleratorConfig) -> int:
    if isinstance(ins, Save):
        return cfg.data_bytes
    # fc_weights swaps the roles (paper §7.3): FC weights into INPUT, the FC vector into WEIGHT
    if ins.buffer == Buffer.INPUT:
        return cfg.weight_bytes if ins.fc_weights else cfg.data_bytes
    if ins.buffer == Buffer.WEIGHT:
        return cfg.data_bytes if ins.fc_weights else cfg.weight_bytes
    return cfg.bias_bytes


def dma_rate(ins: Load | Save, cfg: AcceleratorConfig) -> float:
    """Bytes per cycle: the DDR's, limited by the port (values per cycle × element bytes).
    The INPUT buffer (feature maps and FC weight blocks) fills through datain ports, the WEIGHT
    and BIAS buffers through weightin ports, SAVE drains through dataout ports."""
    eb = dma_element_bytes(ins, cfg)
    if isinstance(ins, Save):
        ports = cfg.dataout_port_num
    else:
        ports = cfg.datain_port_num if ins.buffer == Buffer.INPUT else cfg.weightin_port_num
    return min(cfg.ddr_bytes_per_cycle, ports * eb)


# --- vectorised costs of a whole program ---------------------------------------------------------

_LOAD_FIELDS = attrgetter("buffer", "fc_weights", "length", "n1", "stride1", "n2", "stride2")
_SAVE_FIELDS = attrgetter("length", "n1", "stride1", "n2", "stride2")
_CALC_FIELDS = attrgetter("kind", "ti", "to", "out_rows", "out_cols", "stride", "pool")
_FLAGS = attrgetter("pop_prev", "pop_next", "push_prev", "push_next")
_ENGINE_OF = {Load: _LOAD, Calc: _CALC, Save: _SAVE, End: 3}


def _ceil_div(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    return np.ceil(a / b - _EPS).astype(np.int64)


def _run_cycles(count: np.ndarray, length: np.ndarray, rate: np.ndarray,
                cfg: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    m, ovh = cfg.max_burst_bytes, cfg.burst_overhead_cycles
    full, rem = np.divmod(length, m)
    has_rem = rem > 0
    trans = count * (full + has_rem)
    cyc = count * (full * (ovh + _ceil_div(np.full_like(rate, m), rate))
                   + np.where(has_rem, ovh + _ceil_div(rem, rate), 0))
    return trans, cyc


def _dma_costs(rows: np.ndarray, eb: np.ndarray, rate: np.ndarray, cfg: AcceleratorConfig
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bytes, transactions, cycles of DMA instructions; rows = (length, n1, s1, n2, s2)."""
    length, n1, s1, n2, s2 = rows.T
    seg = length * eb
    c1 = (n1 == 1) | (s1 == seg)
    c2 = (n2 == 1) | (s2 == (n1 - 1) * s1 + seg)
    # Two (count, bytes) groups per instruction, as in dma_runs.
    cnt_a = np.select([c1 & c2, c1, c2], [np.ones_like(n1), n2, n2 - 1], n1 * n2)
    len_a = np.select([c1 & c2, c1, c2], [n1 * n2 * seg, n1 * seg, 2 * seg], seg)
    cnt_b = np.where(~c1 & c2, n1 * n2 - 2 * (n2 - 1), 0)
    ta, ca = _run_cycles(cnt_a, len_a, rate, cfg)
    tb, cb = _run_cycles(cnt_b, seg, rate, cfg)
    return n1 * n2 * seg, ta + tb, ca + cb


@dataclass(frozen=True)
class _Costs:
    engine: np.ndarray        # 0 LOAD, 1 CALC, 2 SAVE, 3 END
    cycles: np.ndarray
    bytes_in: np.ndarray      # DDR → buffers
    bytes_out: np.ndarray     # buffers → DDR
    transactions: np.ndarray
    macs: np.ndarray          # multiply-accumulates the CALC performs (all 9 taps)
    is_fc: np.ndarray
    is_conv: np.ndarray


def _load_rate(buffer: np.ndarray, fc_weights: np.ndarray, cfg: AcceleratorConfig
               ) -> tuple[np.ndarray, np.ndarray]:
    """Element bytes and bytes per cycle of LOAD instructions (vector form of dma_rate)."""
    inp = buffer == Buffer.INPUT
    fc = fc_weights == 1
    eb = np.where(inp, np.where(fc, cfg.weight_bytes, cfg.data_bytes),
                  np.where(buffer == Buffer.WEIGHT,
                           np.where(fc, cfg.data_bytes, cfg.weight_bytes), cfg.bias_bytes))
    ports = np.where(inp, cfg.datain_port_num, cfg.weightin_port_num)
    return eb, np.minimum(cfg.ddr_bytes_per_cycle, (ports * eb).astype(np.float64))


def _program_costs(ins: Sequence[Instruction], cfg: AcceleratorConfig) -> _Costs:
    n = len(ins)
    try:
        engine = np.fromiter((_ENGINE_OF[type(i)] for i in ins), np.int64, n)
    except KeyError as e:
        raise InputError(f"not an instruction: {e.args[0].__name__}") from None
    cycles = np.zeros(n, np.int64)
    bytes_in = np.zeros(n, np.int64)
    bytes_out = np.zeros(n, np.int64)
    trans = np.zeros(n, np.int64)
    macs = np.zeros(n, np.int64)
    is_fc = np.zeros(n, bool)
    is_conv = np.zeros(n, bool)
    loads, calcs, saves = (np.flatnonzero(engine == e) for e in (_LOAD, _CALC, _SAVE))
    if len(loads):
        f = np.array([_LOAD_FIELDS(ins[k]) for k in loads], np.int64)
        for k in np.flatnonzero(f[:, 0] > Buffer.BIAS):
            raise InputError(f"instruction {loads[k]}: LOAD buffer {f[k, 0]} does not exist")
        eb, rate = _load_rate(f[:, 0], f[:, 1], cfg)
        bytes_in[loads], trans[loads], cycles[loads] = _dma_costs(f[:, 2:], eb, rate, cfg)
    if len(saves):
        f = np.array([_SAVE_FIELDS(ins[k]) for k in saves], np.int64)
        rate = np.full(len(saves), min(cfg.ddr_bytes_per_cycle,
                                       float(cfg.dataout_port_num * cfg.data_bytes)))
        bytes_out[saves], trans[saves], cycles[saves] = _dma_costs(
            f, np.full(len(saves), cfg.data_bytes), rate, cfg)
    if len(calcs):
        kind, ti, to, orows, ocols, stride, pool = np.array(
            [_CALC_FIELDS(ins[k]) for k in calcs], np.int64).T
        for k in np.flatnonzero((kind != CalcKind.FC) & (kind != CalcKind.CONV)):
            raise InputError(f"instruction {calcs[k]}: CALC kind {kind[k]} is not CONV or FC")
        fc = kind == CalcKind.FC
        nop = (ti == 0) | (to == 0)    # synchronisation only: issued in one cycle
        passes_conv = -(-ti // cfg.convolvers_per_pe) * -(-to // cfg.num_pe)
        area = ((orows - 1) * stride + cfg.kernel) * ((ocols - 1) * stride + cfg.kernel)
        lanes = cfg.kernel * cfg.kernel * cfg.convolvers_per_pe
        conv_c = passes_conv * area + pipeline_depth(cfg) + pool
        fc_c = -(-to // cfg.num_pe) * -(-ti // lanes) + pipeline_depth(cfg)
        cycles[calcs] = np.where(nop, 1, np.where(fc, fc_c, conv_c))
        macs[calcs] = np.where(fc, ti * to, ti * to * orows * ocols * cfg.kernel * cfg.kernel)
        is_fc[calcs], is_conv[calcs] = fc & ~nop, ~fc & ~nop
    return _Costs(engine, cycles, bytes_in, bytes_out, trans, macs, is_fc, is_conv)


# --- the schedule ---------------------------------------------------------------------------------

# Per engine, for each flag (pop_prev, pop_next, push_prev, push_next): the channel it pops or
# pushes, or None where the engine has no such neighbour (the flag must then be 0).
_FLAG_CHANNELS: dict[int, tuple[int | None, int | None, int | None, int | None]] = {
    _LOAD: (None, _C2L, None, _L2C),
    _CALC: (_L2C, _S2C, _C2L, _C2S),
    _SAVE: (_C2S, None, _S2C, None),
    3: (None, None, None, None),
}
_FLAG_NAMES = ("pop_prev", "pop_next", "push_prev", "push_next")


def _flag_table() -> dict[tuple[int, tuple[int, ...]], tuple[tuple[int, ...], tuple[int, ...]]]:
    """(engine, flags) → (channels popped, channels pushed), for every legal combination."""
    table = {}
    for e, chans in _FLAG_CHANNELS.items():
        for bits in range(16):
            flags = tuple((bits >> b) & 1 for b in range(4))
            if any(f and c is None for f, c in zip(flags, chans, strict=True)):
                continue
            pops = tuple(c for f, c in zip(flags[:2], chans[:2], strict=True) if f)
            pushes = tuple(c for f, c in zip(flags[2:], chans[2:], strict=True) if f)
            table[e, flags] = (pops, pushes)
    return table


def _token_flags(ins: Sequence[Instruction], engine: np.ndarray
                 ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(channels popped, channels pushed) per instruction; flags without a neighbour refused."""
    table = _flag_table()
    out = []
    for k, (i, e) in enumerate(zip(ins, engine.tolist(), strict=True)):
        hit = table.get((e, _FLAGS(i)))
        if hit is None:
            bad = next(n for n, f, c in zip(_FLAG_NAMES, _FLAGS(i), _FLAG_CHANNELS[e],
                                            strict=True) if f and c is None)
            raise InputError(f"instruction {k} ({type(i).__name__}): {bad}=1 but that engine"
                             " has no such neighbour")
        out.append(hit)
    return out


_CONSUMER = (_CALC, _LOAD, _SAVE, _CALC)   # engine that pops each channel


def _schedule(ins: Sequence[Instruction], costs: _Costs
              ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Start and end cycle of every instruction, and the tokens pushed but never popped.

    Each END closes a segment: all engines drain, then the next segment starts (the host's work
    between segments is not timed). No token crosses an END: those left are dropped (and
    reported), so a pop in the next segment needs a push in that segment."""
    n = len(ins)
    flags = _token_flags(ins, costs.engine)
    engine = costs.engine.tolist()
    dur = costs.cycles.tolist()
    start = [0] * n
    end = [0] * n
    left = dict.fromkeys(CHANNELS, 0)
    t0, first = 0, 0
    for stop in [k for k in range(n) if engine[k] == 3]:
        pushed: list[list[int]] = [[], [], [], []]   # completion cycle of each push, in order
        popped = [0, 0, 0, 0]
        queues: list[list[int]] = [[], [], []]
        for k in range(first, stop):
            queues[engine[k]].append(k)
        lens = [len(q) for q in queues]
        pos = [0, 0, 0]
        free = [t0, t0, t0]
        ddr_free = t0
        ready: list[int | None] = [None, None, None]   # head's ready cycle; None: blocked/done
        stale = [True, True, True]
        while True:
            best_s = best_r = best_e = -1
            for e in (0, 1, 2):
                if stale[e]:
                    stale[e] = False
                    r = None
                    if pos[e] < lens[e]:
                        r = free[e]
                        for ch in flags[queues[e][pos[e]]][0]:
                            j = popped[ch]
                            if j >= len(pushed[ch]):
                                r = None
                                break
                            if pushed[ch][j] > r:
                                r = pushed[ch][j]
                    ready[e] = r
                r = ready[e]
                if r is None:
                    continue
                s_e = r if e == _CALC or r >= ddr_free else ddr_free
                if best_e < 0 or (s_e, r) < (best_s, best_r):
                    best_s, best_r, best_e = s_e, r, e
            if best_e < 0:
                break
            e = best_e
            k = queues[e][pos[e]]
            pos[e] += 1
            stale[e] = True
            pops, pushes = flags[k]
            for ch in pops:
                popped[ch] += 1
            t_end = best_s + dur[k]
            start[k] = best_s
            end[k] = t_end
            free[e] = t_end
            if e != _CALC:
                ddr_free = t_end
            for ch in pushes:
                pushed[ch].append(t_end)
                stale[_CONSUMER[ch]] = True
        if pos != lens:
            raise DeadlockError(_deadlock_message(queues, pos, flags, pushed, popped))
        t0 = max(free)
        start[stop] = end[stop] = t0
        first = stop + 1
        for c in range(4):
            left[CHANNELS[c]] += len(pushed[c]) - popped[c]
    return (np.asarray(start, np.int64), np.asarray(end, np.int64),
            {ch: v for ch, v in left.items() if v})


def _deadlock_message(queues: list[list[int]], pos: list[int],
                      flags: list[tuple[tuple[int, ...], tuple[int, ...]]],
                      pushed: list[list[int]], popped: list[int]) -> str:
    parts = []
    for e in range(3):
        if pos[e] == len(queues[e]):
            continue
        k = queues[e][pos[e]]
        waits = [ch for ch in flags[k][0] if popped[ch] >= len(pushed[ch])]
        ch = waits[0]
        parts.append(f"{ENGINES[e]} instruction {k} waits for {CHANNELS[ch]} token"
                     f" #{popped[ch] + 1} but only {len(pushed[ch])} can ever be pushed"
                     f" ({len(queues[e]) - pos[e]} {ENGINES[e]} instructions left)")
    return "deadlock: " + "; ".join(parts)


# --- results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerTiming:
    index: int                 # the instructions' `layer` field
    name: str
    kind: str                  # "conv", "fc", or "other" (no CALC)
    ops: int                   # operations (2 per MAC), from the manifest when given
    start_s: float             # first instruction starts
    end_s: float               # last instruction ends
    time_s: float              # exclusive time: end − the latest end of the layers before it
    gops: float                # ops / time_s
    mult_util: float           # gops / peak: average multiplier utilisation over time_s
    calc_cycles: int           # CALC engine busy
    load_cycles: int
    save_cycles: int
    bytes_loaded: int
    bytes_saved: int
    transactions: int
    mean_burst_bytes: float
    limit: str                 # "compute" if CALC busy ≥ DMA busy, else "bandwidth"
    bound_compute_s: float     # §8.1: ops / peak
    bound_transfer_s: float    # §8.1: bytes / DDR bandwidth
    instructions: int

    @property
    def span_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def bound_s(self) -> float:
        return max(self.bound_compute_s, self.bound_transfer_s)

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d.update(span_s=self.span_s, bound_s=self.bound_s)
        return d


@dataclass(frozen=True)
class Timing:
    config: str
    clock_mhz: float
    cycles: int
    layers: tuple[LayerTiming, ...]
    engine_busy_cycles: Mapping[str, int]
    ddr_busy_cycles: int
    start_cycles: np.ndarray = field(repr=False)   # per instruction
    end_cycles: np.ndarray = field(repr=False)
    unconsumed_tokens: Mapping[str, int] = field(default_factory=dict)
    host_layers: tuple[str, ...] = ()
    ops_source: str = "instructions"   # "manifest" when operations come from the model

    @property
    def seconds(self) -> float:
        return self.cycles / (self.clock_mhz * 1e6)

    @property
    def fps(self) -> float | None:
        """Frames per second; None when nothing runs on the accelerator (a host-only model)."""
        return 1.0 / self.seconds if self.cycles else None

    @property
    def ops(self) -> int:
        return sum(lt.ops for lt in self.layers)

    @property
    def gops(self) -> float:
        """Overall: every accelerated operation over the whole frame time."""
        return self.ops / self.seconds / 1e9 if self.cycles else 0.0

    def _kind_gops(self, kind: str) -> float:
        sel = [lt for lt in self.layers if lt.kind == kind]
        t = sum(lt.time_s for lt in sel)
        return sum(lt.ops for lt in sel) / t / 1e9 if t > 0 else 0.0

    @property
    def conv_gops(self) -> float:
        """CONV layers' operations over the CONV layers' exclusive time."""
        return self._kind_gops("conv")

    @property
    def fc_gops(self) -> float:
        return self._kind_gops("fc")

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config, "clock_mhz": self.clock_mhz, "cycles": self.cycles,
            "seconds": self.seconds, "fps": self.fps, "ops": self.ops, "gops": self.gops,
            "conv_gops": self.conv_gops, "fc_gops": self.fc_gops,
            "ops_source": self.ops_source,
            "engine_busy_cycles": dict(self.engine_busy_cycles),
            "ddr_busy_cycles": self.ddr_busy_cycles,
            "unconsumed_tokens": dict(self.unconsumed_tokens),
            "host_layers": list(self.host_layers),
            "layers": [lt.to_dict() for lt in self.layers],
        }


def _manifest_layers(manifest: Mapping[str, Any] | None) -> dict[int, dict[str, Any]]:
    """index → {"name", "ops", "kind"} from the manifest's layer table (what it provides)."""
    if manifest is None:
        return {}
    table = manifest.get("layers")
    if not isinstance(table, list):
        raise InputError("manifest: key 'layers' must be a list of layer entries")
    out: dict[int, dict[str, Any]] = {}
    for k, entry in enumerate(table):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise InputError(f"manifest: layers[{k}] must be a table with a 'name'")
        idx = int(entry.get("index", k))
        ops = entry.get("ops")
        if ops is None and entry.get("macs") is not None:
            ops = 2 * int(entry["macs"])
        out[idx] = {"name": str(entry["name"]), "ops": None if ops is None else int(ops),
                    "kind": entry.get("kind")}
    return out


def _manifest_host_layers(manifest: Mapping[str, Any] | None) -> tuple[str, ...]:
    if manifest is None:
        return ()
    host = manifest.get("host_layers", ())
    return tuple(str(h if isinstance(h, str) else h.get("name", h)) for h in host)


def simulate_timing(program: Program | Sequence[Instruction], cfg: AcceleratorConfig,
                    manifest: Mapping[str, Any] | None = None) -> Timing:
    """Time `program` on `cfg`. Operations per layer come from `manifest` when given (the
    model's MACs), else from the CALC instructions (every 3×3 tap, padding included)."""
    ins = program.instructions if isinstance(program, Program) else tuple(program)
    if isinstance(program, Program) and program.config_hash != cfg.hash():
        raise InputError("program was compiled for a different accelerator configuration"
                         " (config hash mismatch)")
    if not ins or not isinstance(ins[-1], End):
        raise InputError("program does not end with END")
    costs = _program_costs(ins, cfg)
    start, end, left = _schedule(ins, costs)
    cycles = int(end.max()) if len(end) else 0
    info = _manifest_layers(manifest)
    layers = _per_layer(ins, costs, start, end, cfg, info)
    busy = {ENGINES[e]: int(costs.cycles[costs.engine == e].sum()) for e in range(3)}
    return Timing(
        config=cfg.name, clock_mhz=cfg.clock_mhz, cycles=cycles, layers=layers,
        engine_busy_cycles=busy, ddr_busy_cycles=busy["LOAD"] + busy["SAVE"],
        start_cycles=start, end_cycles=end, unconsumed_tokens=left,
        host_layers=_manifest_host_layers(manifest),
        ops_source="manifest" if info and all(v["ops"] is not None for v in info.values())
        else "instructions",
    )


def _per_layer(ins: Sequence[Instruction], c: _Costs, start: np.ndarray, end: np.ndarray,
               cfg: AcceleratorConfig, info: dict[int, dict[str, Any]]
               ) -> tuple[LayerTiming, ...]:
    on_engine = c.engine < 3
    lid = np.array([i.layer for i in ins], np.int64)[on_engine]
    if not len(lid):
        return ()
    eng, cyc = c.engine[on_engine], c.cycles[on_engine]
    st, en = start[on_engine], end[on_engine]
    ids, first = np.unique(lid, return_index=True)
    ids = ids[np.argsort(first)]          # layers in order of first appearance
    m = int(ids.max()) + 1

    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(lid, weights=w, minlength=m)

    calc = total(np.where(eng == _CALC, cyc, 0))
    load = total(np.where(eng == _LOAD, cyc, 0))
    save = total(np.where(eng == _SAVE, cyc, 0))
    b_in, b_out = total(c.bytes_in[on_engine]), total(c.bytes_out[on_engine])
    trans = total(c.transactions[on_engine])
    macs = total(c.macs[on_engine])
    n_fc, n_conv = total(c.is_fc[on_engine]), total(c.is_conv[on_engine])
    count = np.bincount(lid, minlength=m)
    lstart = np.full(m, np.iinfo(np.int64).max)
    np.minimum.at(lstart, lid, st)
    lend = np.zeros(m, np.int64)
    np.maximum.at(lend, lid, en)
    hz = cfg.clock_mhz * 1e6
    out, latest = [], 0
    for i in ids:
        i = int(i)
        meta = info.get(i, {})
        kind = meta.get("kind") or ("fc" if n_fc[i] and not n_conv[i]
                                    else "conv" if n_conv[i] else "other")
        ops = meta.get("ops")
        ops = int(2 * macs[i]) if ops is None else ops
        excl = max(0, int(lend[i]) - latest) / hz
        latest = max(latest, int(lend[i]))
        moved = int(b_in[i] + b_out[i])
        bound = layer_bound(ops, moved, cfg)
        gops = ops / excl / 1e9 if excl > 0 else 0.0
        out.append(LayerTiming(
            index=i, name=meta.get("name", f"layer{i}"), kind=str(kind), ops=ops,
            start_s=int(lstart[i]) / hz, end_s=int(lend[i]) / hz, time_s=excl, gops=gops,
            mult_util=gops / cfg.peak_gops, calc_cycles=int(calc[i]), load_cycles=int(load[i]),
            save_cycles=int(save[i]), bytes_loaded=int(b_in[i]), bytes_saved=int(b_out[i]),
            transactions=int(trans[i]),
            mean_burst_bytes=float(moved / trans[i]) if trans[i] else 0.0,
            limit="compute" if calc[i] >= load[i] + save[i] else "bandwidth",
            bound_compute_s=bound.compute_s, bound_transfer_s=bound.transfer_s,
            instructions=int(count[i]),
        ))
    return tuple(out)


# --- one stage, for the tiler --------------------------------------------------------------------

def stage_timing(stage: Stage, tiling: Tiling, cfg: AcceleratorConfig) -> Timing:
    """Generate the instructions of one stage under `tiling` (the compiler's own code generator)
    and time them on their own: empty buffers at the start, the last SAVE at the end."""
    from deepfpga.compiler import layout
    from deepfpga.compiler.builder import Builder
    from deepfpga.compiler.codegen import Placement, emit_conv, emit_fc
    from deepfpga.compiler.tiling import check_tiling

    bad = check_tiling(stage, tiling, cfg)
    if bad:
        raise InputError(f"tiling {tiling} for layer {stage.name!r} is infeasible: "
                         + "; ".join(bad))
    sizes = (math.prod(stage.in_shape) * cfg.data_bytes,
             math.prod(stage.out_shape) * cfg.data_bytes,
             layout.weight_region_bytes(stage, cfg.weight_bytes))
    bases = [0]
    for size in sizes:
        bases.append(layout.align(bases[-1] + size))
    pl = Placement("in", bases[0], "out", bases[1], "w", bases[2], "b", bases[3])
    bld = Builder()
    bld.layer = stage.index
    (emit_conv if stage.kind == "conv" else emit_fc)(bld, stage, tiling, cfg, pl)
    bld.end(layer=stage.index)
    manifest = {"layers": [{"index": stage.index, "name": stage.name, "kind": stage.kind,
                            "ops": 2 * stage.macs}]}
    return simulate_timing(bld.instructions(), cfg, manifest)


def estimate_stage(stage: Stage, tiling: Tiling, cfg: AcceleratorConfig) -> float:
    """Simulated time of `stage` under `tiling`, in seconds: the same interface as
    `deepfpga.compiler.cost.estimate`, from the timing simulator instead of the closed form."""
    return stage_timing(stage, tiling, cfg).seconds
