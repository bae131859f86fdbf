"""The exact-product engine of the reference executor: integer matrix products X·Wᵀ computed
exactly on fast floating-point or int8 library kernels.

Contract step 1 (docs/arithmetic.md) needs exact integer sums; library GEMMs are fast but work
in float32, float64 or int8→int32. Each method below is exact under a bound proved at
`_gemm_blocks`; `prepare_matrix` picks, per weight matrix, the fastest method that is exact for
the operands' actual ranges, with the kernels' speeds measured on this machine
(`kernels.kernel_speeds`). The method changes the speed, never the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from deepfpga.errors import InputError, ShapeError
from deepfpga.quant.intarrays import _bits_of_range, _int_tensor, _np
from deepfpga.quant.kernels import (
    KERNEL_OF,
    _mm,
    f32_gemm_exact,
    int8_gemm_available,
    kernel_speeds,
)

Method = Literal["auto", "f32", "i8", "f64", "split", "int64"]
METHODS: tuple[str, ...] = ("auto", "f32", "i8", "f64", "split", "int64")

# float32 represents every integer of magnitude <= 2^24 exactly, float64 every one <= 2^53.
F32_EXACT = 1 << 24
F64_EXACT = 1 << 53
# Accumulators are int64 here; below this bound no later step (bias add, rounding) can overflow.
# Hardware accumulators are far narrower (AcceleratorConfig.acc_bits <= 60).
ACC_INT64_LIMIT = 1 << 62
# int8 digits lie in [-128, 127]: one product is at most 2^14 in magnitude, so an int32 sum of at
# most 2^16 of them stays within 2^30 < 2^31 - 1.
_I8_K_CHUNK = 1 << 16  # a multiple of 4, like every int8 operand width (see prepare_matrix)
# 16-bit digits lie in [-2^15, 2^15): a product is at most 2^30; 2^22 of them stay within 2^52.
_SPLIT_DIGIT_BITS = 16
_SPLIT_K_CHUNK = 1 << 22
# float32 chunking: equal splits of K are tried from the fewest the row sums allow, this many
# more, before falling back to chunks short enough for the worst case of every product.
_F32_SPLIT_TRIES = 8

_GEMM_DTYPE = {"i8": torch.int8, "f32": torch.float32, "split": torch.float64,
               "f64": torch.float64, "int64": torch.int64}
_OUT_DTYPE = {**_GEMM_DTYPE, "i8": torch.int32}
_NP_DTYPE = {"i8": np.int8, "f32": np.float32, "split": np.float64, "f64": np.float64,
             "int64": np.int64}


class Workspace:
    """Reusable scratch memory for the large temporaries of a layer (patch matrices, library
    products, int64 accumulators). Fresh large allocations are slow here: every new page is a
    page fault on first touch. Not thread-safe: one run uses one workspace at a time."""

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}

    def tensor(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A contiguous tensor over buffer `name` (contents undefined; valid until the next
        request for the same name)."""
        n = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = self._bufs[name] = torch.empty(max(n, 1), dtype=torch.uint8)
        return buf[:n].view(dtype).view(shape)

    def array(self, name: str, shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
        tdt = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return _np(self.tensor(name, shape, tdt))


def _scratch(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: torch.dtype
             ) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype) if ws is None else ws.tensor(name, shape, dtype)


def _digits(a: np.ndarray, n: int, b: int, balanced: bool = False
            ) -> tuple[list[np.ndarray], int]:
    """Split integer array `a` into n base-2^b digits in [-2^(b-1), 2^(b-1)) and a constant c
    with a = Σ_i 2^(b·i)·d_i + c.

    Offset digits (default): lower digits are (a mod 2^b) - 2^(b-1), so c = 2^(b-1)·Σ_{i<n-1}
    2^(b·i); the top digit a >> (b·(n-1)) is in range whenever a fits n·b bits. Balanced digits
    (`balanced=True`): every lower digit is the remainder nearest zero, c = 0; the top digit may
    then leave the range for values near the top of it — the caller checks.
    """
    if n == 1:
        return [a], 0
    if (not balanced and n == 2 and b == 8 and a.dtype == np.int16
            and a.dtype.byteorder in "=<" and np.little_endian):
        # 16-bit values are their two bytes: the top digit is the high byte (a >> 8) and the
        # offset digit (a & 255) - 128 is the low byte with its top bit flipped
        by = np.ascontiguousarray(a).view(np.uint8).reshape(*a.shape, 2)
        return [(by[..., 0] ^ np.uint8(0x80)).view(np.int8), by[..., 1].view(np.int8)], 128
    # room for the digit arithmetic (a + 2^(b-1) must not wrap): int32 only for 16-bit inputs
    narrow = a.dtype in (np.int8, np.int16) and b <= 8
    rest = a.astype(np.int32 if narrow else np.int64)
    half, mask = 1 << (b - 1), (1 << b) - 1
    out = []
    for _ in range(n - 1):
        if balanced:
            d = ((rest + half) & mask) - half
            out.append(d)
            rest = (rest - d) >> b
        else:
            out.append((rest & mask) - half)
            rest = rest >> b
    out.append(rest)
    return out, 0 if balanced else _digit_offset(n, b)


