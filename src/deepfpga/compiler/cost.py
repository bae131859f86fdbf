"""Closed-form cost of one stage under one tiling (paper §8.1 style), vectorised over candidates.

Per stage: compute cycles of every CALC and DMA cycles of every LOAD and SAVE, with the
accelerator's rules from deepfpga.hw.arch (the RTL's CALC cycles, element bytes per buffer and
role, AXI bursts and their cycles) — the same functions the timing simulator times instructions
with. Loads use the DDR's read channel, saves its write channel; with double buffering they
overlap compute, so the stage takes

    max(compute, loads, saves) + prologue (first tile's loads) + epilogue (last save group)

The closed form does not know every run's DDR address: it cuts runs into bursts as if each
started on a 4 KiB boundary, and leaves out the instruction fetch's share of the read channel.

The loop structure (which tiles are reloaded, how outputs are grouped per SAVE) is exactly the
one the code generator emits (deepfpga.compiler.codegen); tests check the byte counts agree.
The per-tiling interface (`costs`, `estimate`) is in deepfpga.compiler.tiling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from deepfpga.hw import arch
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.isa import Buffer, CalcKind

if TYPE_CHECKING:
    from deepfpga.compiler.mapping import Stage

_cdiv = arch.cdiv

ORDERS_CONV = ("spatial", "weights")
ORDERS_FC = ("out", "in")


def run_cycles(nbytes: np.ndarray, eb: int | np.ndarray, cfg: AcceleratorConfig,
               save: bool = False) -> np.ndarray:
    """DMA cycles of one contiguous run of `nbytes` of `eb`-byte elements (0 → 0)."""
    return arch.run_dma(cfg, nbytes, eb, save=save)[1]


def run_transactions(nbytes: np.ndarray, cfg: AcceleratorConfig) -> np.ndarray:
    return arch.run_dma(cfg, nbytes, 1, save=False)[0]


def _classes(total: int, size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray, np.ndarray]:
    """Tiles of `size` over `total`: count n, full size, full count, last size (count 1)."""
    n = _cdiv(total, size)
    last = total - (n - 1) * size
    return n, size, n - 1, last, np.ones_like(n)


def extent_sum(n_out: int, t: np.ndarray, s: int, k: int, p: int, n_in: int) -> np.ndarray:
    """Σ over the tiles of `t` outputs (along one axis of n_out outputs) of the input extent
    each loads: tile j covers outputs [j·t, min((j+1)·t, n_out)) and reads inputs
    [max(0, b_j), min(n_in, e_j)) with b_j = j·t·s − p, e_j = (last output)·s − p + k."""
    t = np.asarray(t, np.int64)
    n = _cdiv(n_out, t)
    full = s * (n_out - n) + n * k                       # Σ (e_j − b_j) without clipping
    ts = t * s
    m = np.minimum(n, _cdiv(p, ts)) if p else np.zeros_like(t)   # tiles with b_j < 0
    top = m * p - ts * m * (m - 1) // 2
    last_over = np.maximum(0, (n_out - 1) * s - p + k - n_in)    # the last tile
    thr = n_in + s + p - k                               # earlier tiles: (j+1)·t·s > thr
    j0 = np.maximum(1, thr // ts + 1)
    q = np.maximum(0, n - j0)                            # j = j0 .. n−1
    over = ts * (j0 + n - 1) * q // 2 - q * thr
    return full - top - over - last_over


def _weight_block(cfg: AcceleratorConfig, stage: Stage, osz: np.ndarray, isz: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, cycles, transactions) of one weight block's LOAD: one contiguous run of
    osz·nsub rows (segments) of isz·taps weights, packed when arch.weights_packed."""
    packed = int(arch.weights_packed(cfg, stage.kind == "fc", stage.w_fmt.bw))
    rows, length = osz * stage.nsub, isz * stage.taps
    wb = cfg.weight_bytes
    nbytes = rows * arch.load_segment_bytes_of(wb, packed, length)
    split = arch.load_split_segments(length, rows, 1, packed)
    cyc = arch.run_dma(cfg, nbytes, wb, save=False, elements=rows * length, split=split)[1]
    return nbytes, cyc, run_transactions(nbytes, cfg)


def _element_bytes(cfg: AcceleratorConfig) -> tuple[int, int, int, int, int, int]:
    """Element bytes of: input tiles, CONV weights, saves, FC weight blocks, the FC vector, and
    biases — each LOAD's (buffer, role) as the hardware moves it (deepfpga.hw.arch)."""
    e_in, e_w, e_fc, e_vec, e_b = (int(arch.load_element_bytes(cfg, b, f)) for b, f in (
        (Buffer.INPUT, 0), (Buffer.WEIGHT, 0), (Buffer.INPUT, 1), (Buffer.WEIGHT, 1),
        (Buffer.BIAS, 0)))
    return e_in, e_w, arch.save_element_bytes(cfg), e_fc, e_vec, e_b


