"""Cycle-level timing model of the accelerator running a program (docs/timing.md).

Three engines (LOAD, CALC, SAVE) each execute their own instructions in program order, start an
instruction as soon as its dependency tokens are available, and push their tokens when it
completes. LOAD and SAVE share one DDR port: their transfers never overlap (first come, first
served, whole instructions). Instruction durations are the accelerator's rules in
deepfpga.hw.arch (DMA runs and transaction cycles at each port's rate; CALC cycles of the PE
passes plus the pipeline depth), computed for the whole program at once with numpy; this module
only schedules.

Each END closes a segment (the host runs between segments, untimed); a CALC with ti = 0 or
to = 0 is a one-cycle synchronisation no-op. The scheduler is an event loop with O(1) work per
instruction. `simulate_timing(compiled)` times a compiled model; `time_instructions` a bare
instruction stream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.hw import arch, engines
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.isa import Buffer, CalcKind, End, Instruction, Program
from deepfpga.sim.roofline import layer_bound

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled
    from deepfpga.compiler.mapping import Stage
    from deepfpga.compiler.tiling import Tiling

_LOAD, _CALC, _SAVE = arch.LOAD, arch.CALC, arch.SAVE
ENGINES, CHANNELS = arch.ENGINES, arch.CHANNELS


class DeadlockError(InputError):
    """The program can never finish: some engine waits for a token that is never pushed."""


# --- vectorised costs of a whole program (the rules are deepfpga.hw.arch's) ----------------------

_LOAD_FIELDS = attrgetter("buffer", "fc_weights", "packed4", "ddr_addr", "length", "n1",
                          "stride1", "n2", "stride2")
_SAVE_FIELDS = attrgetter("ddr_addr", "length", "n1", "stride1", "n2", "stride2")
# the fields of a Calc that the CALC cycle rules take, in their order
CALC_FIELDS = attrgetter("kind", "ti", "to", "out_rows", "out_cols", "stride", "pool",
                          "accumulate", "finalize")
_FLAGS = attrgetter(*arch.FLAGS)
_ENGINE_OF = {**arch.ENGINE_OF, End: 3}


@dataclass(frozen=True)
class _Costs:
    engine: np.ndarray        # 0 LOAD, 1 CALC, 2 SAVE, 3 END
    cycles: np.ndarray        # CALC: engine cycles; LOAD/SAVE: cycles of their DDR channel
    bytes_in: np.ndarray      # DDR → buffers
    bytes_out: np.ndarray     # buffers → DDR
    transactions: np.ndarray  # AXI bursts
    macs: np.ndarray          # multiply-accumulates the CALC performs (all 9 taps)
    is_fc: np.ndarray
    is_conv: np.ndarray
    issue: tuple[int, int, int]   # per engine: cycles from its tokens to its DDR channel
    tail: tuple[int, int, int]    # per engine: cycles from its channel's last beat to its end
    start: int                    # cycles from a segment's start to the first dispatch


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
        buffer, fc, packed = f[:, 0], f[:, 1], f[:, 2]
        for k in np.flatnonzero((packed == 1) & ~arch.packed_load_allowed(cfg, buffer, fc)):
            raise InputError(f"instruction {loads[k]}: packed4 LOAD into buffer {buffer[k]}"
                             f" with fc_weights={fc[k]} is not allowed on {cfg.name}")
        addr, length, n1, s1, n2, s2 = f[:, 3:].T
        seg = arch.load_segment_bytes(cfg, buffer, fc, packed, length)
        bytes_in[loads], trans[loads], beats = arch.dma_bursts(cfg, addr, seg, n1, s1, n2, s2)
        cycles[loads] = arch.load_dma_cycles(cfg, trans[loads], beats, length * n1 * n2,
                                             arch.load_split_segments(length, n1, n2, packed))
        # the instruction fetch shares the read channel, running ahead of the LOADs by its
        # FIFO and the dispatch queues, and starts again at each segment's first word: each
        # LOAD carries the words fetched since the previous one of its segment
        ends = np.flatnonzero(engine == _ENGINE_OF[End])
        seg = np.searchsorted(ends, loads)                 # the END closing each LOAD's segment
        first = np.append(0, ends + 1)[seg]
        stop = np.append(ends, n - 1)[seg]
        words = np.minimum(loads + 1 + engines.FETCH_AHEAD_WORDS, stop + 1) - first
        fetched = engines.fetch_share_cycles(cfg, words)
        carried = np.diff(fetched, prepend=0)
        opens = np.diff(seg, prepend=-1) != 0             # the first LOAD of its segment
        carried[opens] = fetched[opens]
        cycles[loads] += carried
    if len(saves):
        addr, length, n1, s1, n2, s2 = np.array([_SAVE_FIELDS(ins[k]) for k in saves],
                                                np.int64).T
        bytes_out[saves], trans[saves], beats = arch.dma_bursts(
            cfg, addr, length * arch.save_element_bytes(cfg), n1, s1, n2, s2)
        cycles[saves] = arch.save_dma_cycles(cfg, trans[saves], beats, length * n1 * n2)
    if len(calcs):
        kind, ti, to, orows, ocols, stride, pool, acc, fin = np.array(
            [CALC_FIELDS(ins[k]) for k in calcs], np.int64).T
        for k in np.flatnonzero(arch.calc_taps(kind) == 0):
            raise InputError(f"instruction {calcs[k]}: CALC kind {kind[k]} is not CONV, FC or"
                             " CONV1")
        fc = kind == CalcKind.FC
        nop = (ti == 0) | (to == 0)    # synchronisation only
        cycles[calcs] = arch.calc_cycles(cfg, kind, ti, to, orows, ocols, stride, pool, acc,
                                         fin)
        macs[calcs] = arch.calc_macs(cfg, kind, ti, to, orows, ocols)
        is_fc[calcs], is_conv[calcs] = fc & ~nop, ~fc & ~nop
    return _Costs(engine, cycles, bytes_in, bytes_out, trans, macs, is_fc, is_conv,
                  (engines.LOAD_ISSUE_CYCLES, 0, engines.SAVE_ISSUE_CYCLES),
                  (engines.LOAD_TAIL_CYCLES, 0, engines.SAVE_TAIL_CYCLES),
                  engines.start_cycles(cfg))


# --- the schedule ---------------------------------------------------------------------------------

# Per engine, for each flag (pop_prev, pop_next, push_prev, push_next): the channel it pops or
# pushes, or None where the engine has no such neighbour (the flag must then be 0).
_FLAG_CHANNELS: dict[int, tuple[int | None, ...]] = {
    e: tuple(arch.flag_channels(e).get(f, (None, False))[0] for f in arch.FLAGS)
    for e in (_LOAD, _CALC, _SAVE)
} | {3: (None, None, None, None)}
_FLAG_NAMES = arch.FLAGS


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


_CONSUMER = arch.CONSUMER   # engine that pops each channel


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
        free = [t0 + costs.start] * 3                  # an engine may take its next tokens
        chan = [t0, t0, t0]                            # LOAD: DDR read, SAVE: DDR write channel
        last_end = t0
        ready: list[int | None] = [None, None, None]   # head's ready cycle; None: blocked/done
        stale = [True, True, True]
        while True:
            best_r = best_e = -1
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
                if r is not None and (best_e < 0 or r < best_r):
                    best_r, best_e = r, e
            if best_e < 0:
                break
            e = best_e
            k = queues[e][pos[e]]
            pos[e] += 1
            stale[e] = True
            pops, pushes = flags[k]
            for ch in pops:
                popped[ch] += 1
            if e == _CALC:
                t_end = free[e] = best_r + dur[k]
            else:
                # its bursts queue behind the previous ones on its channel; the engine takes
                # the next instruction's tokens once this one's bursts have started
                c = max(best_r + costs.issue[e], chan[e])
                chan[e] = c + dur[k]
                t_end = chan[e] + costs.tail[e]
                free[e] = c
            start[k] = best_r
            end[k] = t_end
            last_end = max(last_end, t_end)
            for ch in pushes:
                pushed[ch].append(t_end)
                stale[_CONSUMER[ch]] = True
        if pos != lens:
            raise DeadlockError(_deadlock_message(queues, pos, flags, pushed, popped))
        t0 = last_end
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


@dataclass(frozen=True)
class LayerInfo:
    """What the compiler knows of a layer index that the instructions do not say."""

    name: str
    kind: str | None = None        # "conv" | "fc"
    ops: int | None = None         # the model's operations (2 per MAC)


def simulate_timing(compiled: Compiled) -> Timing:
    """Time a compiled program on its config; operations per layer come from the manifest."""
    m = compiled.manifest
    info = {s.index: LayerInfo(s.name, s.kind, s.ops) for s in m.layers}
    return time_instructions(compiled.program.instructions, compiled.config, info,
                             tuple(h.layer for h in m.host_steps))


def time_instructions(program: Program | Sequence[Instruction], cfg: AcceleratorConfig,
                      layers: Mapping[int, LayerInfo] | None = None,
                      host_layers: Sequence[str] = ()) -> Timing:
    """Time an instruction stream on `cfg` (a hand-made or single-stage program; a compiled
    model goes through `simulate_timing`). Operations per layer come from `layers` when given,
    else from the CALC instructions (every 3×3 tap, padding included)."""
    ins = program.instructions if isinstance(program, Program) else tuple(program)
    if isinstance(program, Program) and program.config_hash != cfg.hash():
        raise InputError("program was compiled for a different accelerator configuration"
                         " (config hash mismatch)")
    if not ins or not isinstance(ins[-1], End):
        raise InputError("program does not end with END")
    costs = _program_costs(ins, cfg)
    start, end, left = _schedule(ins, costs)
    cycles = int(end.max()) if len(end) else 0
    info = dict(layers or {})
    per_layer = _per_layer(ins, costs, start, end, cfg, info)
    busy = {ENGINES[e]: int(costs.cycles[costs.engine == e].sum()) for e in range(3)}
    return Timing(
        config=cfg.name, clock_mhz=cfg.clock_mhz, cycles=cycles, layers=per_layer,
        engine_busy_cycles=busy, ddr_busy_cycles=busy["LOAD"] + busy["SAVE"],
        start_cycles=start, end_cycles=end, unconsumed_tokens=left,
        host_layers=tuple(host_layers),
        ops_source="manifest" if info and all(v.ops is not None for v in info.values())
        else "instructions",
    )


def _per_layer(ins: Sequence[Instruction], c: _Costs, start: np.ndarray, end: np.ndarray,
               cfg: AcceleratorConfig, info: Mapping[int, LayerInfo]
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
        meta = info.get(i)
        kind = (meta and meta.kind) or ("fc" if n_fc[i] and not n_conv[i]
                                        else "conv" if n_conv[i] else "other")
        ops = meta.ops if meta is not None else None
        ops = int(2 * macs[i]) if ops is None else ops
        excl = max(0, int(lend[i]) - latest) / hz
        latest = max(latest, int(lend[i]))
        moved = int(b_in[i] + b_out[i])
        bound = layer_bound(ops, moved, cfg)
        gops = ops / excl / 1e9 if excl > 0 else 0.0
        out.append(LayerTiming(
            index=i, name=meta.name if meta else f"layer{i}", kind=str(kind), ops=ops,
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
             layout.weight_region_bytes(stage, tiling, layout.WeightStore.of(stage, cfg)))
    bases = [0]
    for size in sizes:
        bases.append(layout.align(bases[-1] + size))
    pl = Placement("in", bases[0], "out", bases[1], "w", bases[2], "b", bases[3])
    bld = Builder()
    bld.layer = stage.index
    (emit_conv if stage.kind == "conv" else emit_fc)(bld, stage, tiling, cfg, pl)
    bld.end(layer=stage.index)
    return time_instructions(bld.instructions(), cfg,
                             {stage.index: LayerInfo(stage.name, stage.kind, 2 * stage.macs)})


def estimate_stage(stage: Stage, tiling: Tiling, cfg: AcceleratorConfig) -> float:
    """Simulated time of `stage` under `tiling`, in seconds: the same interface as
    `deepfpga.compiler.cost.estimate`, from the timing simulator instead of the closed form."""
    return stage_timing(stage, tiling, cfg).seconds
