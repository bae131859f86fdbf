"""Code generation: the instructions of one stage under its tiling.

The loop nest is the one deepfpga.compiler.cost models: tiles are loaded into the least recently
used of two banks unless already resident (so a tile pattern of period ≤ 2 is loaded once), every
CALC of a tile accumulates into the accumulator area, the last one finalizes into a staging bank
(with a channel pitch when a SAVE group interleaves several tiles), and a SAVE writes each group.
Dependencies come from deepfpga.compiler.builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfpga.compiler.builder import Builder
from deepfpga.compiler.layout import WeightStore, block_offsets, splits
from deepfpga.compiler.mapping import Stage
from deepfpga.compiler.tiling import Banks, Tiling, acc_entries, staging_entries
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.arch import DMA_COUNT_MAX, KERNEL
from deepfpga.hw.isa import Buffer, CalcKind


@dataclass(frozen=True)
class Placement:
    """Where a stage's operands live in DDR."""

    in_region: str
    in_base: int
    out_region: str
    out_base: int
    w_region: str
    w_base: int
    b_region: str
    b_base: int


class _LRU2:
    """Two banks; a key hits if resident, else it goes to the least recently used bank."""

    def __init__(self) -> None:
        self.keys: list[Any] = [None, None]
        self.used = [-1, -1]
        self.clock = 0

    def get(self, key: Any) -> tuple[int, bool]:
        self.clock += 1
        for b in (0, 1):
            if self.keys[b] == key:
                self.used[b] = self.clock
                return b, True
        b = 0 if self.used[0] <= self.used[1] else 1
        self.keys[b] = key
        self.used[b] = self.clock
        return b, False


def _segments(n_ch: int, run: int, ch_stride: int, row: int, eb: int) -> dict[str, int]:
    """DMA fields for n_ch channels of `run` contiguous elements each, `ch_stride` bytes apart;
    runs longer than the length field are cut into rows of `row` elements (still contiguous)."""
    if run <= DMA_COUNT_MAX:
        return {"length": run, "n1": n_ch, "stride1": ch_stride, "n2": 1, "stride2": 0}
    return {"length": row, "n1": run // row, "stride1": row * eb, "n2": n_ch,
            "stride2": ch_stride}


def _bias(bld: Builder, lru: _LRU2, st: Stage, t: Tiling, cfg: AcceleratorConfig,
          pl: Placement, og: int, o0: int, on: int) -> int:
    """Make the bias of output group `og` resident; returns its BIAS-buffer address."""
    bank_n = Banks.of(cfg).bias
    whole = st.out_channels <= bank_n
    key = ("all",) if whole else (og,)
    bank, hit = lru.get(key)
    base = bank * bank_n
    if not hit:
        n = st.out_channels if whole else on
        first = 0 if whole else o0
        bld.load("BIAS", base, n, pl.b_region, {
            "layer": st.index, "buffer": Buffer.BIAS, "buf_addr": base,
            "ddr_addr": pl.b_base + first * cfg.bias_bytes, "length": n})
    return base + (o0 if whole else 0)


def _finalize_fields(st: Stage) -> dict[str, int]:
    return {"finalize": 1, "has_bias": int(st.has_bias), "bias_shift": st.bias_shift,
            "relu": int(st.relu), "data_shift": st.data_shift, "out_bits": st.out_fmt.bw,
            "pool": int(st.pool)}