def _conv_unit_cycles(cfg: AcceleratorConfig, stage: Stage, rows: np.ndarray, cols: np.ndarray,
                      to: np.ndarray, i_full: np.ndarray, c_if: np.ndarray, i_last: np.ndarray
                      ) -> np.ndarray:
    """CALC cycles of one (spatial tile, output group): its input-channel tiles × sub-kernels,
    the first not accumulating, the last finalizing (as deepfpga.compiler.codegen emits them)."""
    s, pool, nsub = stage.stride, int(stage.pool), stage.nsub

    def cc(ti: np.ndarray, acc: int, fin: int) -> np.ndarray:
        return arch.calc_cycles(cfg, stage.calc_kind, ti, to, rows, cols, s, pool * fin, acc,
                                fin)

    single = (c_if == 0) & (nsub == 1)
    i_first = np.where(c_if > 0, i_full, i_last)
    mid_full = np.maximum(c_if * nsub - (c_if > 0), 0)
    mid_last = np.maximum(nsub - 1 - (c_if == 0), 0)
    many = (cc(i_first, 0, 0) + cc(i_last, 1, 1) + mid_full * cc(i_full, 1, 0)
            + mid_last * cc(i_last, 1, 0))
    return np.where(single, cc(i_last, 0, 1), many)


