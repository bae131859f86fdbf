"""Exact integer products of the functional simulator's CALCs."""

from __future__ import annotations

import math

import numpy as np
import torch

from deepfpga.hw.isa import CALC_TAPS, Calc, CalcKind
from deepfpga.quant.gemm import F32_EXACT, F64_EXACT
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


def _patches(tile: np.ndarray, ins: Calc, dtype: type = np.int64) -> np.ndarray:
    """The (n, ti·taps, out_rows·out_cols) matrices of the tile values each output reads (n
    samples): tile[i, y·s + koff_y + ky − pad_top, x·s + koff_x + kx − pad_left] over the
    k×k window of the CALC's kind (3×3, a CONV1's 1×1), zero outside the tile."""
    s = ins.stride
    k = math.isqrt(CALC_TAPS[CalcKind(ins.kind)])
    n, ti, rows, cols = tile.shape
    r0, c0 = ins.koff_y - ins.pad_top, ins.koff_x - ins.pad_left
    nr, nc = (ins.out_rows - 1) * s + k, (ins.out_cols - 1) * s + k
    z = np.zeros((n, ti, nr, nc), dtype=dtype)
    ra, rb = max(0, r0), min(rows, r0 + nr)
    ca, cb = max(0, c0), min(cols, c0 + nc)
    if ra < rb and ca < cb:
        z[:, :, ra - r0:rb - r0, ca - c0:cb - c0] = tile[:, :, ra:rb, ca:cb]
    win = np.lib.stride_tricks.sliding_window_view(z, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    win = win[:, :, :ins.out_rows, :ins.out_cols]          # (n, ti, R, C, k, k)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, ti * k * k, ins.out_rows * ins.out_cols)
