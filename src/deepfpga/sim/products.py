"""Exact integer products of the functional simulator's CALCs."""

from __future__ import annotations

import numpy as np

from deepfpga.compiler.isa import Calc


def _matmul(a: np.ndarray, b: np.ndarray, exact_f64: bool) -> np.ndarray:
    """Exact integer product a @ b (numpy broadcasting) of integer-valued arrays: in float64
    when the caller has proven that no partial sum can reach 2^53 (then every IEEE operation is
    exact), else re-checked on the data and, if need be, done in int64."""
    if a.size == 0 or b.size == 0:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return np.zeros(shape, dtype=np.int64)
    if not exact_f64:
        bound = float(np.abs(a).sum(axis=-1).max()) * float(np.abs(b).max())
        exact_f64 = bound < 2.0 ** 53
    if exact_f64:
        return (a.astype(np.float64, copy=False) @ b.astype(np.float64, copy=False)).astype(
            np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def _patches(tile: np.ndarray, ins: Calc, dtype: type = np.int64) -> np.ndarray:
    """The (n, ti·9, out_rows·out_cols) matrices of the tile values each output reads (n
    samples): tile[i, y·s + koff_y + ky − pad_top, x·s + koff_x + kx − pad_left], zero outside
    the tile."""
    s = ins.stride
    n, ti, rows, cols = tile.shape
    r0, c0 = ins.koff_y - ins.pad_top, ins.koff_x - ins.pad_left
    nr, nc = (ins.out_rows - 1) * s + 3, (ins.out_cols - 1) * s + 3
    z = np.zeros((n, ti, nr, nc), dtype=dtype)
    ra, rb = max(0, r0), min(rows, r0 + nr)
    ca, cb = max(0, c0), min(cols, c0 + nc)
    if ra < rb and ca < cb:
        z[:, :, ra - r0:rb - r0, ca - c0:cb - c0] = tile[:, :, ra:rb, ca:cb]
    win = np.lib.stride_tricks.sliding_window_view(z, (3, 3), axis=(2, 3))[:, :, ::s, ::s]
    win = win[:, :, :ins.out_rows, :ins.out_cols]          # (n, ti, R, C, 3, 3)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, ti * 9, ins.out_rows * ins.out_cols)
