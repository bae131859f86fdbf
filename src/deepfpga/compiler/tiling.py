"""Tiling: how a stage is cut into tiles that fit the on-chip buffers, and the choice of the best.

CONV tiles are `tr × tc` accumulator pixels (before pooling) × `ti` input channels × `to`
output channels; FC blocks are `to × ti`. Every buffer is double buffered:

- INPUT: two banks of half the buffer (CONV input tiles); FC weight blocks use two banks of half
  the FC area (the first `fc_buffer_bytes` of the input buffer);
- WEIGHT: two banks of half the buffer (3×3 kernels of a (to, ti) block; the FC input vector);
- BIAS: two banks of half the buffer;
- OUTPUT: the accumulators of one tile at its start, then two staging banks that receive the
  finalized (pooled) data of a SAVE group while the other bank drains to DDR.

Loop orders — CONV: `spatial` (spatial tiles outermost, then output groups, then input groups)
or `weights` (output groups outermost, then spatial tiles, then input groups); FC: `out` (output
groups outermost) or `in` (input groups outermost; all accumulators stay on chip). A SAVE group
is `group` consecutive row tiles saved together (full-width tiles only; their rows are contiguous
per channel in DDR, so bursts are long); group 0 saves every tile on its own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from deepfpga.compiler import cost as costmod
from deepfpga.compiler.mapping import Stage
from deepfpga.errors import InputError
from deepfpga.hw import arch
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.arch import CALC_DIM_MAX, DMA_COUNT_MAX, OUT_PITCH_MAX, OUTPUT_ENTRIES_MAX


@dataclass(frozen=True)
class Tiling:
    tr: int
    tc: int
    ti: int
    to: int
    order: str
    group: int = 0

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, int | str]) -> Tiling:
        try:
            return Tiling(int(d["tr"]), int(d["tc"]), int(d["ti"]), int(d["to"]),
                          str(d["order"]), int(d.get("group", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"bad tiling {d!r}: {e}") from None


@dataclass(frozen=True)
class Banks:
    """Entries of one bank of each buffer, for a config."""

    inp: int
    fc: int
    weight: int
    bias: int
    out: int        # the whole output buffer (accumulators + 2 staging banks)

    @staticmethod
    def of(cfg: AcceleratorConfig) -> Banks:
        return Banks(cfg.input_buffer_entries // 2,
                     min(cfg.fc_buffer_entries, cfg.input_buffer_entries) // 2,
                     cfg.weight_buffer_entries // 2, cfg.bias_buffer_entries // 2,
                     cfg.output_buffer_entries)


@dataclass(frozen=True)
class Choice:
    stage: str
    tiling: Tiling
    costs: dict[str, float]
    considered: int
    feasible: int
    top: tuple[tuple[Tiling, dict[str, float]], ...]
    forced: bool = False

    @property
    def reason(self) -> str:
        c = self.costs
        bound = "compute-bound" if c["compute_cycles"] >= c["dma_cycles"] else "bandwidth-bound"
        if self.forced:
            return f"forced tiling; {bound}"
        return (f"lowest modelled time of {self.feasible} feasible of {self.considered}"
                f" candidates; {bound} (compute {c['compute_cycles']:,} vs DMA"
                f" {c['dma_cycles']:,} cycles)")


# --- geometry shared with the code generator ---------------------------------------------------

def pooled(n: int, pool: bool) -> int:
    return n // 2 if pool else n


def staging_entries(stage: Stage, t: Tiling) -> int:
    """Entries of one staging bank of the output buffer."""
    if stage.kind == "fc":
        return max(t.group, 1) * t.to
    trp, tcp = pooled(t.tr, stage.pool), pooled(t.tc, stage.pool)
    if t.group == 0:
        return t.to * trp * tcp
    chans = stage.out_channels if t.order == "spatial" else t.to
    return chans * t.group * trp * stage.out_shape[2]


def acc_entries(stage: Stage, t: Tiling) -> int:
    if stage.kind == "fc":
        return stage.out_channels if t.order == "in" else t.to
    return t.to * t.tr * t.tc


def in_extent(stage: Stage, t: Tiling) -> tuple[int, int]:
    """Largest input tile (rows, cols) of a CONV tiling."""
    _, h, w = stage.in_shape
    kh, kw = stage.kernel
    s = stage.stride
    return min(h, (t.tr - 1) * s + kh), min(w, (t.tc - 1) * s + kw)


def check_tiling(stage: Stage, t: Tiling, cfg: AcceleratorConfig) -> list[str]:
    """Every constraint `t` violates on `cfg` (empty: feasible)."""
    bad: list[str] = []
    b = Banks.of(cfg)
    if min(t.ti, t.to, t.tr, t.tc) < 1 or t.group < 0:
        return ["tile sizes must be ≥ 1 and group ≥ 0"]
    if t.ti > CALC_DIM_MAX or t.to > CALC_DIM_MAX:
        bad.append(f"ti/to > {CALC_DIM_MAX} (the CALC ti/to fields)")
    if t.ti > stage.in_channels or t.to > stage.out_channels:
        bad.append("ti/to larger than the layer's channels")
    if stage.kind == "fc":
        if t.order not in costmod.ORDERS_FC:
            bad.append(f"FC order must be one of {costmod.ORDERS_FC}")
        if t.tr != 1 or t.tc != 1:
            bad.append("FC tiles have tr = tc = 1")
        if t.to * t.ti > b.fc:
            bad.append(f"FC block {t.to}×{t.ti} > {b.fc} entries of an FC bank")
        if t.ti > b.weight:
            bad.append(f"FC vector part {t.ti} > {b.weight} entries of a weight bank")
        if max(t.group, 1) * t.to > DMA_COUNT_MAX:
            bad.append(f"SAVE group longer than the SAVE length field ({DMA_COUNT_MAX})")
    else:
        if t.order not in costmod.ORDERS_CONV:
            bad.append(f"CONV order must be one of {costmod.ORDERS_CONV}")
        ho, wo = stage.conv_out
        if t.tr > ho or t.tc > wo:
            bad.append("tile larger than the output map")
        if stage.pool and ((t.tr % 2 and t.tr < ho) or (t.tc % 2 and t.tc < wo)):
            bad.append("pooled tiles must have even tr and tc (except a single tile)")
        rows, cols = in_extent(stage, t)
        if cols > cfg.max_row_width:
            bad.append(f"input tile row of {cols} > max_row_width {cfg.max_row_width}")
        if max(rows, cols, t.tr, t.tc) > CALC_DIM_MAX:
            bad.append(f"tile rows/cols > {CALC_DIM_MAX}")
        if t.ti * rows * cols > b.inp:
            bad.append(f"input tile {t.ti}×{rows}×{cols} > {b.inp} entries of an input bank")
        if t.to * t.ti * stage.taps * stage.nsub > b.weight:
            bad.append(f"weights {stage.nsub}×{t.to}×{t.ti}×{stage.taps} > {b.weight} entries"
                       " of a weight bank")
        full_w = t.tc >= wo
        if t.group > 0 and not full_w:
            bad.append("SAVE groups need full-width tiles")
        if t.group > 0 and t.group * pooled(t.tr, stage.pool) * stage.out_shape[2] \
                > OUT_PITCH_MAX:
            bad.append(f"SAVE group pitch beyond the out_pitch field ({OUT_PITCH_MAX})")
    if stage.has_bias and stage.out_channels > b.bias and t.to > b.bias:
        bad.append(f"bias group {t.to} > {b.bias} entries of a bias bank")
    need = acc_entries(stage, t) + 2 * staging_entries(stage, t)
    if need > b.out:
        bad.append(f"accumulators + 2 staging banks = {need} > {b.out} output-buffer entries")
    if need > OUTPUT_ENTRIES_MAX:
        bad.append(f"output-buffer addresses beyond the {OUTPUT_ENTRIES_MAX} entries the"
                   " address fields reach")
    return bad


# --- candidates -------------------------------------------------------------------------------

def _splits(total: int, unit: int, limit: int) -> list[int]:
    """Distinct tile sizes ⌈total/n⌉ rounded up to a multiple of `unit` (capped at total)."""
    out = set()
    n = 1
    while n <= total:
        size = math.ceil(total / n)
        r = min(total, -(-size // unit) * unit)
        if r <= limit:
            out.add(r)
        # jump to the next n that changes ⌈total/n⌉
        n = max(n + 1, math.ceil(total / max(size - 1, 1)) if size > 1 else total + 1)
    return sorted(out)


def _even_down(v: np.ndarray, full: int, pool: bool) -> np.ndarray:
    if not pool:
        return v
    return np.where(v >= full, full, np.maximum(v - v % 2, 2))


def _conv_candidates(stage: Stage, cfg: AcceleratorConfig) -> dict[str, np.ndarray]:
    b = Banks.of(cfg)
    _, h, w = stage.in_shape
    ho, wo = stage.conv_out
    kh, kw = stage.kernel
    s = stage.stride
    pool = stage.pool
    tis = _splits(stage.in_channels, cfg.convolvers_per_pe, CALC_DIM_MAX)
    tos = _splits(stage.out_channels, cfg.num_pe, CALC_DIM_MAX)
    tcs = [c for c in _splits(wo, 2 if pool else 1, CALC_DIM_MAX)
           if min(w, (c - 1) * s + kw) <= cfg.max_row_width]
    if pool and wo % 2 and wo not in tcs and min(w, (wo - 1) * s + kw) <= cfg.max_row_width:
        tcs.append(wo)
    tcs = sorted(set(tcs))[-4:] or [1]
    ti, to, tc, order = (a.reshape(-1) for a in np.meshgrid(tis, tos, tcs, [0, 1],
                                                                indexing="ij"))
    cols = np.minimum(w, (tc - 1) * s + kw)
    # largest tr the input bank allows
    r_cap = b.inp // np.maximum(ti * cols, 1)
    tr_in = np.where(r_cap >= h, ho, (r_cap - kh) // s + 1)
    # largest tr the output buffer allows with per-tile staging
    tcp = tc // 2 if pool else tc
    per_row = to * tc + 2 * to * tcp / (2 if pool else 1)
    tr_out = np.floor(b.out / per_row).astype(np.int64)
    tr_max = np.minimum(np.minimum(tr_in, tr_out), min(ho, CALC_DIM_MAX))
    tr_max = _even_down(tr_max, ho, pool)
    rows = []
    for div in (1, 2, 4):
        t = np.maximum(tr_max // div, 1)
        n = -(-ho // t)
        bal = -(-ho // n)
        if pool:
            bal = np.where(bal >= ho, ho, bal + bal % 2)
        bal = np.where(bal <= tr_max, bal, t)
        rows.append(_even_down(bal, ho, pool))
    tr = np.concatenate(rows)
    ti, to, tc, order = (np.tile(a, 3) for a in (ti, to, tc, order))
    # SAVE groups: none, or as many row tiles as a staging bank holds
    trp = tr // 2 if pool else tr
    wp = stage.out_shape[2]
    chans = np.where(order == 0, stage.out_channels, to)
    avail = (b.out - to * tr * tc) // 2
    gmax = avail // np.maximum(chans * trp * wp, 1)
    gmax = np.minimum(gmax, -(-ho // tr))
    gmax = np.minimum(gmax, OUT_PITCH_MAX // np.maximum(trp * wp, 1))
    gmax = np.where((tc >= wo) & (trp > 0), gmax, 0)
    group = np.concatenate([np.zeros_like(tr), np.maximum(gmax, 0)])
    arrs = {"tr": np.tile(tr, 2), "tc": np.tile(tc, 2), "ti": np.tile(ti, 2),
            "to": np.tile(to, 2), "order": np.tile(order, 2), "group": group}
    ok = _conv_feasible(stage, cfg, arrs)
    return {k: v[ok] for k, v in arrs.items()} | {"_considered": np.array(len(ok))}


def _conv_feasible(stage: Stage, cfg: AcceleratorConfig, a: dict[str, np.ndarray]) -> np.ndarray:
    b = Banks.of(cfg)
    _, h, w = stage.in_shape
    ho, wo = stage.conv_out
    kh, kw = stage.kernel
    s = stage.stride
    tr, tc, ti, to, order, group = (a[k] for k in ("tr", "tc", "ti", "to", "order", "group"))
    rows = np.minimum(h, (tr - 1) * s + kh)
    cols = np.minimum(w, (tc - 1) * s + kw)
    pool = stage.pool
    trp, tcp = (tr // 2, tc // 2) if pool else (tr, tc)
    wp = stage.out_shape[2]
    chans = np.where(order == 0, stage.out_channels, to)
    stage_e = np.where(group == 0, to * trp * tcp, chans * group * trp * wp)
    ok = (tr >= 1) & (tr <= ho) & (tc >= 1) & (tc <= wo)
    ok &= (ti * rows * cols <= b.inp) & (cols <= cfg.max_row_width)
    ok &= to * ti * stage.taps * stage.nsub <= b.weight
    ok &= to * tr * tc + 2 * stage_e <= min(b.out, OUTPUT_ENTRIES_MAX)
    ok &= (group == 0) | ((tc >= wo) & (group * trp * wp <= OUT_PITCH_MAX))
    ok &= (np.maximum(rows, cols) <= CALC_DIM_MAX) & (tr <= CALC_DIM_MAX) & (tc <= CALC_DIM_MAX)
    if pool:
        ok &= ((tr % 2 == 0) | (tr >= ho)) & ((tc % 2 == 0) | (tc >= wo))
    if stage.has_bias and stage.out_channels > b.bias:
        ok &= to <= b.bias
    return ok


def _fc_candidates(stage: Stage, cfg: AcceleratorConfig) -> dict[str, np.ndarray]:
    b = Banks.of(cfg)
    (f,) = stage.in_shape
    n = stage.out_channels
    tis = _splits(f, arch.fc_lanes(cfg), min(CALC_DIM_MAX, b.weight))
    tis = sorted(set(tis) | set(_splits(f, 1, min(CALC_DIM_MAX, b.weight))[-3:]))
    tos = _splits(n, cfg.num_pe, CALC_DIM_MAX)
    ti, to, order = (a.reshape(-1) for a in np.meshgrid(tis, tos, [0, 1], indexing="ij"))
    acc = np.where(order == 1, n, to)
    gmax = (b.out - acc) // 2 // np.maximum(to, 1)
    gmax = np.minimum(np.minimum(gmax, -(-n // to)), DMA_COUNT_MAX // to)
    group = np.maximum(gmax, 1)
    ok = (to * ti <= b.fc) & (ti <= b.weight) \
        & (acc + 2 * group * to <= min(b.out, OUTPUT_ENTRIES_MAX))
    if stage.has_bias and n > b.bias:
        ok &= to <= b.bias
    arrs = {"tr": np.ones_like(ti), "tc": np.ones_like(ti), "ti": ti, "to": to, "order": order,
            "group": group}
    return {k: v[ok] for k, v in arrs.items()} | {"_considered": np.array(len(ok))}


def _tiling_at(stage: Stage, a: dict[str, np.ndarray], k: int) -> Tiling:
    orders = costmod.ORDERS_CONV if stage.kind == "conv" else costmod.ORDERS_FC
    return Tiling(int(a["tr"][k]), int(a["tc"][k]), int(a["ti"][k]), int(a["to"][k]),
                  orders[int(a["order"][k])], int(a["group"][k]))


def minimum_requirement(stage: Stage, cfg: AcceleratorConfig) -> str:
    """Why no tiling fits: the smallest tile's needs against each buffer."""
    b = Banks.of(cfg)
    if stage.kind == "fc":
        t = Tiling(1, 1, 1, 1, "out", 1)
        needs = [("FC area of the input buffer", 2 * t.to * t.ti, 2 * b.fc, cfg.weight_bytes)]
    else:
        ho, wo = stage.conv_out
        m = 2 if stage.pool else 1
        t = Tiling(min(ho, m), min(wo, m), 1, 1, "spatial", 0)
        rows, cols = in_extent(stage, t)
        if cols > cfg.max_row_width:
            return (f"layer {stage.name!r} needs input rows of at least {cols} values;"
                    f" max_row_width of {cfg.name} is {cfg.max_row_width}")
        needs = [("input buffer", 2 * rows * cols, 2 * b.inp, cfg.data_bytes),
                 ("weight buffer", 2 * stage.taps * stage.nsub, 2 * b.weight, cfg.weight_bytes)]
    need_out = acc_entries(stage, t) + 2 * staging_entries(stage, t)
    needs.append(("output buffer", need_out, b.out, cfg.acc_bytes))
    short = [f"at least {n * eb:,} bytes of {what} (has {have * eb:,})"
             for what, n, have, eb in needs if n > have]
    detail = "; ".join(short) if short else "a combination of buffer limits"
    return f"layer {stage.name!r} does not fit {cfg.name}: it needs {detail}"