def conv_costs(stage: Stage, cfg: AcceleratorConfig, tr: np.ndarray, tc: np.ndarray,
               ti: np.ndarray, to: np.ndarray, order: np.ndarray, group: np.ndarray
               ) -> dict[str, np.ndarray]:
    """Cycles, bytes and transactions of a CONV stage for arrays of tilings (order 0 = spatial:
    spatial tiles outermost; 1 = weights: output-channel groups outermost)."""
    c_in, h, w = stage.in_shape
    n_out = stage.out_channels
    ho, wo = stage.conv_out
    s = stage.stride
    kh, kw = stage.kernel
    db, bb = cfg.data_bytes, cfg.bias_bytes
    e_in, _, e_out, _, _, e_b = _element_bytes(cfg)
    tr, tc, ti, to, order, group = (np.asarray(a, np.int64) for a in
                                    (tr, tc, ti, to, order, group))
    n_r, r_full, c_rf, r_last, _ = _classes(ho, tr)
    n_c, c_full, c_cf, c_last, _ = _classes(wo, tc)
    n_i, i_full, c_if, i_last, _ = _classes(c_in, ti)
    n_o, o_full, c_of, o_last, _ = _classes(n_out, to)
    n_sp = n_r * n_c
    spatial = order == 0

    def rows_in(r: np.ndarray) -> np.ndarray:
        return np.minimum(h, (r - 1) * s + kh)

    def cols_in(c: np.ndarray) -> np.ndarray:
        return np.minimum(w, (c - 1) * s + kw)

    # --- compute: Σ over the tile classes (rows × cols × output groups) of their CALCs ----
    n_calc = n_sp * n_i * n_o * stage.nsub
    compute = np.zeros_like(tr)
    for rsz, rcnt in ((r_full, c_rf), (r_last, 1)):
        for csz, ccnt in ((c_full, c_cf), (c_last, 1)):
            for osz, ocnt in ((o_full, c_of), (o_last, 1)):
                compute += rcnt * ccnt * ocnt * _conv_unit_cycles(cfg, stage, rsz, csz, osz,
                                                                  i_full, c_if, i_last)

    # --- input tile loads -----------------------------------------------------------------
    # reuse: the two input banks keep the last two tiles (LRU), so a tile pattern of period ≤ 2
    # repeated over the middle loop is loaded once
    in_reload = np.where(spatial, np.where(n_i <= 2, 1, n_o), np.where(n_sp * n_i <= 2, 1, n_o))
    in_bytes = np.zeros_like(tr)
    in_cyc = np.zeros_like(tr)
    in_tx = np.zeros_like(tr)
    first_in = None
    for rsz, rcnt in ((r_full, c_rf), (r_last, 1)):
        for csz, ccnt in ((c_full, c_cf), (c_last, 1)):
            for isz, icnt in ((i_full, c_if), (i_last, 1)):
                ri, ci = rows_in(rsz), cols_in(csz)
                nbytes = isz * ri * ci * db
                full_w = ci == w
                whole = full_w & (ri == h)
                # runs: whole map → 1 run; full width → one per channel; else one per row
                n_runs = np.where(whole, 1, np.where(full_w, isz, isz * ri))
                run_b = np.where(whole, nbytes, np.where(full_w, ri * ci * db, ci * db))
                cyc = n_runs * run_cycles(run_b, e_in, cfg)
                cnt = rcnt * ccnt * icnt * in_reload
                in_cyc += cnt * cyc
                in_tx += cnt * n_runs * run_transactions(run_b, cfg)
                if first_in is None:
                    first_in = cyc
    # exact bytes: the tiles' input extents, clipped by the padding at the map's borders
    ph, pw = stage.padding
    in_bytes = in_reload * c_in * db * extent_sum(ho, tr, s, kh, ph, h) * extent_sum(
        wo, tc, s, kw, pw, w)
    # --- weight block loads: one contiguous block per (to, ti) group --------------------
    w_reload = np.where(spatial, np.where(n_o * n_i <= 2, 1, n_sp), np.where(n_i <= 2, 1, n_sp))
    w_bytes = np.zeros_like(tr)
    w_cyc = np.zeros_like(tr)
    w_tx = np.zeros_like(tr)
    first_w = None
    for isz, icnt in ((i_full, c_if), (i_last, 1)):
        for osz, ocnt in ((o_full, c_of), (o_last, 1)):
            b, cyc, tx = _weight_block(cfg, stage, osz, isz)
            cnt = icnt * ocnt * w_reload
            w_bytes += cnt * b
            w_cyc += cnt * cyc
            w_tx += cnt * tx
            if first_w is None:
                first_w = cyc
    # --- bias: once per stage when the whole vector fits a bank, else per channel group -
    b_cyc = np.zeros_like(tr)
    b_bytes = np.zeros_like(tr)
    if stage.has_bias:
        if n_out <= cfg.bias_buffer_entries // 2:
            b_bytes += n_out * bb
            b_cyc += run_cycles(np.full_like(tr, n_out * bb), e_b, cfg)
        else:
            # per output group; revisited per spatial tile in `spatial` order unless the
            # two bias banks hold every group (≤ 2 groups)
            visits = np.where(spatial & (n_o > 2), n_sp, 1)
            b_bytes += visits * n_out * bb
            b_cyc += visits * (c_of * run_cycles(o_full * bb, e_b, cfg)
                               + run_cycles(o_last * bb, e_b, cfg))
    # --- saves ----------------------------------------------------------------------------
    hp, wp = stage.out_shape[1], stage.out_shape[2]
    div = 2 if stage.pool else 1
    s_bytes = np.full_like(tr, n_out * hp * wp * db)
    # per-tile saves (group 0): per output channel, one run per tile (full width) or per row
    trp_f, trp_l = r_full // div, r_last // div
    tcp_f, tcp_l = c_full // div, c_last // div
    full_w = n_c == 1
    s_cyc_tile = np.zeros_like(tr)
    s_tx_tile = np.zeros_like(tr)
    for rp, rcnt in ((trp_f, c_rf), (trp_l, 1)):
        for cp, ccnt in ((tcp_f, c_cf), (tcp_l, 1)):
            whole = full_w & (rp == hp)
            run_b = np.where(full_w, rp * wp * db, cp * db)
            runs_per_ch = np.where(full_w, 1, rp)
            for osz, ocnt in ((o_full, c_of), (o_last, 1)):
                nb = np.where(whole, osz * run_b, run_b)
                nr = np.where(whole, 1, osz * runs_per_ch)
                s_cyc_tile += rcnt * ccnt * ocnt * nr * run_cycles(nb, e_out, cfg, True)
                s_tx_tile += rcnt * ccnt * ocnt * nr * run_transactions(nb, cfg)
    # grouped saves (group g ≥ 1, full width): g row tiles, all channels of the loop's set
    g = np.maximum(group, 1)
    n_g = _cdiv(n_r, g)
    rows_g_full = g * trp_f
    rows_g_last = hp - (n_g - 1) * rows_g_full
    s_cyc_grp = np.zeros_like(tr)
    s_tx_grp = np.zeros_like(tr)
    for rows, cnt in ((rows_g_full, n_g - 1), (rows_g_last, 1)):
        whole = rows == hp
        # spatial order: one SAVE per group covering every output channel
        nb = np.where(whole, n_out * rows * wp * db, rows * wp * db)
        runs = np.where(whole, 1, n_out)
        sp_cyc = runs * run_cycles(nb, e_out, cfg, True)
        sp_tx = runs * run_transactions(nb, cfg)
        # weights order: one SAVE per group and output-channel group
        wt_cyc = np.zeros_like(tr)
        wt_tx = np.zeros_like(tr)
        for osz, ocnt in ((o_full, c_of), (o_last, 1)):
            nbw = np.where(whole, osz * rows * wp * db, rows * wp * db)
            runs_w = np.where(whole, 1, osz)
            wt_cyc += ocnt * runs_w * run_cycles(nbw, e_out, cfg, True)
            wt_tx += ocnt * runs_w * run_transactions(nbw, cfg)
        s_cyc_grp += cnt * np.where(spatial, sp_cyc, wt_cyc)
        s_tx_grp += cnt * np.where(spatial, sp_tx, wt_tx)
    grouped = (group >= 1) & full_w
    s_cyc = np.where(grouped, s_cyc_grp, s_cyc_tile)
    s_tx = np.where(grouped, s_tx_grp, s_tx_tile)
    last_save = np.where(grouped, s_cyc_grp // np.maximum(n_g, 1), s_cyc_tile // (n_sp * n_o))

    dma = in_cyc + w_cyc + b_cyc + s_cyc
    assert first_in is not None and first_w is not None
    total = (np.maximum(compute, np.maximum(in_cyc + w_cyc + b_cyc, s_cyc)) + first_in + first_w
             + last_save)
    return {"cycles": total, "compute_cycles": compute, "dma_cycles": dma,
            "load_in_bytes": in_bytes, "load_w_bytes": w_bytes + b_bytes, "save_bytes": s_bytes,
            "transactions": in_tx + w_tx + s_tx, "calcs": n_calc}


def fc_costs(stage: Stage, cfg: AcceleratorConfig, ti: np.ndarray, to: np.ndarray,
             order: np.ndarray, group: np.ndarray) -> dict[str, np.ndarray]:
    """FC stage: order 0 = 'out' (output groups outermost), 1 = 'in' (input groups outermost,
    every accumulator on chip)."""
    (f,) = stage.in_shape
    n_out = stage.out_channels
    db, bb = cfg.data_bytes, cfg.bias_bytes
    _, _, e_out, _, e_vec, e_b = _element_bytes(cfg)
    ti, to, order, group = (np.asarray(a, np.int64) for a in (ti, to, order, group))
    n_i, i_full, c_if, i_last, _ = _classes(f, ti)
    n_o, o_full, c_of, o_last, _ = _classes(n_out, to)
    n_calc = n_i * n_o
    compute = np.zeros_like(ti)

    def cc(isz: np.ndarray, osz: np.ndarray, fin: int) -> np.ndarray:
        return arch.calc_cycles(cfg, CalcKind.FC, isz, osz, 1, 1, 1, 0, 1, fin)

    # Σ arch.calc_cycles: every block, then the last input tile's finalize
    for osz, ocnt in ((o_full, c_of), (o_last, 1)):
        compute += ocnt * (c_if * cc(i_full, osz, 0) + cc(i_last, osz, 1))
    w_cyc = np.zeros_like(ti)
    w_tx = np.zeros_like(ti)
    w_bytes = np.zeros_like(ti)
    first_w = None
    for isz, icnt in ((i_full, c_if), (i_last, 1)):
        for osz, ocnt in ((o_full, c_of), (o_last, 1)):
            b, cyc, tx = _weight_block(cfg, stage, osz, isz)
            w_cyc += icnt * ocnt * cyc
            w_tx += icnt * ocnt * tx
            w_bytes += icnt * ocnt * b
            if first_w is None:
                first_w = cyc
    v_reload = np.where(order == 0, np.where(n_i <= 2, 1, n_o), 1)
    v_cyc = v_reload * (c_if * run_cycles(i_full * db, e_vec, cfg)
                        + run_cycles(i_last * db, e_vec, cfg))
    v_bytes = v_reload * f * db
    b_cyc = np.zeros_like(ti)
    b_bytes = n_out * bb if stage.has_bias else 0
    if stage.has_bias:
        if n_out <= cfg.bias_buffer_entries // 2:
            b_cyc += run_cycles(np.full_like(ti, n_out * bb), e_b, cfg)
        else:
            b_cyc += c_of * run_cycles(o_full * bb, e_b, cfg) + run_cycles(o_last * bb, e_b, cfg)
    g = np.maximum(group, 1)
    n_g = _cdiv(n_o, g)
    last_vals = n_out - (n_g - 1) * g * o_full
    s_cyc = (n_g - 1) * run_cycles(g * o_full * db, e_out, cfg, True) + run_cycles(
        last_vals * db, e_out, cfg, True)
    s_tx = (n_g - 1) * run_transactions(g * o_full * db, cfg) + run_transactions(
        last_vals * db, cfg)
    dma = w_cyc + v_cyc + b_cyc + s_cyc
    assert first_w is not None
    total = np.maximum(compute, np.maximum(w_cyc + v_cyc + b_cyc, s_cyc)) + first_w + \
        run_cycles(i_full * db, e_vec, cfg) + run_cycles(last_vals * db, e_out, cfg, True)
    return {"cycles": total, "compute_cycles": compute, "dma_cycles": dma,
            "load_in_bytes": w_bytes, "load_w_bytes": v_bytes + b_bytes,
            "save_bytes": np.full_like(ti, n_out * db),
            "transactions": w_tx + s_tx + v_reload * n_i, "calcs": n_calc}
