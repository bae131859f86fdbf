"""Exact integer products of the functional simulator's CALCs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from deepfpga.errors import InputError
from deepfpga.hw.isa import CALC_TAPS, Calc, CalcKind
from deepfpga.quant.gemm import (
    F32_EXACT,
    F64_EXACT,
    Method,
    Patches,
    PreparedMatrix,
    Workspace,
    exact_gemm,
    input_digits,
    prepare_matrix,
)
from deepfpga.quant.intarrays import _bits_of_range
from deepfpga.quant.kernels import f32_gemm_exact


def exact_matmul(a: np.ndarray, b: np.ndarray, terms: int, term_bound: int) -> np.ndarray:
    """Exact integer product a @ b (numpy broadcasting) of integer-valued arrays whose
    reduction has `terms` products, each at most `term_bound` in magnitude, as int64.

    The fastest exact path is taken, as in the reference executor's engine (`quant.gemm`):
    float32 (torch, multi-threaded) when no partial sum can exceed 2^24 and float32 products
    are IEEE here (`quant.kernels.f32_gemm_exact`); float64 when none can exceed 2^53 (every
    IEEE operation is then exact); else re-checked on the data and, if need be, int64."""
    if a.size == 0 or b.size == 0:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return np.zeros(shape, dtype=np.int64)
    bound = terms * term_bound
    if bound <= F32_EXACT and f32_gemm_exact():
        with torch.inference_mode():
            prod = torch.matmul(torch.from_numpy(a.astype(np.float32)),
                                torch.from_numpy(b.astype(np.float32)))
        return prod.numpy().astype(np.int64)
    exact_f64 = bound <= F64_EXACT
    if not exact_f64:
        exact_f64 = float(np.abs(a).sum(axis=-1).max()) * float(np.abs(b).max()) <= F64_EXACT
    if exact_f64:
        return (a.astype(np.float64, copy=False) @ b.astype(np.float64, copy=False)).astype(
            np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def tile_bits(tile: np.ndarray) -> int:
    """Two's-complement bits of a tile's values and of 0 (the window's zeros outside the
    tile): what its products' weights are prepared for (`conv_weights`)."""
    lo, hi = _int_range(tile)
    return _bits_of_range(min(lo, 0), max(hi, 0))


def conv_weights(w: np.ndarray, ins: Calc, x_bits: int, method: Method = "auto"
                 ) -> PreparedMatrix:
    """CONV CALC weights w (O, ti·k²), in (c, ky, kx) order as the CALC reads them, prepared
    on the reference executor's engine (`quant.gemm.prepare_matrix`) for inputs of `x_bits`
    bits, the columns in the (ky, kx, c) order of the simulator's patch matrices. The engine
    picks the fastest exact method for these weights (float32 in chunks, int8 digits,
    float64, 16-bit digits; from measured kernel speeds) unless `method` forces one; the
    method changes the speed, never the result. Depends only on (w, kind, x_bits, method):
    the simulator reuses it for every tile the same weights meet."""
    k = _kernel(ins)
    o = w.shape[0]
    w = w.astype(_narrowest(*_int_range(w)), copy=False)
    w = np.ascontiguousarray(w.reshape(o, -1, k, k).transpose(0, 2, 3, 1)).reshape(o, -1)
    try:
        return prepare_matrix(w, x_bits=x_bits, method=method)
    except InputError as e:
        raise InputError(f"CALC products: {e}") from None


def conv_products(tile: np.ndarray, pw: PreparedMatrix, ins: Calc,
                  ws: Workspace | None = None) -> np.ndarray:
    """The exact products of a CONV CALC (or of CALCs stacked along their outputs) with the
    tile (n, ti, rows, cols) as the CALC reads it and weights `pw` (`conv_weights`, prepared
    for at least `tile_bits(tile)` bits), as int64 (n, O, out_rows, out_cols), a new array."""
    return conv_products_many([(tile, ins)], pw, ws)[0]


def conv_products_many(tiles: Sequence[tuple[np.ndarray, Calc]], pw: PreparedMatrix,
                       ws: Workspace | None = None) -> list[np.ndarray]:
    """`conv_products` of several (tile, CALC) pairs with the same weights `pw` in one library
    GEMM on the engine (`quant.gemm.exact_gemm`, which says why every method is exact): their
    patch matrices are stacked by rows. `ws` holds the scratch memory between calls."""
    wins = []
    for tile, ins in tiles:
        lo, hi = _int_range(tile)
        lo, hi = min(lo, 0), max(hi, 0)         # 0: the window's values outside the tile
        if _bits_of_range(lo, hi) > pw.x_bits:
            raise InputError(f"CALC products: tile values in [{lo}, {hi}] exceed the"
                             f" {pw.x_bits} bits the weights were prepared for")
        wins.append(_window(tile, ins, _narrowest(lo, hi)))
    sizes = [len(w) * ins.out_rows * ins.out_cols for w, (_, ins) in zip(wins, tiles,
                                                                         strict=True)]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    rows, nx = bounds[-1], pw.x_digits[1]
    shape = (nx, rows, pw.kp)
    out = np.empty(shape, dtype=pw.np_dtype) if ws is None else ws.array("patches", shape,
                                                                          pw.np_dtype)
    if pw.kp > pw.k:           # zero columns where K is padded (a multiple of 4 for int8)
        out[..., pw.k:] = 0
    c_x = 0
    for win, (_, ins), a, b in zip(wins, tiles, bounds[:-1], bounds[1:], strict=True):
        c_x = _fill_patches(out[:, a:b], win, pw, ins)
    sums: list[torch.Tensor] = []

    def row_sums(b: int) -> torch.Tensor:
        del b
        if not sums:
            sums.append(torch.from_numpy(np.concatenate(
                [_row_sums(w, ins) for w, (_, ins) in zip(wins, tiles, strict=True)])))
        return sums[0]

    stacked = torch.from_numpy(out.reshape(nx * rows, pw.kp))
    patches = Patches(rows, nx, c_x, [(0, rows)], lambda b: stacked, row_sums)
    acc = exact_gemm(patches, pw, ws).numpy()                       # (Σ n·R·C, O)
    res = []
    for win, (_, ins), a, b in zip(wins, tiles, bounds[:-1], bounds[1:], strict=True):
        n, r, c = len(win), ins.out_rows, ins.out_cols
        y = np.empty((n, pw.o, r, c), dtype=np.int64)
        np.copyto(y, acc[a:b].reshape(n, r, c, pw.o).transpose(0, 3, 1, 2))
        res.append(y)
    return res