def emit_conv(bld: Builder, st: Stage, t: Tiling, cfg: AcceleratorConfig, pl: Placement) -> None:
    c_in, h, w = st.in_shape
    n_out = st.out_channels
    ho, wo = st.conv_out
    _, hp, wp = st.out_shape
    s = st.stride
    ph, pw = st.padding
    kh, kw = st.kernel
    sa, sb = st.sub_kernels
    db = cfg.data_bytes
    bk = Banks.of(cfg)
    div = 2 if st.pool else 1
    acc_n = acc_entries(st, t)
    stg_n = staging_entries(st, t)
    rows, cols = splits(ho, t.tr), splits(wo, t.tc)
    igs, ogs = splits(c_in, t.ti), splits(n_out, t.to)
    grouped = t.group > 0 and len(cols) == 1
    spatial = [(ry, cx) for ry in range(len(rows)) for cx in range(len(cols))]
    if t.order == "spatial":
        units = [(sp, og) for sp in spatial for og in range(len(ogs))]
    else:
        units = [(sp, og) for og in range(len(ogs)) for sp in spatial]

    # SAVE groups: g consecutive row tiles (of one output group in `weights` order)
    gids: list[object] = ([(ry // t.group, -1 if t.order == "spatial" else og)
                           for (ry, _), og in units] if grouped else list(range(len(units))))
    store = WeightStore.of(st, cfg)
    offs = block_offsets(st, t, store)
    in_lru, w_lru, b_lru = _LRU2(), _LRU2(), _LRU2()
    stg_bank = 0
    fin = _finalize_fields(st)
    for k, ((ry, cx), og) in enumerate(units):
        y0, trk = rows[ry]
        x0, tck = cols[cx]
        o0, on = ogs[og]
        r_start, c_start = y0 * s - ph, x0 * s - pw
        rs, cs = max(0, r_start), max(0, c_start)
        in_rows = min(h, (y0 + trk - 1) * s - ph + kh) - rs
        in_cols = min(w, (x0 + tck - 1) * s - pw + kw) - cs
        assert in_rows > 0 and in_cols > 0, "padding < kernel is checked by the mapping"
        trp, tcp = trk // div, tck // div
        # where this tile's finalized data goes
        if grouped:
            g0 = (ry // t.group) * t.group
            g1 = min(len(rows), g0 + t.group)
            gy0 = rows[g0][0] // div
            g_rows = sum(rows[r][1] // div for r in range(g0, g1))
            pitch = g_rows * wp
            r_off = rows[ry][0] // div - gy0
            ch_off = o0 if t.order == "spatial" else 0
            out_addr = acc_n + stg_bank * stg_n + ch_off * pitch + r_off * wp
        else:
            pitch = 0
            out_addr = acc_n + stg_bank * stg_n
        bias_addr = 0
        if st.has_bias:
            bias_addr = _bias(bld, b_lru, st, t, cfg, pl, og, o0, on)
        for ig, (i0, inn) in enumerate(igs):
            bank, hit = in_lru.get((ry, cx, ig))
            ib = bank * bk.inp
            n_in = inn * in_rows * in_cols
            if not hit:
                ddr = pl.in_base + ((i0 * h + rs) * w + cs) * db
                if in_cols == w:
                    seg = _segments(inn, in_rows * w, h * w * db, w, db)
                else:
                    seg = {"length": in_cols, "n1": in_rows, "stride1": w * db, "n2": inn,
                           "stride2": h * w * db}
                bld.load("INPUT", ib, n_in, pl.in_region, {
                    "layer": st.index, "buffer": Buffer.INPUT, "buf_addr": ib,
                    "ddr_addr": ddr, **seg})
            bank, hit = w_lru.get((og, ig))
            wbase = bank * bk.weight
            blk = on * inn * st.taps
            if not hit:
                bld.load("WEIGHT", wbase, blk * st.nsub, pl.w_region, {
                    "layer": st.index, "buffer": Buffer.WEIGHT, "buf_addr": wbase,
                    "ddr_addr": pl.w_base + offs[og, ig], "length": inn * st.taps,
                    "n1": on * st.nsub, "stride1": store.row_bytes(inn * st.taps),
                    "packed4": int(store.packed)})
            for j in range(st.nsub):
                last = ig == len(igs) - 1 and j == st.nsub - 1
                f: dict[str, int] = {
                    "layer": st.index, "kind": st.calc_kind, "ib_addr": ib,
                    "wb_addr": wbase + j * blk, "ob_addr": 0, "ti": inn, "to": on,
                    "in_rows": in_rows, "in_cols": in_cols, "out_rows": trk, "out_cols": tck,
                    "stride": s, "pad_top": rs - r_start, "pad_left": cs - c_start,
                    "koff_y": KERNEL * (j // sb), "koff_x": KERNEL * (j % sb),
                    "accumulate": int(ig > 0 or j > 0)}
                reads = [("INPUT", ib, ib + n_in), ("WEIGHT", wbase + j * blk,
                                                     wbase + (j + 1) * blk)]
                writes = [(0, on * trk * tck)]
                if last:
                    f.update(fin, bb_addr=bias_addr, out_addr=out_addr, out_pitch=pitch)
                    if st.has_bias:
                        reads.append(("BIAS", bias_addr, bias_addr + on))
                    span = (on - 1) * (pitch or trp * tcp) + trp * tcp if trp * tcp else 0
                    writes.append((out_addr, out_addr + span))
                bld.calc(reads, writes, f)
        # SAVE when this unit ends its group
        if k + 1 < len(units) and gids[k + 1] == gids[k]:
            continue
        base = acc_n + stg_bank * stg_n
        if grouped:
            if g_rows:
                if t.order == "spatial":
                    n_ch, c0 = n_out, 0
                else:
                    n_ch, c0 = on, o0
                seg = _segments(n_ch, g_rows * wp, hp * wp * db, wp, db)
                bld.save(base, n_ch * g_rows * wp, pl.out_region, {
                    "layer": st.index, "ob_addr": base,
                    "ddr_addr": pl.out_base + (c0 * hp + gy0) * wp * db, **seg})
                stg_bank ^= 1
        elif trp and tcp:
            yp, xp = y0 // div, x0 // div
            ddr = pl.out_base + ((o0 * hp + yp) * wp + xp) * db
            if tcp == wp:
                seg = _segments(on, trp * wp, hp * wp * db, wp, db)
            else:
                seg = {"length": tcp, "n1": trp, "stride1": wp * db, "n2": on,
                       "stride2": hp * wp * db}
            bld.save(base, on * trp * tcp, pl.out_region, {
                "layer": st.index, "ob_addr": base, "ddr_addr": ddr, **seg})
            stg_bank ^= 1


def emit_fc(bld: Builder, st: Stage, t: Tiling, cfg: AcceleratorConfig, pl: Placement) -> None:
    (f_in,) = st.in_shape
    db = cfg.data_bytes
    bk = Banks.of(cfg)
    igs, ogs = splits(f_in, t.ti), splits(st.out_channels, t.to)
    if t.order == "in":
        units = [(og, ig) for ig in range(len(igs)) for og in range(len(ogs))]
    else:
        units = [(og, ig) for og in range(len(ogs)) for ig in range(len(igs))]
    acc_n = acc_entries(st, t)
    stg_n = staging_entries(st, t)
    g = max(t.group, 1)
    store = WeightStore.of(st, cfg)
    offs = block_offsets(st, t, store)
    v_lru, w_lru, b_lru = _LRU2(), _LRU2(), _LRU2()
    stg_bank = 0
    fin = _finalize_fields(st)
    last_ig = len(igs) - 1
    for og, ig in units:
        o0, on = ogs[og]
        i0, inn = igs[ig]
        bias_addr = 0
        if st.has_bias and ig == last_ig:
            bias_addr = _bias(bld, b_lru, st, t, cfg, pl, og, o0, on)
        bank, hit = v_lru.get(ig)
        vb = bank * bk.weight
        if not hit:
            bld.load("WEIGHT", vb, inn, pl.in_region, {
                "layer": st.index, "buffer": Buffer.WEIGHT, "fc_weights": 1, "buf_addr": vb,
                "ddr_addr": pl.in_base + i0 * db, "length": inn})
        bank, _ = w_lru.get((og, ig))
        ib = bank * bk.fc
        bld.load("INPUT", ib, on * inn, pl.w_region, {
            "layer": st.index, "buffer": Buffer.INPUT, "fc_weights": 1, "buf_addr": ib,
            "ddr_addr": pl.w_base + offs[og, ig], "length": inn, "n1": on,
            "stride1": store.row_bytes(inn), "packed4": int(store.packed)})
        ob = o0 if t.order == "in" else 0
        g0 = (og // g) * g
        out_addr = acc_n + stg_bank * stg_n + (o0 - ogs[g0][0])
        fields: dict[str, int] = {
            "layer": st.index, "kind": CalcKind.FC, "ib_addr": ib, "wb_addr": vb,
            "ob_addr": ob, "ti": inn, "to": on, "accumulate": int(ig > 0)}
        reads = [("INPUT", ib, ib + on * inn), ("WEIGHT", vb, vb + inn)]
        writes = [(ob, ob + on)]
        if ig == last_ig:
            fields.update(fin, bb_addr=bias_addr, out_addr=out_addr, pool=0)
            if st.has_bias:
                reads.append(("BIAS", bias_addr, bias_addr + on))
            writes.append((out_addr, out_addr + on))
        bld.calc(reads, writes, fields)
        if ig != last_ig or not (og == len(ogs) - 1 or (og + 1) % g == 0):
            continue
        base = acc_n + stg_bank * stg_n
        n = o0 + on - ogs[g0][0]      # ≤ 65535: the tiler bounds group × to
        bld.save(base, n, pl.out_region, {
            "layer": st.index, "ob_addr": base,
            "ddr_addr": pl.out_base + ogs[g0][0] * db, "length": n})
        stg_bank ^= 1
