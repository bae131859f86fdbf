"""Integer arrays for the reference executor: conversion from numpy/torch, ranges and widths.

Shared by the contract (`contract.py`), its exact-product engine (`gemm.py`, `patches.py`,
`kernels.py`) and the executor; no arithmetic of the contract lives here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deepfpga.errors import InputError

_SIGNED = {np.dtype(np.int8): np.int8, np.dtype(np.int16): np.int16,
           np.dtype(np.int32): np.int32, np.dtype(np.uint8): np.int16,
           np.dtype(np.uint16): np.int32, np.dtype(np.uint32): np.int64}


def _int_tensor(a: np.ndarray | torch.Tensor, what: str, keep_dtype: bool = False
                ) -> torch.Tensor:
    """An integer tensor (int64, or with `keep_dtype` the narrowest signed type holding the
    values' type) from a numpy array or tensor; floats and bools are refused."""
    if isinstance(a, torch.Tensor):
        if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
            raise InputError(f"{what}: integer array expected, got dtype {a.dtype}")
        if keep_dtype and a.dtype in (torch.int8, torch.int16, torch.int32, torch.int64):
            return a
        return a.to(torch.int16 if keep_dtype and a.dtype == torch.uint8 else torch.int64)
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu":
        raise InputError(f"{what}: integer array expected, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 1 << 63:
        raise InputError(f"{what}: values beyond the int64 range")
    dtype = _SIGNED.get(arr.dtype, np.int64) if keep_dtype else np.int64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not arr.flags.writeable:
        arr = arr.copy()  # torch cannot share read-only memory
    return torch.from_numpy(arr)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _bits_of_range(lo: int, hi: int) -> int:
    """Smallest two's-complement width n >= 1 with -2^(n-1) <= lo and hi <= 2^(n-1) - 1."""
    n_hi = hi.bit_length() + 1 if hi > 0 else 1
    n_lo = (-lo - 1).bit_length() + 1 if lo < 0 else 1
    return max(n_hi, n_lo)


def _range_of(t: torch.Tensor) -> tuple[int, int]:
    if t.numel() == 0:
        return 0, 0
    return int(t.min()), int(t.max())


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)

# --------------------------------------------------------------------------------------------