def _fill_patches(dst: np.ndarray, win: np.ndarray, pw: PreparedMatrix, ins: Calc) -> int:
    """Write the patch matrix of a CALC's window (n, ti, rows, cols) into dst (digits, n·R·C,
    kp): one row per output (sample, y, x), the columns in (ky, kx, c) order (the weights' of
    `conv_weights`), split into `pw`'s input digits (`quant.gemm.input_digits`); returns their
    offset c_x. Built in numpy from the window in (n, rows, cols, ti) layout, where a patch
    row is k runs of k·ti consecutive values (long copies; single-threaded: no thread
    hand-overs on a loaded machine)."""
    n, ti = win.shape[:2]
    s, r, c, k = ins.stride, ins.out_rows, ins.out_cols, _kernel(ins)
    ds, c_x = input_digits(np.ascontiguousarray(win.transpose(0, 2, 3, 1)), pw)
    for j, d in enumerate(ds):
        st = d.strides
        view = np.lib.stride_tricks.as_strided(
            d, (n, r, c, k, k, ti), (st[0], s * st[1], s * st[2], st[1], st[2], st[3]))
        to = dst[j, :, :pw.k].reshape(n, r, c, k, k, ti)    # splits two axes: a view
        assert np.may_share_memory(to, dst)
        np.copyto(to, view, casting="unsafe")
    return c_x


def _row_sums(win: np.ndarray, ins: Calc) -> np.ndarray:
    """Σ_k X[l, k] of a window's patch matrix, (n·R·C,) int64: window sums of the channel
    sums (the offset-digit correction needs them)."""
    s, r, c, k = ins.stride, ins.out_rows, ins.out_cols, _kernel(ins)
    chs = win.sum(axis=1, dtype=np.int64)
    cs = np.lib.stride_tricks.sliding_window_view(chs, (k, k), axis=(1, 2))
    return cs[:, ::s, ::s][:, :r, :c].sum(axis=(3, 4)).reshape(-1)


def _int_range(a: np.ndarray) -> tuple[int, int]:
    return (int(a.min()), int(a.max())) if a.size else (0, 0)


def _narrowest(lo: int, hi: int) -> type:
    """int16 for values that fit it (their digits are bytes: `quant.gemm`), else int64."""
    return np.int16 if lo >= -(1 << 15) and hi < 1 << 15 else np.int64


def _kernel(ins: Calc) -> int:
    """The window side of a CALC's kind: 3 (CONV), 1 (CONV1)."""
    return math.isqrt(CALC_TAPS[CalcKind(ins.kind)])


def _window(tile: np.ndarray, ins: Calc, dtype: type) -> np.ndarray:
    """The (n, ti, (out_rows − 1)·s + k, (out_cols − 1)·s + k) input window the outputs of a
    CALC read (k: its kind's window side, 3, or a CONV1's 1): tile[i, koff_y − pad_top + r,
    koff_x − pad_left + c], zero outside the tile."""
    s = ins.stride
    k = _kernel(ins)
    n, ti, rows, cols = tile.shape
    r0, c0 = ins.koff_y - ins.pad_top, ins.koff_x - ins.pad_left
    nr, nc = (ins.out_rows - 1) * s + k, (ins.out_cols - 1) * s + k
    if r0 == 0 and c0 == 0 and (nr, nc) == (rows, cols):
        return tile.astype(dtype, copy=False)
    z = np.zeros((n, ti, nr, nc), dtype=dtype)
    ra, rb = max(0, r0), min(rows, r0 + nr)
    ca, cb = max(0, c0), min(cols, c0 + nc)
    if ra < rb and ca < cb:
        z[:, :, ra - r0:rb - r0, ca - c0:cb - c0] = tile[:, :, ra:rb, ca:cb]
    return z


def tile_patches(tile: np.ndarray, ins: Calc, dtype: type = np.int64) -> np.ndarray:
    """The (n, ti·k², out_rows·out_cols) matrices of the tile values each output reads (n
    samples): tile[i, y·s + koff_y + ky − pad_top, x·s + koff_x + kx − pad_left] over the k×k
    window of the CALC's kind (3×3, a CONV1's 1×1), zero outside the tile."""
    s = ins.stride
    n, ti = tile.shape[:2]
    z = _window(tile, ins, dtype)
    k = _kernel(ins)
    win = np.lib.stride_tricks.sliding_window_view(z, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    win = win[:, :, :ins.out_rows, :ins.out_cols]          # (n, ti, R, C, k, k)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, ti * k * k, ins.out_rows * ins.out_cols)