def _digit_offset(n: int, b: int) -> int:
    """The constant c of `_digits` with offset digits."""
    return (1 << (b - 1)) * sum(1 << (b * i) for i in range(n - 1)) if n > 1 else 0


def _balanced_fits(lo: int, hi: int, n: int, b: int) -> bool:
    """Whether the balanced top digit of every value in [lo, hi] lies in [-2^(b-1), 2^(b-1)):
    that digit is (a + c) >> (b·(n-1)) with c the offset constant, monotone in a."""
    half, top = 1 << (b - 1), b * (n - 1)
    c = _digit_offset(n, b)
    return -half <= (lo + c) >> top and (hi + c) >> top < half


def _n_digits(method: str, bits: int) -> tuple[int, int]:
    """(digit bits, number of digits) of a `bits`-bit operand for a method."""
    if method == "i8":
        return 8, max(1, math.ceil(bits / 8))
    if method == "split":
        return _SPLIT_DIGIT_BITS, max(1, math.ceil(bits / _SPLIT_DIGIT_BITS))
    return 64, 1


@dataclass(frozen=True, eq=False)
class PreparedMatrix:
    """A weight matrix W (O, K) made ready for exact products by one method.

    `stacked` holds W's base-2^digit_bits digits one under the other, ((n_digits·O, kp), GEMM
    dtype, lowest digit first); `c` is the digit offset constant (0 for balanced digits),
    `rowsum[o]` = Σ_k W[o, k] and `row_abs[o]` = Σ_k |W[o, k]| (int64). Inputs must satisfy
    |x| <= x_absmax and fit x_bits two's-complement bits. The reduction is cut at `k_bounds`
    (0 = b_0 < b_1 < ... = kp) into chunks whose library sums stay exact.
    """

    method: str
    o: int
    k: int
    kp: int  # columns of the GEMM operands: K zero-padded to a multiple of 4 for 'i8'
    digit_bits: int
    n_digits: int
    stacked: torch.Tensor
    c: int
    rowsum: torch.Tensor
    row_abs: torch.Tensor
    x_bits: int
    x_absmax: int
    k_bounds: tuple[int, ...]

    @property
    def row_abs_max(self) -> int:
        return int(self.row_abs.max()) if self.o else 0

    @property
    def bound(self) -> int:
        """Largest |partial sum| for inputs with |x| <= x_absmax (before any bias)."""
        return self.x_absmax * self.row_abs_max

    @property
    def chunks(self) -> list[tuple[int, int]]:
        return list(zip(self.k_bounds[:-1], self.k_bounds[1:], strict=True))

    @property
    def x_digits(self) -> tuple[int, int]:
        """(digit bits, digits) the input side is split into."""
        return _n_digits(self.method, self.x_bits)

    @property
    def x_offset(self) -> int:
        """The input side's digit offset c_x (its correction is c_x·rowsum[o] per output)."""
        return _digit_offset(self.x_digits[1], self.x_digits[0])

    @property
    def np_dtype(self) -> type:
        """The numpy dtype of the GEMM operands (patch matrices built outside the engine)."""
        return _NP_DTYPE[self.method]

    @property
    def raw(self) -> bool:
        """One digit each side and one chunk: the library product is the accumulator."""
        return self.n_digits == 1 and self.x_digits[1] == 1 and len(self.k_bounds) <= 2


def _uniform_bounds(k: int, step: int) -> tuple[int, ...]:
    return (*range(0, k, step), k) if k else (0,)


