"""Exact integer products of the functional simulator's CALCs."""

from __future__ import annotations

import math

import numpy as np
import torch

from deepfpga.errors import InputError
from deepfpga.hw.isa import CALC_TAPS, Calc, CalcKind
from deepfpga.quant.gemm import (
    _NP_DTYPE,
    F32_EXACT,
    F64_EXACT,
    Method,
    PreparedMatrix,
    _digits,
    _gemm,
    _Patches,
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


def conv_products(tile: np.ndarray, w: np.ndarray, ins: Calc, method: Method = "auto"
                  ) -> np.ndarray:
    """The exact products of a CONV CALC (or of CALCs stacked along their outputs) on the
    reference executor's engine (`quant.gemm`): weights w (O, ti·k²) in (c, ky, kx) order with
    the tile (n, ti, rows, cols) as the CALC reads it, as int64 (n, O, out_rows, out_cols).

    The engine picks the fastest method exact for these weights and the tile's actual value
    range (float32 in chunks, int8 digits, float64, 16-bit digits; from measured kernel speeds)
    unless `method` forces one; the method changes the speed, never the result. The patch
    matrix is built here in numpy (one copy per digit), the product is one library GEMM."""
    lo, hi = _int_range(tile)
    # zero outside the tile: a plain k×k convolution (0 is inside every range)
    win = _window(tile, ins, _narrowest(min(lo, 0), max(hi, 0)))
    lo, hi = min(lo, 0), max(hi, 0)
    try:
        pw = prepare_matrix(w.astype(_narrowest(*_int_range(w))), x_bits=_bits_of_range(lo, hi),
                            x_absmax=max(-lo, hi), method=method)
    except InputError as e:
        raise InputError(f"CALC products: {e}") from None
    n, r, c = win.shape[0], ins.out_rows, ins.out_cols
    acc = _gemm(_tile_patches(win, pw, ins.stride, r, c, _kernel(ins)), pw).numpy()  # (n·R·C, O)
    return acc.reshape(n, r, c, pw.o).transpose(0, 3, 1, 2)


def _int_range(a: np.ndarray) -> tuple[int, int]:
    return (int(a.min()), int(a.max())) if a.size else (0, 0)


def _narrowest(lo: int, hi: int) -> type:
    """int16 for values that fit it (their digits are bytes: `quant.gemm._digits`), else int64."""
    return np.int16 if lo >= -(1 << 15) and hi < 1 << 15 else np.int64


def _kernel(ins: Calc) -> int:
    """The window side of a CALC's kind: 3 (CONV), 1 (CONV1)."""
    return math.isqrt(CALC_TAPS[CalcKind(ins.kind)])


def _tile_patches(win: np.ndarray, pw: PreparedMatrix, s: int, r: int, c: int, k: int
                  ) -> _Patches:
    """The patch matrix of a window for `pw`'s method: one row per output (sample, y, x), the
    columns in (c, ky, kx) order then zeros up to pw.kp, split into the method's digits (see
    `quant.gemm._gemm_blocks` for why the products are exact), as one block."""
    digit_bits, nx = pw.x_digits
    ds, c_x = _digits(win, nx, digit_bits) if nx > 1 else ([win], 0)
    n, ti = win.shape[:2]
    rows = n * r * c
    # zero columns only where K is padded (to a multiple of 4 for int8)
    alloc = np.empty if pw.kp == pw.k else np.zeros
    out = alloc((nx, n, r, c, pw.kp), dtype=_NP_DTYPE[pw.method])
    for j, d in enumerate(ds):
        view = np.lib.stride_tricks.sliding_window_view(d, (k, k), axis=(2, 3))
        view = view[:, :, ::s, ::s][:, :, :r, :c].transpose(0, 2, 3, 1, 4, 5)
        dst = out[j, ..., :pw.k].reshape(n, r, c, ti, k, k)     # splits one axis: a view
        assert np.may_share_memory(dst, out)
        np.copyto(dst, view)
    sums: list[torch.Tensor] = []

    def row_sums(b: int) -> torch.Tensor:
        del b
        if not sums:          # Σ_k X[l, k]: window sums of the channel sums
            chs = win.sum(axis=1, dtype=np.int64)
            cs = np.lib.stride_tricks.sliding_window_view(chs, (k, k), axis=(1, 2))
            sums.append(torch.from_numpy(cs[:, ::s, ::s][:, :r, :c].sum(axis=(3, 4)).reshape(-1)))
        return sums[0]

    stacked = torch.from_numpy(out.reshape(nx * rows, pw.kp))
    return _Patches(rows, nx, c_x, [(0, rows)], lambda b: stacked, row_sums)


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


def _patches(tile: np.ndarray, ins: Calc, dtype: type = np.int64) -> np.ndarray:
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
