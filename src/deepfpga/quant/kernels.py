"""The matrix kernels behind the exact products, what this machine's kernels can do exactly,
and how fast each one is here.

Which kernel is fastest differs by CPU by an order of magnitude (torch._int_mm runs on AMX/VNNI
units where they exist and ~16x slower than float32 GEMM on AVX2-only CPUs), so the engine never
assumes: `kernel_speeds` times each exact kernel on one short product the first time a choice is
needed (well under a second), and caches the result for the process and thread count. The
timing only ever changes which exact path runs, never a result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from deepfpga.quant.intarrays import _np

# GEMM kernel per accumulation method ('split' holds 16-bit digits in float64).
KERNEL_OF = {"i8": "i8", "f32": "f32", "f64": "f64", "split": "f64", "int64": "int64"}


@functools.cache
def int8_gemm_available() -> bool:
    """Whether torch._int_mm exists and sums int8 products exactly into int32 on this CPU.

    The extreme case is checked because some kernels (vpmaddubsw on pre-VNNI x86) saturate
    pairs of products at 16 bits; such a machine falls back to the float paths.
    """
    if not hasattr(torch, "_int_mm"):
        return False
    try:
        a = torch.full((3, 64), -128, dtype=torch.int8)
        b = torch.full((5, 64), -128, dtype=torch.int8)
        a[1] = 127
        b[2, ::2] = 127
        got = torch._int_mm(a, b.t()).to(torch.int64)
        want = a.to(torch.int64) @ b.to(torch.int64).t()
        return bool(torch.equal(got, want))
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def f32_gemm_exact() -> bool:
    """Whether float32 matrix products run in IEEE float32 here (not TF32/bfloat16, which a
    user may enable globally with torch.set_float32_matmul_precision): only then is a float32
    product of integers with every partial sum <= 2^24 exact. Checked on every call (cheap)
    because the setting can change at any time; the engine never changes it."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    mk = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    if getattr(mk, "fp32_precision", "none") not in ("none", "ieee"):
        return False
    # 2047 has 11 significant bits: a bfloat16 kernel would round it
    a = torch.full((2, 4), 2047.0)
    got = (a @ a.t())[0, 0].item()
    return got == 4 * 2047 * 2047


@dataclass(frozen=True)
class KernelSpeeds:
    """Measured seconds per multiply-accumulate of each exact GEMM kernel (None: unavailable),
    and seconds per element of one int64 pass (recombining digit or chunk products)."""

    mac: dict[str, float | None]
    elem: float

    def mac_time(self, kernel: str) -> float | None:
        return self.mac.get(kernel)


# The probe's product: a conv-like shape (rows, K) x (K, O), 151 M multiply-accumulates; the
# int8 kernel, ~5-10x faster per product, gets 4x the rows (the stacked digits of a 16-bit
# operand): its 0.2 ms run was within a loaded machine's scheduling noise and lost to float64.
_PROBE_M, _PROBE_K, _PROBE_O = 1024, 1152, 128
_PROBE_I8_ROWS = 4 * _PROBE_M
_PROBE_ROUNDS = 7


@functools.cache
def _probe(threads: int) -> KernelSpeeds:
    del threads  # the cache key: torch's thread count changes every kernel's speed
    gen = torch.Generator().manual_seed(0)
    a8 = torch.randint(-128, 128, (_PROBE_I8_ROWS, _PROBE_K), dtype=torch.int8, generator=gen)
    w8 = torch.randint(-128, 128, (_PROBE_O, _PROBE_K), dtype=torch.int8, generator=gen)
    macs = {k: m * _PROBE_K * _PROBE_O
            for k, m in (("f32", _PROBE_M), ("f64", _PROBE_M), ("i8", _PROBE_I8_ROWS))}
    runs: dict[str, Callable[[], object]] = {}
    for kernel, dtype in (("f32", torch.float32), ("f64", torch.float64)):
        a, w = a8[:_PROBE_M].to(dtype), w8.to(dtype)
        out = torch.empty((_PROBE_M, _PROBE_O), dtype=dtype)
        runs[kernel] = functools.partial(torch.matmul, a, w.t(), out=out)
    if int8_gemm_available():
        out32 = torch.empty((_PROBE_I8_ROWS, _PROBE_O), dtype=torch.int32)
        runs["i8"] = functools.partial(torch._int_mm, a8, w8.t(), out=out32)
    best = dict.fromkeys(runs, float("inf"))
    for fn in runs.values():
        fn()  # warm-up (first-use allocations, kernel dispatch)
    # Interleaved rounds, best of each: on a shared machine a descheduled round of one kernel
    # does not decide the comparison.
    for _ in range(_PROBE_ROUNDS):
        for kernel, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[kernel] = min(best[kernel], time.perf_counter() - t0)
    mac: dict[str, float | None] = {k: v / macs[k] for k, v in best.items()}
    mac.setdefault("i8", None)
    # int64 GEMMs are exact by range but have no fast kernel anywhere: never chosen by 'auto'.
    mac["int64"] = None
    x = np.ones(1 << 20, dtype=np.int64)
    y = np.ones(1 << 20, dtype=np.int64)
    elem = float("inf")
    for _ in range(_PROBE_ROUNDS):
        t0 = time.perf_counter()
        np.add(x, y, out=x)
        elem = min(elem, time.perf_counter() - t0)
    elem /= x.size
    return KernelSpeeds(mac, elem)


def kernel_speeds() -> KernelSpeeds:
    """This machine's kernel speeds, measured once per process and torch thread count (about
    0.1 s on the first call; float32 reported unavailable when `f32_gemm_exact` is false)."""
    speeds = _probe(torch.get_num_threads())
    if speeds.mac.get("f32") is not None and not f32_gemm_exact():
        return KernelSpeeds({**speeds.mac, "f32": None}, speeds.elem)
    return speeds


def _mm(a: torch.Tensor, w: torch.Tensor, method: str, out: torch.Tensor) -> torch.Tensor:
    """a (rows, K) times w (O, K) transposed, in the method's dtype, into `out` (rows, O)."""
    if method == "i8":
        # W as a column-major (K, O) view: the layout oneDNN's int8 kernel takes without a copy.
        g = torch._int_mm(a, w.t(), out=out)
        _spot_check(a, w, g, "torch._int_mm")
        return g
    g = torch.matmul(a, w.t(), out=out)
    if method == "f32":
        _spot_check(a, w, g, "float32 matmul")
    return g


def _spot_check(a: torch.Tensor, w: torch.Tensor, g: torch.Tensor, kernel: str) -> None:
    """Recompute a few entries of a library product exactly (first/middle/last rows and
    columns, negligible cost): a kernel that gets a whole shape wrong (or rounds) is caught,
    never silently trusted."""
    if g.numel() == 0:
        return
    rows = sorted({0, a.shape[0] // 2, a.shape[0] - 1})
    cols = sorted({0, w.shape[0] // 2, w.shape[0] - 1})
    # numpy: a tiny single-threaded product (torch's int64 matmul is slow and threaded)
    exact = _np(a)[rows].astype(np.int64) @ _np(w)[cols].astype(np.int64).T
    if not np.array_equal(_np(g)[rows][:, cols], exact):  # exact integers either way
        raise RuntimeError(
            f"{kernel} returned wrong sums for a {tuple(a.shape)} x {tuple(w.shape)}"
            " product on this machine; run with method='f64' and report it"
        )