def _f32_bounds(w_abs: np.ndarray | None, k: int, x_absmax: int, w_absmax: int,
                row_abs_max: int) -> tuple[int, ...] | None:
    """Chunk bounds of K for the float32 method, or None where one product can exceed 2^24.

    A chunk is exact when x_absmax·Σ_{k in chunk}|W[o, k]| <= 2^24 for every output o. Equal
    splits are tried from the fewest the row sums allow; chunks of 2^24 // (x_absmax·max|W|)
    columns satisfy it for any weights and end the search. `w_abs`: |W| (O, K), int64."""
    if k == 0:
        return (0,)
    if x_absmax * w_absmax > F32_EXACT or max(x_absmax, w_absmax) > F32_EXACT:
        return None
    worst = F32_EXACT // max(1, x_absmax * w_absmax)
    n_min = max(1, -(-x_absmax * row_abs_max // F32_EXACT))
    tries = range(n_min, min(n_min + _F32_SPLIT_TRIES, -(-k // worst)))
    if w_abs is not None and len(tries):
        # prefix sums along K: a chunk's row sums are two columns' difference
        cs = np.zeros((w_abs.shape[0], k + 1), dtype=np.int64)
        np.cumsum(w_abs, axis=1, out=cs[:, 1:])
        for n in tries:
            bounds = tuple(k * i // n for i in range(n + 1))
            if all(x_absmax * int((cs[:, b] - cs[:, a]).max()) <= F32_EXACT
                   for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
                return bounds
    return _uniform_bounds(k, worst)


def _layer_cost(method: str, x_bits: int, w_bits: int, k: int, o: int, n_chunks: int) -> float:
    """Estimated seconds per output row (one row of the patch matrix) of a method here: the
    library products, the int64 recombination passes and building the input digits. None of
    it changes the result, only which exact path runs."""
    speeds = kernel_speeds()
    t_mac = speeds.mac_time(KERNEL_OF[method])
    if t_mac is None:
        return math.inf
    nx, nw = _n_digits(method, x_bits)[1], _n_digits(method, w_bits)[1]
    passes = 1 if nx == nw == n_chunks == 1 else nx * nw * n_chunks + 2
    itemsize = _GEMM_DTYPE[method].itemsize
    return (k * o * nx * nw * t_mac + o * passes * speeds.elem
            + k * nx * itemsize / 8 * speeds.elem)


def _check_method(method: str, bound: int, i8_ok: bool, f32_bounds: tuple[int, ...] | None
                  ) -> None:
    if method not in METHODS:
        raise InputError(f"unknown accumulation method {method!r} (known: {', '.join(METHODS)})")
    if bound >= ACC_INT64_LIMIT:
        raise InputError(
            f"accumulator bound {bound} reaches 2^62: beyond the int64 accumulator of the"
            " reference executor (and of any hardware accumulator)"
        )
    if method == "f64" and bound > F64_EXACT:
        raise InputError(f"float64 path is not exact here: accumulator bound {bound} > 2^53")
    if method == "f32" and (f32_bounds is None or not f32_gemm_exact()):
        raise InputError(
            "float32 path is not exact here: one product can exceed 2^24, or float32 matrix"
            " products are not IEEE float32 (torch.set_float32_matmul_precision)"
        )
    if method == "i8" and not i8_ok:
        raise InputError("int8 path unavailable: torch._int_mm missing or not exact on this CPU")


def _choose_method(method: str, x_bits: int, w_bits: int, bound: int, i8_ok: bool, k: int,
                   o: int, f32_bounds: tuple[int, ...] | None) -> str:
    """The given method (checked to be exact here) or, for 'auto', the exact method with the
    lowest estimated cost on this machine (`_layer_cost`, from measured kernel speeds)."""
    _check_method(method, bound, i8_ok, f32_bounds)
    if method != "auto":
        return method
    chunks = {"f32": len(f32_bounds or (0, 0)) - 1,
              "i8": max(1, -(-k // _I8_K_CHUNK)), "split": max(1, -(-k // _SPLIT_K_CHUNK))}
    ok = []  # on a tie the earlier, simpler method wins
    if f32_bounds is not None and f32_gemm_exact():
        ok.append("f32")
    if i8_ok:
        ok.append("i8")
    if bound <= F64_EXACT:
        ok.append("f64")
    ok.append("split")
    if k == 0:
        return "f64" if "f64" in ok else "split"
    costs = {m: _layer_cost(m, x_bits, w_bits, k, o, chunks.get(m, 1)) for m in ok}
    return min(ok, key=lambda m: (costs[m], ok.index(m)))


def prepare_matrix(w2d: np.ndarray | torch.Tensor, *, x_bits: int, x_absmax: int | None = None,
                   method: Method = "auto", i8_ok: bool | None = None) -> PreparedMatrix:
    """Prepare W (O, K) for exact products with inputs of at most `x_bits` two's-complement bits
    and magnitude at most `x_absmax` (default 2^(x_bits-1))."""
    w = _int_tensor(w2d, "weights", keep_dtype=True)
    if w.ndim != 2:
        raise ShapeError(f"weight matrix must be 2-D, got shape {tuple(w.shape)}")
    o, k = int(w.shape[0]), int(w.shape[1])
    x_absmax = (1 << (x_bits - 1)) if x_absmax is None else int(x_absmax)
    # numpy, single-threaded: for the small matrices of the functional simulator's CALCs,
    # torch's threaded reductions cost more in hand-overs than in work on a loaded machine
    wn = _np(w)
    w_abs = np.abs(wn.astype(np.int64)) if k else None
    if w_abs is not None:
        row_abs = torch.from_numpy(w_abs.sum(axis=1))
        rowsum = torch.from_numpy(wn.sum(axis=1, dtype=np.int64))
    else:
        row_abs = rowsum = torch.zeros(o, dtype=torch.int64)
    row_abs_max = int(row_abs.max()) if o else 0
    if i8_ok is None:
        i8_ok = method in ("auto", "i8") and int8_gemm_available()
    lo, hi = (int(wn.min()), int(wn.max())) if wn.size else (0, 0)
    w_bits = _bits_of_range(lo, hi)
    f32_bounds = None
    if method in ("auto", "f32"):
        f32_bounds = _f32_bounds(w_abs, k, x_absmax, max(-lo, hi), row_abs_max)
    method = _choose_method(method, x_bits, w_bits, x_absmax * row_abs_max, i8_ok, k, o,
                            f32_bounds)
    del w_abs
    digit_bits, n = _n_digits(method, w_bits)
    # Balanced digits need no per-row correction; their top digit can overflow for weights
    # near the top of the range, and then offset digits (whose correction needs Σ_k X[l, k])
    # are used instead.
    ds, c = _digits(wn, n, digit_bits, balanced=_balanced_fits(lo, hi, n, digit_bits))
    # torch._int_mm returns wrong sums for K = 1 (torch 2.13, found by these tests): int8
    # operands get zero columns up to a multiple of 4; zeros add nothing to any product.
    kp = -(-k // 4) * 4 if method == "i8" else k
    stacked = np.zeros((n * o, kp), dtype=_NP_DTYPE[method])
    for i, d in enumerate(ds):
        stacked[i * o:(i + 1) * o, :k] = d
    if method == "f32":
        assert f32_bounds is not None
        bounds = f32_bounds
    else:
        bounds = _uniform_bounds(kp, {"i8": _I8_K_CHUNK, "split": _SPLIT_K_CHUNK}.get(
            method, max(kp, 1)))
    return PreparedMatrix(method, o, k, kp, digit_bits, n, torch.from_numpy(stacked), c, rowsum,
                          row_abs, x_bits, x_absmax, bounds)


@dataclass(frozen=True, eq=False)
class Patches:
    """The input side X (L, K) of a product, delivered in row blocks.

    `blocks` lists (row0, row1); `block(b)` returns the n_digits digits of those rows stacked
    ((n_digits·rows, kp), GEMM dtype, lowest digit first); `row_sums(b)` gives Σ_k X[l, k]
    (int64) over block b. X = Σ_j 2^(d·j)·Xd_j + c.
    """

    rows: int
    n_digits: int
    c: int
    blocks: list[tuple[int, int]]
    block: Callable[[int], torch.Tensor]
    row_sums: Callable[[int], torch.Tensor]



def _is_raw(x: Patches, pw: PreparedMatrix) -> bool:
    """One digit each side, one K chunk: blocks come straight from one GEMM, uncorrected."""
    return x.n_digits == 1 and pw.raw


@dataclass(frozen=True, eq=False)
class _Products:
    """The library products of one row block: `gs[q]` is the GEMM of K chunk q, (nx·rows,
    nw·O), whose block (j, i) is Xd_j·Wd_iᵀ; `row_sums` is Σ_k X[l, k] when a correction needs
    it. `_combine` turns a row range of it into exact accumulators."""

    rows: int
    nx: int
    c_x: int
    gs: list[np.ndarray]
    row_sums: np.ndarray | None
    raw: bool


def _gemm_blocks(x: Patches, pw: PreparedMatrix, ws: Workspace | None = None
                 ) -> Iterator[tuple[int, int, _Products]]:
    """Yield (row0, row1, products) for every row block of X·Wᵀ (see `_combine`).

    Why every method is exact:
    * 'f32': as 'f64' with float32 and 2^24, per K chunk: `_f32_bounds` cuts K so that
      max|x|·Σ_{k in chunk}|W[o,k]| <= 2^24 for every output o, so every partial sum inside a
      chunk's GEMM is an exactly representable integer. The chunks' results (each at most 2^24)
      are summed in int64 (`_combine`). `kernels.f32_gemm_exact` refuses the path when float32
      products are demoted (TF32/bfloat16 settings); `_spot_check` checks every product.
    * 'f64': every product x·w and every partial sum of any subset of the K products of one
      output, in any order or blocking, with or without FMA, is an integer of magnitude at most
      max|x|·Σ_k|W[o,k]| <= pw.bound <= 2^53 (checked in `_choose_method`). Those integers are
      exactly representable in float64, so no IEEE operation rounds and the float64 GEMM equals
      the integer sum. (BLAS dgemm computes only products and sums of the given entries.)
    * 'i8': X and W are split into base-256 digits in [-128, 127] (`_digits`); all digit pairs
      come from one int8 x int8 -> int32 product of the stacked digits. Its partial sums are at
      most 2^14 per term times at most 2^16 terms (K is cut into chunks) = 2^30 < 2^31, so int32
      never wraps. The digit products are recombined in int64 (`_combine`):
          X·Wᵀ = Σ_ij 2^(8(i+j))·Xd_j·Wd_iᵀ + c_w·(Σ_k X[l,k] − K·c_x) + c_x·Σ_k W[o,k].
      int64 arithmetic is exact modulo 2^64 and the true result is below 2^62 in magnitude, so
      any wrap-around of intermediate terms cancels. `int8_gemm_available` guards against CPU
      kernels that saturate inside the int8 product; `_spot_check` against wrong kernels.
    * 'split': as 'i8' with 16-bit digits held in float64: digit products <= 2^30, chunks of
      2^22 terms, partial sums <= 2^52, exact by the 'f64' argument.
    * 'int64': an int64 matrix product, exact because every partial sum is below 2^62.
    """
    method = pw.method
    raw = _is_raw(x, pw)
    whole = pw.chunks == [(0, pw.kp)]
    for b, (r0, r1) in enumerate(x.blocks):
        rows = r1 - r0
        if pw.kp == 0:
            zero = np.zeros((rows, pw.o), dtype=np.int64)
            yield r0, r1, _Products(rows, 1, 0, [zero], None, True)
            continue
        xs = x.block(b)
        gs = []
        for q, (k0, k1) in enumerate(pw.chunks):
            out = _scratch(ws, f"gemm{q}", (xs.shape[0], pw.stacked.shape[0]),
                           _OUT_DTYPE[method])
            if whole:
                gs.append(_np(_mm(xs, pw.stacked, method, out)))
            else:
                gs.append(_np(_mm(xs[:, k0:k1].contiguous(), pw.stacked[:, k0:k1].contiguous(),
                                  method, out)))
        del xs
        sums = _np(x.row_sums(b)) if pw.c and not raw else None
        yield r0, r1, _Products(rows, x.n_digits, x.c, gs, sums, raw)


def _combine(pr: _Products, pw: PreparedMatrix, a: int, b: int, add_x_offset: bool = True,
             acc_buf: np.ndarray | None = None) -> np.ndarray:
    """Exact accumulators of rows [a, b) of a block: the raw GEMM result (int32 for 'i8',
    float64 holding exact integers for 'f64') when there is a single product, else int64.

    Digit products are summed by Horner's rule from the top weight 2^(d·(nx+nw-2)) down (one
    shift per weight, few passes). `add_x_offset=False` leaves out the input offset's correction
    c_x·Σ_k W[o, k] (a per-output constant the executor adds with the bias). `acc_buf` (rows,
    O) int64 receives the result's rows [a, b) when given.
    """
    if pr.raw:
        return pr.gs[0][a:b]
    o, nx, nw, rows = pw.o, pr.nx, pw.n_digits, pr.rows
    acc: np.ndarray | None = None
    for g in pr.gs:
        part: np.ndarray | None = None
        for t in range(nx + nw - 2, -1, -1):
            if part is not None:
                np.left_shift(part, pw.digit_bits, out=part)
            for j in range(max(0, t - nw + 1), min(nx, t + 1)):
                blk = g[j * rows + a:j * rows + b, (t - j) * o:(t - j + 1) * o]
                if blk.dtype.kind == "f":
                    blk = blk.astype(np.int64)  # exact: integers below 2^53
                if part is None:
                    if acc_buf is not None and acc is None:
                        part = acc_buf[a:b]
                        np.copyto(part, blk, casting="unsafe")  # exact integers
                    else:
                        part = blk.astype(np.int64)
                else:
                    part += blk
        assert part is not None
        if acc is None:
            acc = part
        else:
            acc += part
    assert acc is not None
    if pw.c:
        assert pr.row_sums is not None
        acc += (pr.row_sums[a:b] - pw.k * pr.c_x)[:, None] * pw.c
    if pr.c_x and add_x_offset:
        acc += _np(pw.rowsum)[None, :] * pr.c_x
    return acc


# Element-wise work on a block is split over threads by rows (numpy releases the GIL in its
# loops): one hand-over per block, not one thread barrier per pass.
_PAR_MIN_ELEMS = 1 << 18


def _row_parallel(rows: int, cols: int, fn: Callable[[int, int], int]) -> int:
    """Sum of fn(a, b) over a split of [0, rows) into one range per torch thread."""
    k = max(1, min(torch.get_num_threads(), (rows * cols) // _PAR_MIN_ELEMS, rows))
    if k == 1:
        return fn(0, rows)
    bounds = [rows * i // k for i in range(k + 1)]
    with ThreadPoolExecutor(max_workers=k - 1) as pool:
        futures = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, k)]
        total = fn(bounds[0], bounds[1])
        return total + sum(f.result() for f in futures)


def exact_gemm(x: Patches, pw: PreparedMatrix, ws: Workspace | None = None) -> torch.Tensor:
    """The whole exact product X·Wᵀ as int64 (L, O), on the method `pw` was prepared for.

    Public seam of the engine (with `prepare_matrix`, `Patches`, `Workspace` and
    `quant.patches.conv_patches` / `fc_patches`): the functional simulator computes its CALC
    products through it. With a workspace `ws` the scratch memory and the result come from
    it (the result is then valid until the next call with the same workspace)."""
    shape = (x.rows, pw.o)
    out = np.empty(shape, dtype=np.int64) if ws is None else ws.array("exact", shape, np.int64)
    for r0, r1, pr in _gemm_blocks(x, pw, ws):

        def fill(a: int, b: int, r0: int = r0, pr: _Products = pr) -> int:
            out[r0 + a:r0 + b] = _combine(pr, pw, a, b)  # int32 / exact float64 -> int64
            return 0

        _row_parallel(r1 - r0, pw.o, fill)
    return torch.from_numpy(out)


def input_digits(a: np.ndarray, pw: PreparedMatrix) -> tuple[list[np.ndarray], int]:
    """The input side's digits of integer array `a` for `pw`'s method (`pw.x_digits`), each
    of a's shape, and their offset c_x: a = Σ_j 2^(d·j)·digit_j + c_x; one-digit methods give
    [a], 0. For patch matrices built outside the engine (the functional simulator's), which
    then go to `exact_gemm` as `Patches` (digits stacked, lowest first, in `pw.np_dtype`)."""
    digit_bits, n = pw.x_digits
    return _digits(a, n, digit_bits) if n > 1 else ([a], 0)


def _x_digits(xt: torch.Tensor, pw: PreparedMatrix) -> tuple[torch.Tensor, int]:
    """The input side's digits (offset digits, `pw.x_digits`) stacked on a new first axis, in
    the GEMM dtype, and their offset c_x."""
    digit_bits, n = pw.x_digits
    dtype = _GEMM_DTYPE[pw.method]
    if n == 1:
        return xt.to(dtype).unsqueeze(0), 0
    ds, c = _digits(_np(xt), n, digit_bits)
    stacked = np.empty((n, *xt.shape), dtype=_NP_DTYPE[pw.method])
    for i, d in enumerate(ds):
        stacked[i] = d
    return torch.from_numpy(stacked), c