def choose(stage: Stage, cfg: AcceleratorConfig, force: Tiling | None = None,
           keep: int = 8) -> Choice:
    """The feasible tiling of least modelled time (or `force`, checked)."""
    if force is not None:
        bad = check_tiling(stage, force, cfg)
        if bad:
            raise InputError(f"forced tiling {force} for layer {stage.name!r} is infeasible: "
                             + "; ".join(bad))
        c = costs(stage, force, cfg)
        return Choice(stage.name, force, c, 1, 1, ((force, c),), forced=True)
    a = _conv_candidates(stage, cfg) if stage.kind == "conv" else _fc_candidates(stage, cfg)
    considered = int(a.pop("_considered"))
    if not len(a["ti"]):
        raise InputError(minimum_requirement(stage, cfg))
    if stage.kind == "conv":
        d = costmod.conv_costs(stage, cfg, a["tr"], a["tc"], a["ti"], a["to"], a["order"],
                               a["group"])
    else:
        d = costmod.fc_costs(stage, cfg, a["ti"], a["to"], a["order"], a["group"])
    # Within 0.5% of the fastest the model cannot tell candidates apart: prefer fewer DMA
    # transactions (robust to burst overheads the model averages away), then fewer CALCs
    # (shorter programs).
    cyc = d["cycles"]
    near = cyc <= cyc.min() * 1.005
    key = np.lexsort((cyc, d["calcs"], d["transactions"], ~near))
    hz = cfg.clock_mhz * 1e6
    top = []
    seen = set()
    for k in key[:4 * keep]:
        t = _tiling_at(stage, a, int(k))
        if t in seen:
            continue
        seen.add(t)
        c = {name: int(v[k]) for name, v in d.items()}
        c["seconds"] = c["cycles"] / hz
        top.append((t, c))
        if len(top) >= keep:
            break
    best, best_cost = top[0]
    bad = check_tiling(stage, best, cfg)
    if bad:  # the vectorised filter and the checker must agree
        raise AssertionError(f"tiler chose an infeasible tiling {best}: {bad}")
    return Choice(stage.name, best, best_cost, considered, len(key), tuple(top))


def costs(stage: Stage, tiling: Tiling, cfg: AcceleratorConfig) -> dict[str, float]:
    """The cost breakdown of one tiling (cycles, bytes, transactions, seconds)."""
    if stage.kind == "conv":
        d = costmod.conv_costs(stage, cfg, tiling.tr, tiling.tc, tiling.ti, tiling.to,
                               costmod.ORDERS_CONV.index(tiling.order), tiling.group)
    else:
        d = costmod.fc_costs(stage, cfg, tiling.ti, tiling.to,
                             costmod.ORDERS_FC.index(tiling.order), tiling.group)
    out = {k: int(np.asarray(v).reshape(-1)[0]) for k, v in d.items()}
    out["seconds"] = out["cycles"] / (cfg.clock_mhz * 1e6)
    return out


def estimate(stage: Stage, tiling: Tiling, cfg: AcceleratorConfig) -> float:
    """Modelled time of `stage` under `tiling`, in seconds (the closed-form cost model;
    deepfpga.sim.timing.estimate_stage is the same interface from the timing simulator)."""
    return costs(stage, tiling, cfg)["seconds"]
