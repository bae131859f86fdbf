"""The bit-exact reference executor: the project's oracle for the arithmetic contract.

Every quantized computation elsewhere (functional simulator, RTL) is tested against this module.
It computes exactly docs/arithmetic.md, step by step:

- `conv_acc`, `fc_acc`: contract step 1, the exact integer accumulators;
- `finish`: steps 2-4 (bias shift, optional ReLU, data shift with saturation);
- `maxpool_int`: step 5;
- `accumulator_bound`, `check_accumulator`: the per-layer accumulator-width proof;
- `execute`, `execute_layer`, `ReferenceExecutor`: a whole quantized model, layer by layer.

Why the accumulators stay exact on fast matrix kernels is proved at `_gemm_blocks`. Public
functions take and return numpy arrays; patch matrices and products run on torch's
multi-threaded kernels, the element-wise steps in numpy on the same memory.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir import (
    INPUT,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
)
from deepfpga.ir.layers import _window_out
from deepfpga.quant.fixedpoint import (
    FixedFormat,
    align_bias,
    count_saturated,
    shift_left_saturate,
    to_fixed,
)
from deepfpga.quant.qmodel import LayerFormats, QuantizedModel

Method = Literal["auto", "i8", "f64", "split", "int64"]
METHODS: tuple[str, ...] = ("auto", "i8", "f64", "split", "int64")

# float64 represents every integer of magnitude <= 2^53 exactly.
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
# A layer is computed in row blocks whose scratch memory (patch matrix, products, accumulators)
# is about this many bytes.
_BLOCK_BYTES = 96 << 20

_GEMM_DTYPE = {"i8": torch.int8, "split": torch.float64, "f64": torch.float64,
               "int64": torch.int64}
_NP_DTYPE = {"i8": np.int8, "split": np.float64, "f64": np.float64, "int64": np.int64}


class _Workspace:
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


def _scratch(ws: _Workspace | None, name: str, shape: tuple[int, ...], dtype: torch.dtype
             ) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype) if ws is None else ws.tensor(name, shape, dtype)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
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
# accumulator bound (contract step 1)
# --------------------------------------------------------------------------------------------
def _row_abs_sums(w2d: torch.Tensor) -> list[int]:
    """Σ_k |w[o, k]| per output o, as exact Python integers."""
    if w2d.shape[1] == 0:
        return [0] * int(w2d.shape[0])
    # |w| <= 2^63 would overflow; formats keep |w| <= 2^31 and rows are far below 2^31 entries.
    return [int(v) for v in w2d.abs().sum(dim=1).tolist()]


def accumulator_bound(w_int: np.ndarray, bias_int_aligned: np.ndarray | None,
                      data_bw: int) -> int:
    """Contract step 1: max over outputs o of Σ|w[o]|·2^(data_bw-1) + |bias[o]|.

    `w_int` has the output dimension first ((O, C, kh, kw) or (O, F)); `bias_int_aligned` is the
    bias already shifted to the accumulator's fractional length (or None). No partial or final
    sum of the layer, for any input in a `data_bw`-bit format, exceeds the returned value.
    """
    w = _int_tensor(w_int, "weights")
    if w.ndim < 1:
        raise ShapeError("weights need an output dimension")
    sums = _row_abs_sums(w.reshape(w.shape[0], -1))
    if bias_int_aligned is None:
        biases = [0] * len(sums)
    else:
        b = _int_tensor(bias_int_aligned, "bias").reshape(-1)
        if b.shape[0] != len(sums):
            raise ShapeError(f"bias has {b.shape[0]} entries for {len(sums)} outputs")
        biases = [abs(int(v)) for v in b.tolist()]
    scale = 1 << (int(data_bw) - 1)
    return max((s * scale + b for s, b in zip(sums, biases, strict=True)), default=0)


def check_accumulator(layer_name: str, bound: int, acc_bits: int) -> None:
    """Refuse a layer whose accumulator bound does not fit a signed `acc_bits`-bit register."""
    limit = (1 << (int(acc_bits) - 1)) - 1
    if bound > limit:
        raise InputError(
            f"layer {layer_name!r}: accumulator may reach {bound} (needs"
            f" {_bits_of_range(-bound, bound)} bits), more than the {acc_bits}-bit accumulator"
            f" holds (max {limit})"
        )


# --------------------------------------------------------------------------------------------
# exact integer matrix products
# --------------------------------------------------------------------------------------------
def int8_gemm_available() -> bool:
    """Whether torch._int_mm exists and sums int8 products exactly into int32 on this CPU.

    The extreme case is checked because some kernels (vpmaddubsw on pre-VNNI x86) saturate
    pairs of products at 16 bits; such a machine falls back to the float64 paths.
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


def _n_digits(method: str, bits: int) -> tuple[int, int]:
    """(digit bits, number of digits) of a `bits`-bit operand for a method."""
    if method == "i8":
        return 8, max(1, math.ceil(bits / 8))
    if method == "split":
        return _SPLIT_DIGIT_BITS, max(1, math.ceil(bits / _SPLIT_DIGIT_BITS))
    return 64, 1


def _wide(t: torch.Tensor) -> torch.Tensor:
    """A dtype in which |t| cannot overflow (abs(-128) does in int8)."""
    nxt = {torch.int8: torch.int16, torch.int16: torch.int32, torch.int32: torch.int64}
    return t.to(nxt.get(t.dtype, torch.int64))


@dataclass(frozen=True, eq=False)
class PreparedMatrix:
    """A weight matrix W (O, K) made ready for exact products by one method.

    `stacked` holds W's base-2^digit_bits digits one under the other, ((n_digits·O, kp), GEMM
    dtype, lowest digit first); `c` is the digit offset constant (0 for balanced digits),
    `rowsum[o]` = Σ_k W[o, k] and `row_abs[o]` = Σ_k |W[o, k]| (int64). Inputs must satisfy
    |x| <= x_absmax and fit x_bits two's-complement bits.
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

    @property
    def row_abs_max(self) -> int:
        return int(self.row_abs.max()) if self.o else 0

    @property
    def bound(self) -> int:
        """Largest |partial sum| for inputs with |x| <= x_absmax (before any bias)."""
        return self.x_absmax * self.row_abs_max

    @property
    def k_chunk(self) -> int:
        return {"i8": _I8_K_CHUNK, "split": _SPLIT_K_CHUNK}.get(self.method, max(self.kp, 1))

    @property
    def x_digits(self) -> tuple[int, int]:
        """(digit bits, digits) the input side is split into."""
        return _n_digits(self.method, self.x_bits)

    @property
    def x_offset(self) -> int:
        """The input side's digit offset c_x (its correction is c_x·rowsum[o] per output)."""
        return _digit_offset(self.x_digits[1], self.x_digits[0])


# Below this reduction length a multi-digit int8 product loses to one float64 product: the
# int64 recombination passes cost more than the float64 arithmetic (VGG16 conv1_1, K = 27).
_F64_MAX_K_MULTI_DIGIT = 128


def _choose_method(method: str, x_bits: int, w_bits: int, bound: int, i8_ok: bool,
                   k: int = 1 << 30) -> str:
    """The given method (checked to be exact here) or, for 'auto', the fastest exact one.

    'auto': int8 digit products while both operands have at most 16 bits (int8 GEMMs on
    AMX/VNNI beat a float64 GEMM, see BENCHMARKS.md) — except short reductions of operands
    needing several digits, which take one float64 product when the bound allows; else one
    float64 product if the bound allows it; else 16-bit digits in float64.
    """
    if method not in METHODS:
        raise InputError(f"unknown accumulation method {method!r} (known: {', '.join(METHODS)})")
    if bound >= ACC_INT64_LIMIT:
        raise InputError(
            f"accumulator bound {bound} reaches 2^62: beyond the int64 accumulator of the"
            " reference executor (and of any hardware accumulator)"
        )
    if method == "f64" and bound > F64_EXACT:
        raise InputError(f"float64 path is not exact here: accumulator bound {bound} > 2^53")
    if method == "i8" and not i8_ok:
        raise InputError("int8 path unavailable: torch._int_mm missing or not exact on this CPU")
    if method != "auto":
        return method
    if i8_ok and x_bits <= 16 and w_bits <= 16:
        multi = x_bits > 8 or w_bits > 8
        if multi and k <= _F64_MAX_K_MULTI_DIGIT and bound <= F64_EXACT:
            return "f64"
        return "i8"
    return "f64" if bound <= F64_EXACT else "split"


def prepare_matrix(w2d: np.ndarray | torch.Tensor, *, x_bits: int, x_absmax: int | None = None,
                   method: Method = "auto", i8_ok: bool | None = None) -> PreparedMatrix:
    """Prepare W (O, K) for exact products with inputs of at most `x_bits` two's-complement bits
    and magnitude at most `x_absmax` (default 2^(x_bits-1))."""
    w = _int_tensor(w2d, "weights", keep_dtype=True)
    if w.ndim != 2:
        raise ShapeError(f"weight matrix must be 2-D, got shape {tuple(w.shape)}")
    o, k = int(w.shape[0]), int(w.shape[1])
    x_absmax = (1 << (x_bits - 1)) if x_absmax is None else int(x_absmax)
    if k:
        row_abs = _wide(w).abs().sum(dim=1, dtype=torch.int64)
        rowsum = w.sum(dim=1, dtype=torch.int64)
    else:
        row_abs = rowsum = torch.zeros(o, dtype=torch.int64)
    row_abs_max = int(row_abs.max()) if o else 0
    if i8_ok is None:
        i8_ok = method in ("auto", "i8") and int8_gemm_available()
    lo, hi = _range_of(w)
    w_bits = _bits_of_range(lo, hi)
    method = _choose_method(method, x_bits, w_bits, x_absmax * row_abs_max, i8_ok, k)
    digit_bits, n = _n_digits(method, w_bits)
    # Balanced digits need no per-row correction; their top digit can overflow for weights
    # near the top of the range, and then offset digits (whose correction needs Σ_k X[l, k])
    # are used instead.
    wn = _np(w)
    ds, c = _digits(wn, n, digit_bits, balanced=True)
    half = 1 << (digit_bits - 1)
    if n > 1 and not (-half <= int(ds[-1].min()) and int(ds[-1].max()) < half):
        ds, c = _digits(wn, n, digit_bits)
    # torch._int_mm returns wrong sums for K = 1 (torch 2.13, found by these tests): int8
    # operands get zero columns up to a multiple of 4; zeros add nothing to any product.
    kp = -(-k // 4) * 4 if method == "i8" else k
    stacked = np.zeros((n * o, kp), dtype=_NP_DTYPE[method])
    for i, d in enumerate(ds):
        stacked[i * o:(i + 1) * o, :k] = d
    return PreparedMatrix(method, o, k, kp, digit_bits, n, torch.from_numpy(stacked), c, rowsum,
                          row_abs, x_bits, x_absmax)


@dataclass(frozen=True, eq=False)
class _Patches:
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


def _mm(a: torch.Tensor, w: torch.Tensor, method: str, out: torch.Tensor) -> torch.Tensor:
    """a (rows, K) times w (O, K) transposed, in the method's dtype, into `out` (rows, O)."""
    if method == "i8":
        # W as a column-major (K, O) view: the layout oneDNN's int8 kernel takes without a copy.
        g = torch._int_mm(a, w.t(), out=out)
        _spot_check(a, w, g)
        return g
    return torch.matmul(a, w.t(), out=out)


def _spot_check(a: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> None:
    """Recompute a few entries of an int8 library product exactly (first/middle/last rows and
    columns, negligible cost): a kernel that gets a whole shape wrong is caught, never
    silently trusted."""
    if g.numel() == 0:
        return
    rows = sorted({0, a.shape[0] // 2, a.shape[0] - 1})
    cols = sorted({0, w.shape[0] // 2, w.shape[0] - 1})
    # numpy: a tiny single-threaded product (torch's int64 matmul is slow and threaded)
    exact = _np(a)[rows].astype(np.int64) @ _np(w)[cols].astype(np.int64).T
    if not np.array_equal(_np(g)[rows][:, cols], exact):
        raise RuntimeError(
            f"torch._int_mm returned wrong sums for a {tuple(a.shape)} x {tuple(w.shape)}"
            " int8 product on this machine; run with method='f64' and report it"
        )


def _is_raw(x: _Patches, pw: PreparedMatrix) -> bool:
    """One digit each side, one K chunk: blocks come straight from one GEMM, uncorrected."""
    return x.n_digits == 1 and pw.n_digits == 1 and pw.kp <= pw.k_chunk


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


def _gemm_blocks(x: _Patches, pw: PreparedMatrix, ws: _Workspace | None = None
                 ) -> Iterator[tuple[int, int, _Products]]:
    """Yield (row0, row1, products) for every row block of X·Wᵀ (see `_combine`).

    Why every method is exact:
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
    method, chunk = pw.method, pw.k_chunk
    raw = _is_raw(x, pw)
    for b, (r0, r1) in enumerate(x.blocks):
        rows = r1 - r0
        if pw.kp == 0:
            zero = np.zeros((rows, pw.o), dtype=np.int64)
            yield r0, r1, _Products(rows, 1, 0, [zero], None, True)
            continue
        xs = x.block(b)
        gs = []
        gdt = torch.int32 if method == "i8" else _GEMM_DTYPE[method]
        for q, k0 in enumerate(range(0, pw.kp, chunk)):
            k1 = min(pw.kp, k0 + chunk)
            out = _scratch(ws, f"gemm{q}", (xs.shape[0], pw.stacked.shape[0]), gdt)
            if (k0, k1) == (0, pw.kp):
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


def _gemm(x: _Patches, pw: PreparedMatrix) -> torch.Tensor:
    """The whole exact product X·Wᵀ as int64 (L, O)."""
    out = np.empty((x.rows, pw.o), dtype=np.int64)
    for r0, r1, pr in _gemm_blocks(x, pw):

        def fill(a: int, b: int, r0: int = r0, pr: _Products = pr) -> int:
            out[r0 + a:r0 + b] = _combine(pr, pw, a, b)  # int32 / exact float64 -> int64
            return 0

        _row_parallel(r1 - r0, pw.o, fill)
    return torch.from_numpy(out)


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


def _check_x_fits(xt: torch.Tensor, pw: PreparedMatrix, what: str) -> None:
    lo, hi = _range_of(xt)
    if max(-lo, hi) > pw.x_absmax or _bits_of_range(lo, hi) > pw.x_bits:
        raise InputError(
            f"{what}: input values in [{lo}, {hi}] exceed the range the weights were prepared"
            f" for ({pw.x_bits} bits, magnitude {pw.x_absmax})"
        )


def _block_rows(pw: PreparedMatrix, nx: int) -> int:
    """Rows per block so that a block's scratch memory (patch digits, library products, int64
    accumulators) stays within about _BLOCK_BYTES."""
    itemsize = torch.empty((), dtype=_GEMM_DTYPE[pw.method]).element_size()
    per_row = nx * pw.kp * itemsize + nx * pw.n_digits * pw.o * max(itemsize, 4)
    if nx * pw.n_digits > 1:
        per_row += 8 * pw.o
    return max(1, _BLOCK_BYTES // max(1, per_row))


def _fc_patches(xt: torch.Tensor, pw: PreparedMatrix, check: bool, what: str) -> _Patches:
    """X = the input batch itself. `check`: verify the values fit what pw was prepared for."""
    if xt.ndim != 2 or xt.shape[1] != pw.k:
        raise ShapeError(f"{what}: expected shape (N, {pw.k}), got {tuple(xt.shape)}")
    if check:
        _check_x_fits(xt, pw, what)
    digits, c = _x_digits(xt, pw)  # (n_x, N, K)
    if pw.kp != pw.k:
        digits = F.pad(digits, (0, pw.kp - pw.k))
    nx, n = int(digits.shape[0]), int(xt.shape[0])
    step = _block_rows(pw, nx)
    blocks = [(r, min(n, r + step)) for r in range(0, n, step)]
    return _Patches(
        rows=n, n_digits=nx, c=c, blocks=blocks,
        block=lambda b: digits[:, blocks[b][0]:blocks[b][1]].reshape(-1, pw.kp).contiguous(),
        row_sums=lambda b: xt[blocks[b][0]:blocks[b][1]].sum(dim=1, dtype=torch.int64),
    )


def _conv_patches(xt: torch.Tensor, pw: PreparedMatrix, kernel: tuple[int, int],
                  stride: tuple[int, int], padding: tuple[int, int], check: bool,
                  what: str, ws: _Workspace | None = None
                  ) -> tuple[_Patches, tuple[int, int, int]]:
    """The patch matrix of a convolution, and the output geometry (N, Ho, Wo).

    X has one row per output pixel (n, y, x) and K = kh·kw·C columns in (ky, kx, c) order (the
    weights' columns are put in the same order by `_conv_matrix`). Rows are built block by block
    from the zero-padded map in (N, H, W, C) layout, never all at once.
    """
    if xt.ndim != 4:
        raise ShapeError(f"{what}: expected (N, C, H, W), got shape {tuple(xt.shape)}")
    n, c_x, h, w = (int(d) for d in xt.shape)
    (kh, kw), (sh, sw), (ph, pw_) = kernel, stride, padding
    c_in = _conv_channels(c_x, kh, kw)
    if kh * kw * c_in != pw.k:
        raise ShapeError(f"{what}: {c_x} channels do not fit weights with K = {pw.k}")
    ho, wo = _window_out(h, kh, sh, ph), _window_out(w, kw, sw, pw_)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"{what}: kernel {kh}x{kw} larger than padded input {h}x{w}")
    if check:
        _check_x_fits(xt, pw, what)
    # Zero padding pads with the integer 0 (contract step 1), before the digit split; so do the
    # zero channels that make K a multiple of 4 (see `_conv_channels`).
    nhwc = xt.permute(0, 2, 3, 1)
    xp = F.pad(nhwc, (0, c_in - c_x, pw_, pw_, ph, ph)) if (ph or pw_ or c_in > c_x) else nhwc
    hp, wp = h + 2 * ph, w + 2 * pw_
    digits, c = _x_digits(xp, pw)
    digits = digits.contiguous()  # (n_x, N, Hp, Wp, C)
    nx = int(digits.shape[0])
    # Blocks are whole images when one fits the budget (few, large products), else row bands
    # of one image. A span is (first image, images, first output row, rows).
    per_block = _block_rows(pw, nx)
    if ho * wo <= per_block:
        k_img = per_block // (ho * wo)
        spans = [(i, min(k_img, n - i), 0, ho) for i in range(0, n, k_img)]
    else:
        rows_y = max(1, per_block // wo)
        spans = [(i, 1, y0, min(rows_y, ho - y0)) for i in range(n) for y0 in range(0, ho, rows_y)]
    blocks = [((i * ho + y0) * wo, ((i + ni - 1) * ho + y0 + ny) * wo) for i, ni, y0, ny in spans]
    img, row = hp * wp * c_in, wp * c_in
    dig = n * img

    def block(b: int) -> torch.Tensor:
        i, ni, y0, ny = spans[b]
        view = digits.as_strided((nx, ni, ny, wo, kh, kw, c_in),
                                 (dig, img, sh * row, sw * c_in, row, c_in, 1),
                                 digits.storage_offset() + i * img + y0 * sh * row)
        # a copy, never a view: reshape may give overlapping rows (stride-1 windows)
        out = _scratch(ws, "patches", (nx * ni * ny * wo, pw.k), digits.dtype)
        out.view(view.shape).copy_(view)
        return out

    sums: list[torch.Tensor] = []

    def row_sums(b: int) -> torch.Tensor:
        if not sums:  # channel sums of the padded map, then window sums: Σ_k X[l, k]
            s = xp.sum(dim=3, dtype=torch.int64).contiguous()
            win = s.as_strided((n, ho, wo, kh, kw), (hp * wp, sh * wp, sw, wp, 1))
            sums.append(win.sum(dim=(3, 4)).reshape(-1))
        r0, r1 = blocks[b]
        return sums[0][r0:r1]

    patches = _Patches(n * ho * wo, nx, c, blocks, block, row_sums)
    return patches, (n, ho, wo)


def _conv_channels(c: int, kh: int, kw: int) -> int:
    """Channels after zero padding to make K = kh·kw·C a multiple of 4 (the int8 kernel's
    requirement, see `prepare_matrix`); zero channels add nothing to any sum."""
    while (kh * kw * c) % 4:
        c += 1
    return c


def _conv_matrix(w: torch.Tensor) -> torch.Tensor:
    """(O, C, kh, kw) -> (O, kh·kw·C'): the column order (ky, kx, c) of the patch matrix, with
    zero channels up to C' = `_conv_channels`."""
    o, c, kh, kw = (int(d) for d in w.shape)
    cp = _conv_channels(c, kh, kw)
    m = w.permute(0, 2, 3, 1)
    if cp > c:
        m = F.pad(m, (0, cp - c))
    return m.reshape(o, -1)


def _conv_acc_t(xt: torch.Tensor, pw: PreparedMatrix, kernel: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int],
                what: str = "conv input") -> torch.Tensor:
    """Exact conv accumulators (N, O, Ho, Wo), int64 in channels-last memory."""
    patches, (n, ho, wo) = _conv_patches(xt, pw, kernel, stride, padding, True, what)
    return _gemm(patches, pw).reshape(n, ho, wo, pw.o).permute(0, 3, 1, 2)


def _fc_acc_t(xt: torch.Tensor, pw: PreparedMatrix, what: str = "fc input") -> torch.Tensor:
    return _gemm(_fc_patches(xt, pw, True, what), pw)


def conv_acc(x: np.ndarray, w: np.ndarray, stride: int | Sequence[int] = 1,
             padding: int | Sequence[int] = 0, *, method: Method = "auto") -> np.ndarray:
    """Contract step 1 for a convolution: exact int64 accumulators (N, O, Ho, Wo).

    `x` (N, C, H, W) and `w` (O, C, kh, kw) are integer arrays; zero padding pads with 0. The
    method ('auto' picks the fastest exact one for the actual operand ranges; 'i8', 'f64',
    'split', 'int64' force one and are refused where they would not be exact) never changes the
    result, only the speed.
    """
    xt = _int_tensor(x, "conv input", keep_dtype=True)
    wt = _int_tensor(w, "conv weights", keep_dtype=True)
    if wt.ndim != 4:
        raise ShapeError(f"conv weights: expected (O, C, kh, kw), got shape {tuple(wt.shape)}")
    if xt.ndim != 4 or xt.shape[1] != wt.shape[1]:
        raise ShapeError(
            f"conv input: expected (N, {wt.shape[1]}, H, W), got shape {tuple(xt.shape)}"
        )
    lo, hi = _range_of(xt)
    pw = prepare_matrix(_conv_matrix(wt), x_bits=_bits_of_range(lo, hi),
                        x_absmax=max(-lo, hi), method=method)
    acc = _conv_acc_t(xt, pw, (int(wt.shape[2]), int(wt.shape[3])), _pair(stride),
                      _pair(padding))
    return np.ascontiguousarray(_np(acc))


def fc_acc(x: np.ndarray, w: np.ndarray, *, method: Method = "auto") -> np.ndarray:
    """Contract step 1 for a fully connected layer: exact int64 accumulators (N, O) for integer
    `x` (N, F) and `w` (O, F)."""
    xt = _int_tensor(x, "fc input", keep_dtype=True)
    wt = _int_tensor(w, "fc weights", keep_dtype=True)
    if wt.ndim != 2 or xt.ndim != 2 or xt.shape[1] != wt.shape[1]:
        raise ShapeError(
            f"fc: input {tuple(xt.shape)} and weights {tuple(wt.shape)} do not fit"
            " (expected (N, F) and (O, F))"
        )
    lo, hi = _range_of(xt)
    pw = prepare_matrix(wt, x_bits=_bits_of_range(lo, hi), x_absmax=max(-lo, hi), method=method)
    return _np(_fc_acc_t(xt, pw))


# --------------------------------------------------------------------------------------------
# steps 2-5
# --------------------------------------------------------------------------------------------
def _round_const(s: int) -> int:
    """The rounding constant 2^(s-1) of a right shift by s (0 when there is none)."""
    return 1 << (s - 1) if 0 < s < 63 else 0


def _finish_rows(acc: np.ndarray, bias_round: np.ndarray | None, s: int, out: FixedFormat,
                 relu: bool, count_negative: bool, dest: np.ndarray) -> int:
    """Contract steps 2-4 on accumulators with the output channel last, written into `dest`.

    `acc` (owned, modified) is int32 or int64 — int32 only when |acc + bias| + 2^(s-1) < 2^31 —
    or float64 holding exact integers; |acc + bias| < 2^62. `bias_round` is the bias aligned to
    the accumulator plus the rounding constant `_round_const(s)` (None: no bias). ReLU is applied
    as the lower clamp after the shift: shift and rounding are monotone and map acc <= 0 to
    values <= 0, so this equals ReLU before the shift. Returns the number of saturated values
    (`count_negative=False`: only those clipped at qmax, as after a fused ReLU).
    """
    if acc.dtype.kind == "f":
        acc = acc.astype(np.int64)
    if acc.size == 0:
        return 0
    if s < 0:
        acc = acc.astype(np.int64, copy=False)
        if bias_round is not None:
            acc += bias_round
        if relu:
            np.maximum(acc, 0, out=acc)
        y, n_over, n_under = shift_left_saturate(acc, -s, out)
        dest[...] = y
        return n_over + (n_under if count_negative and not relu else 0)
    if bias_round is not None:
        acc += bias_round.astype(acc.dtype)
    elif s > 0:
        acc += _round_const(s)
    if s >= 63:
        acc[...] = 0  # |acc| < 2^62 <= 2^(s-1): (acc + 2^(s-1)) >> s is 0
    elif s > 0:
        np.right_shift(acc, s, out=acc)  # arithmetic shift: floor((acc + 2^(s-1)) / 2^s)
    lower = 0 if relu else out.qmin
    mx = int(acc.max())
    mn = int(acc.min()) if not relu else 0  # with a ReLU the clamp below always runs
    n = int(np.count_nonzero(acc > out.qmax)) if mx > out.qmax else 0
    if count_negative and not relu and mn < out.qmin:
        n += int(np.count_nonzero(acc < out.qmin))
    if relu or mn < lower or mx > out.qmax:
        np.clip(acc, lower, out.qmax, out=acc)
    dest[...] = acc
    return n


def _bias_round(bias_aligned: np.ndarray | None, s: int) -> np.ndarray | None:
    if bias_aligned is None:
        return None
    return bias_aligned + _round_const(s) if s >= 0 else bias_aligned


def _requantize_channels(acc: torch.Tensor, bias_aligned: np.ndarray | None, fl_acc: int,
                         out: FixedFormat, relu: bool, count_negative: bool = True
                         ) -> tuple[torch.Tensor, int]:
    """Steps 2-4 on int64 accumulators with the channel on axis 1 ((N, O) or (N, O, H, W))."""
    s = fl_acc - out.fl
    rows = acc.movedim(1, -1)
    shape = rows.shape
    flat = np.array(_np(rows.reshape(-1, shape[-1])), dtype=np.int64)  # an owned copy
    dest = np.empty_like(flat)
    n = _finish_rows(flat, _bias_round(bias_aligned, s), s, out, relu, count_negative, dest)
    return torch.from_numpy(dest).reshape(shape).movedim(-1, 1), n


def finish(acc: np.ndarray, bias: np.ndarray | None, fmts: LayerFormats,
           relu: bool) -> tuple[np.ndarray, int]:
    """Contract steps 2-4: `acc` at fl_in + fl_w, plus `bias` (in fmts.bias, aligned exactly),
    optional ReLU, data shift to fmts.output (round half up) and saturation.

    `acc` has the output channel on axis 1 ((N, O) or (N, O, H, W)). Returns the integers of the
    output format (int64) and how many values saturated.
    """
    if fmts.weight is None:
        raise InputError("finish needs the layer's weight format (fl_acc = fl_in + fl_w)")
    a = _int_tensor(acc, "accumulator")
    if a.ndim < 2:
        raise ShapeError(f"accumulator needs a batch and a channel axis, got {tuple(a.shape)}")
    b = None
    if bias is not None:
        if fmts.bias is None:
            raise InputError("bias given but the layer has no bias format")
        braw = _int_tensor(bias, "bias").reshape(-1)
        if braw.shape[0] != a.shape[1]:
            raise ShapeError(f"bias has {braw.shape[0]} entries for {a.shape[1]} channels")
        b = align_bias(_np(braw), fmts.bias.fl, fmts.fl_acc)
    lo, hi = _range_of(a)
    big = max(-lo, hi) + (int(np.abs(b).max()) if b is not None and b.size else 0)
    if big >= ACC_INT64_LIMIT:
        raise InputError(f"accumulator magnitude {big} reaches 2^62, beyond any accumulator")
    y, n = _requantize_channels(a, b, fmts.fl_acc, fmts.output, relu)
    return np.ascontiguousarray(_np(y)), n


def _maxpool_t(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int], ceil_mode: bool, pad_value: int) -> torch.Tensor:
    if x.ndim != 4:
        raise ShapeError(f"max pooling needs (N, C, H, W), got shape {tuple(x.shape)}")
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    h, w = int(x.shape[2]), int(x.shape[3])
    ho, wo = _window_out(h, kh, sh, ph, ceil_mode), _window_out(w, kw, sw, pw, ceil_mode)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"max pooling window {kh}x{kw} larger than input {h}x{w}")
    # Pad explicitly (left/top by the padding, right/bottom as far as the last window reaches),
    # so the result does not depend on how a library pads: padding never wins a window because
    # every window holds at least one real value (IR: padding <= kernel/2, windows start inside).
    # The maximum is taken over the kh·kw shifted views of the (N, H, W, C) map, which works for
    # every integer type and memory layout (torch's int8 channels-last max_pool2d does not).
    pb = max(0, (ho - 1) * sh + kh - h - ph)
    pr = max(0, (wo - 1) * sw + kw - w - pw)
    xp = x.permute(0, 2, 3, 1)
    if ph or pw or pb or pr:
        xp = F.pad(xp, (0, 0, pw, pr, ph, pb), value=pad_value)
    y: torch.Tensor | None = None
    for ky in range(kh):
        for kx in range(kw):
            view = xp[:, ky:ky + (ho - 1) * sh + 1:sh, kx:kx + (wo - 1) * sw + 1:sw, :]
            y = view.clone() if y is None else torch.maximum(y, view, out=y)
    assert y is not None
    return y.permute(0, 3, 1, 2)


def maxpool_int(y: np.ndarray, kernel: int | Sequence[int], stride: int | Sequence[int],
                padding: int | Sequence[int] = 0, ceil_mode: bool = False, *,
                qmin: int | None = None) -> np.ndarray:
    """Contract step 5: window maxima of integer maps (N, C, H, W), torch's window geometry.

    Padding uses `qmin` (the format's smallest value; default the smallest int64), so it never
    wins over a real value.
    """
    t = _int_tensor(y, "max pooling input")
    pad_value = -(1 << 63) if qmin is None else int(qmin)
    out = _maxpool_t(t, _pair(kernel), _pair(stride), _pair(padding), bool(ceil_mode), pad_value)
    return np.ascontiguousarray(_np(out))


# --------------------------------------------------------------------------------------------
# the executor
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutionResult:
    """What `execute` returns.

    `outputs[name]`: each graph output as int64 integers in its format (the float64 result for
    a host-only output layer, e.g. a final softmax); `output`: the only output. `layers[name]`:
    the kept layer outputs, likewise. `saturations[name]`: values clipped per layer (and under
    INPUT when the input was quantized here). `formats`: each layer's LayerFormats;
    `input_format`: the graph input's format; `float_outputs`: layers whose result is float.
    """

    outputs: Mapping[str, np.ndarray]
    layers: Mapping[str, np.ndarray]
    saturations: Mapping[str, int]
    formats: Mapping[str, LayerFormats]
    input_format: FixedFormat
    float_outputs: frozenset[str] = field(default_factory=frozenset)

    @property
    def output(self) -> np.ndarray:
        if len(self.outputs) != 1:
            raise InputError(
                f"graph has {len(self.outputs)} outputs ({', '.join(self.outputs)}): use .outputs"
            )
        return next(iter(self.outputs.values()))

    @property
    def total_saturations(self) -> int:
        return int(sum(self.saturations.values()))


_TORCH_INT = {np.int8: torch.int8, np.int16: torch.int16, np.int32: torch.int32}


def _tdtype(fmt: FixedFormat) -> torch.dtype:
    """Feature maps live in the smallest integer type of their format."""
    return _TORCH_INT[fmt.dtype]


@dataclass(frozen=True, eq=False)
class _WeightedLayer:
    pw: PreparedMatrix
    bias: np.ndarray | None  # aligned to fl_acc, int64 (O,)
    bias_round: np.ndarray | None  # bias (+ input digit offset term) + rounding constant
    fl_acc: int
    shift: int  # s = fl_acc - fl_out
    bound: int  # contract step 1 bound, bias included
    int32_ok: bool  # raw int8 GEMM results can be finished in int32


def _relu_follows(qmodel: QuantizedModel, name: str) -> bool:
    """Whether the accelerator fuses a ReLU into this layer: its only reader is a ReLU and the
    pre-ReLU value is not a graph output. Saturations are then counted after the ReLU."""
    g = qmodel.graph
    readers = g.consumers(name)
    return len(readers) == 1 and isinstance(readers[0], ReLU) and name not in g.outputs


def _host_float(layer: Layer, xs: list[torch.Tensor], fls: list[int]) -> torch.Tensor:
    """A host-only layer in float64 on dequantized inputs, with the float executor's semantics
    (deepfpga.ir.float_exec.apply_layer)."""
    from deepfpga.ir.float_exec import apply_layer

    vals = [torch.ldexp(x.to(torch.float64), torch.tensor(-fl, dtype=torch.float64))
            for x, fl in zip(xs, fls, strict=True)]
    with torch.inference_mode():
        return apply_layer(layer, {}, vals)


def _check_batch(x: np.ndarray | torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise ShapeError(
            f"{what}: expected a batch of shape (N, {', '.join(map(str, shape))}),"
            f" got {tuple(x.shape)}"
        )


def _check_range(t: torch.Tensor, fmt: FixedFormat, what: str) -> None:
    lo, hi = _range_of(t)
    if lo < fmt.qmin or hi > fmt.qmax:
        raise InputError(
            f"{what}: integers in [{lo}, {hi}] lie outside the format {fmt}"
            f" [{fmt.qmin}, {fmt.qmax}]"
        )


def quantize_input(qmodel: QuantizedModel, x_float: np.ndarray) -> tuple[np.ndarray, int]:
    """Quantize a float batch (N, *input_shape) to the model's input format (round half even,
    saturate). Returns the int64 integers and how many values saturated; NaN/inf are refused."""
    x = np.asarray(x_float)
    if x.dtype.kind not in "fiu":
        raise InputError(f"input: numeric array expected, got dtype {x.dtype}")
    _check_batch(x, qmodel.graph.input_shape, "input")
    fmt = qmodel.input_format
    return to_fixed(x, fmt, "input"), count_saturated(x, fmt)


def _prepare_layer(q: QuantizedModel, layer: Conv2d | Linear, method: Method,
                   i8_ok: bool) -> _WeightedLayer:
    f = q.formats[layer.name]
    arrays = q.weights[layer.name]
    assert f.weight is not None  # QuantizedModel.validate guarantees it
    w = torch.from_numpy(np.asarray(arrays["weight"]).astype(f.weight.dtype))
    w2d = _conv_matrix(w) if isinstance(layer, Conv2d) else w
    bias = None
    if "bias" in arrays:
        assert f.bias is not None
        try:
            bias = align_bias(arrays["bias"], f.bias.fl, f.fl_acc)
        except InputError as e:
            raise InputError(f"layer {layer.name!r}: {e}") from None
    try:
        pw = prepare_matrix(w2d, x_bits=f.input.bw, method=method, i8_ok=i8_ok)
    except InputError as e:
        raise InputError(f"layer {layer.name!r}: {e}") from None
    scale = 1 << (f.input.bw - 1)
    babs = [0] * pw.o if bias is None else [abs(v) for v in bias.tolist()]
    bound = max((a * scale + b for a, b in zip(pw.row_abs.tolist(), babs, strict=True)),
                default=0)
    if bound >= ACC_INT64_LIMIT:
        raise InputError(
            f"layer {layer.name!r}: accumulator bound {bound} reaches 2^62; no accumulator holds"
            " it (narrower weights or data are needed)"
        )
    s = f.fl_acc - f.output.fl
    int32_ok = (pw.method == "i8" and pw.n_digits == 1 and pw.x_digits[1] == 1
                and pw.kp <= pw.k_chunk and bound + _round_const(s) < (1 << 31) and s < 32)
    # The input digits' offset c_x contributes c_x·Σ_k W[o, k] to every output o: added once
    # here, with the bias (exact in int64, see _gemm_blocks).
    total = bias
    if pw.x_offset:
        total = _np(pw.rowsum) * pw.x_offset + (0 if bias is None else bias)
    return _WeightedLayer(pw, bias, _bias_round(total, s), f.fl_acc, s, bound, int32_ok)


def _keep_set(keep: bool | str | Iterable[str], g: Graph) -> set[str]:
    if keep is False or keep is None:
        return set()
    if keep is True or keep == "all":
        return {lay.name for lay in g.layers}
    if isinstance(keep, str):
        raise InputError(f"keep must be False, 'all' or a set of layer names, got {keep!r}")
    names = set(keep)
    unknown = sorted(names - {lay.name for lay in g.layers} - {INPUT})
    if unknown:
        raise InputError(f"keep names unknown layers: {unknown}")
    return names


def _public(t: torch.Tensor) -> np.ndarray:
    """What callers see: int64 integers (or float64 host results) in NCHW order."""
    if t.is_floating_point():
        return _np(t.to(torch.float64))
    return np.ascontiguousarray(_np(t.to(torch.int64)))


@dataclass(frozen=True, eq=False)
class ReferenceExecutor:
    """A quantized model with its weights prepared once for fast exact products.

    Build with `ReferenceExecutor.build(qmodel)`; `run` executes batches, `run_layer` one layer.
    """

    qmodel: QuantizedModel
    prepared: Mapping[str, _WeightedLayer]
    relu_fused: frozenset[str]
    # Scratch memory kept between runs (about the largest layer's patch matrix and products);
    # a run that finds it in use by another thread takes a private one.
    _ws: _Workspace = field(default_factory=_Workspace, repr=False)
    _ws_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def _workspace(self) -> Iterator[_Workspace]:
        if self._ws_lock.acquire(blocking=False):
            try:
                yield self._ws
            finally:
                self._ws_lock.release()
        else:
            yield _Workspace()

    @staticmethod
    def build(qmodel: QuantizedModel, *, method: Method = "auto",
              layers: Iterable[str] | None = None) -> ReferenceExecutor:
        """Prepare the weighted layers (all, or only `layers`); `method` as for `conv_acc`."""
        wanted = None if layers is None else set(layers)
        i8_ok = method in ("auto", "i8") and int8_gemm_available()
        prepared: dict[str, _WeightedLayer] = {}
        for layer in qmodel.graph.layers:
            if isinstance(layer, BatchNorm2d):
                raise InputError(
                    f"layer {layer.name!r}: batch norm must be folded into the preceding conv"
                    " before quantization"
                )
            if not isinstance(layer, Conv2d | Linear) or (wanted and layer.name not in wanted):
                continue
            prepared[layer.name] = _prepare_layer(qmodel, layer, method, i8_ok)
        fused = frozenset(
            layer.name for layer in qmodel.graph.layers
            if isinstance(layer, Conv2d | Linear) and _relu_follows(qmodel, layer.name)
        )
        return ReferenceExecutor(qmodel, MappingProxyType(prepared), fused)

    def methods(self) -> dict[str, str]:
        """The accumulation method chosen for each weighted layer."""
        return {name: p.pw.method for name, p in self.prepared.items()}

    # -- one layer --------------------------------------------------------------------------
    def _weighted(self, layer: Conv2d | Linear, x: torch.Tensor, relu: bool,
                  count_negative: bool, ws: _Workspace | None) -> tuple[torch.Tensor, int]:
        p = self.prepared.get(layer.name)
        if p is None:
            raise InputError(f"layer {layer.name!r} was not prepared")
        f = self.qmodel.formats[layer.name]
        what = f"input of layer {layer.name!r}"
        if isinstance(layer, Conv2d):
            patches, (n, ho, wo) = _conv_patches(x, p.pw, layer.kernel, layer.stride,
                                                 layer.padding, False, what, ws)
        else:
            patches = _fc_patches(x, p.pw, False, what)
        dest = torch.empty((patches.rows, p.pw.o), dtype=_tdtype(f.output))
        dn = _np(dest)
        nsat = 0
        for r0, r1, pr in _gemm_blocks(patches, p.pw, ws):
            acc_buf = None if pr.raw or ws is None else ws.array(
                "acc", (r1 - r0, p.pw.o), np.int64)

            def tail(a: int, b: int, r0: int = r0, pr: _Products = pr,
                     acc_buf: np.ndarray | None = acc_buf) -> int:
                # the input digits' offset correction is a per-output constant, in bias_round
                acc = _combine(pr, p.pw, a, b, add_x_offset=False, acc_buf=acc_buf)
                if acc.dtype == np.int32 and not p.int32_ok:
                    acc = acc.astype(np.int64)
                return _finish_rows(acc, p.bias_round, p.shift, f.output, relu, count_negative,
                                    dn[r0 + a:r0 + b])

            nsat += _row_parallel(r1 - r0, p.pw.o, tail)
        if isinstance(layer, Conv2d):
            return dest.reshape(n, ho, wo, p.pw.o).permute(0, 3, 1, 2), nsat
        return dest, nsat

    def _layer(self, layer: Layer, xs: list[torch.Tensor], owned: bool, fuse_relu: bool = False,
               ws: _Workspace | None = None) -> tuple[torch.Tensor, int]:
        """A layer's integer output (in its format's dtype) and saturation count. `owned`:
        xs[0] may be overwritten. `fuse_relu`: a conv/FC returns its ReLU'd output directly."""
        q = self.qmodel
        f = q.formats[layer.name]
        if isinstance(layer, Conv2d | Linear):
            return self._weighted(layer, xs[0], relu=fuse_relu,
                                  count_negative=layer.name not in self.relu_fused, ws=ws)
        if isinstance(layer, ReLU):
            return (xs[0].clamp_min_(0) if owned else xs[0].clamp_min(0)), 0
        if isinstance(layer, MaxPool2d):
            return _maxpool_t(xs[0], layer.kernel, layer.stride, layer.padding,
                              layer.ceil_mode, f.input.qmin), 0
        if isinstance(layer, Flatten):
            return xs[0].reshape(xs[0].shape[0], -1), 0
        if isinstance(layer, Dropout):
            return xs[0], 0
        if layer.host_only:
            yf = _np(_host_float(layer, xs, [q.format_of(src).fl for src in layer.inputs]))
            y = to_fixed(yf, f.output, f"output of layer {layer.name!r}")
            return torch.from_numpy(y).to(_tdtype(f.output)), count_saturated(yf, f.output)
        raise InputError(f"layer {layer.name!r}: kind {layer.kind!r} has no fixed-point semantics")

    def run_layer(self, name: str, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
        """One layer on given integer batches (one per producer, each in its producer's format).

        Returns the layer's int64 output (pre-ReLU for a conv/FC: a following ReLU is a layer of
        its own) and its saturation count (counted as the accelerator fuses a following ReLU,
        like `run`). A host-only layer's output is re-quantized to its output format.
        """
        q, g = self.qmodel, self.qmodel.graph
        layer = g.layer(name)
        if len(inputs) != len(layer.inputs):
            raise InputError(
                f"layer {name!r} reads {len(layer.inputs)} input(s), got {len(inputs)}"
            )
        shapes = g.shapes()
        xs = []
        for i, (arr, src) in enumerate(zip(inputs, layer.inputs, strict=True)):
            what = f"input {i} of layer {name!r}"
            t = _int_tensor(arr, what)
            _check_batch(t, shapes[src], what)
            _check_range(t, q.format_of(src), what)
            xs.append(t.to(_tdtype(q.format_of(src))))
        with torch.inference_mode(), self._workspace() as ws:
            y, n = self._layer(layer, xs, owned=False, ws=ws)
        return _public(y), n

    # -- whole model ------------------------------------------------------------------------
    def run(self, x: np.ndarray, *, keep: bool | str | Iterable[str] = False,
            float_input: bool = False,
            on_layer: Callable[[str, np.ndarray], None] | None = None) -> ExecutionResult:
        """Execute a batch `x` (N, *input_shape): integers in the input format, or floats with
        `float_input=True` (quantized here; saturations reported under INPUT).

        `keep`: False (outputs only), "all", or a set of layer names (INPUT allowed) whose
        outputs to return in `.layers`. `on_layer(name, array)` receives every layer's output
        as it is computed (e.g. to write it out) without keeping it. Intermediate results are
        freed after their last use.
        """
        q, g = self.qmodel, self.qmodel.graph
        missing = [lay.name for lay in g.layers
                   if isinstance(lay, Conv2d | Linear) and lay.name not in self.prepared]
        if missing:
            raise InputError(f"executor was prepared without layers {missing}")
        keep_set = _keep_set(keep, g)
        sats: dict[str, int] = {}
        if float_input:
            xi, sats[INPUT] = quantize_input(q, x)
            xt = torch.from_numpy(xi)
        else:
            xt = _int_tensor(x, "input")
            _check_batch(xt, g.input_shape, "input")
            _check_range(xt, q.input_format, "input")
        xt = xt.to(_tdtype(q.input_format))
        last_use: dict[str, int] = {}
        for i, layer in enumerate(g.layers):
            for src in layer.inputs:
                last_use[src] = i
        protected = set(g.outputs) | keep_set | {INPUT}
        float_outs = {lay.name for lay in g.layers if lay.host_only and lay.name in g.outputs}
        env: dict[str, torch.Tensor] = {INPUT: xt}
        # Names whose tensor this run allocated and nobody else sees: a ReLU may overwrite them
        # after their last use. Dropout/Flatten may return views, so they never count as fresh.
        fresh: set[str] = set()
        relu_done: set[str] = set()  # conv/FC outputs already ReLU'd (fused)
        kept: dict[str, np.ndarray] = {}
        outputs: dict[str, np.ndarray] = {}
        if INPUT in keep_set:
            kept[INPUT] = _public(xt)
        with torch.inference_mode(), self._workspace() as ws:
            for i, layer in enumerate(g.layers):
                xs = [env[src] for src in layer.inputs]
                src0 = layer.inputs[0]
                owned = (on_layer is None and len(layer.inputs) == 1 and src0 in fresh
                         and last_use.get(src0) == i and src0 not in protected)
                if layer.name in float_outs:
                    y = _host_float(layer, xs, [q.format_of(src).fl for src in layer.inputs])
                    n = 0
                elif isinstance(layer, ReLU) and owned and src0 in relu_done:
                    y, n = xs[0], 0
                else:
                    fuse = (layer.name in self.relu_fused and on_layer is None
                            and layer.name not in protected)
                    y, n = self._layer(layer, xs, owned, fuse_relu=fuse, ws=ws)
                    if fuse:
                        relu_done.add(layer.name)
                del xs
                sats[layer.name] = n
                env[layer.name] = y
                if not isinstance(layer, Dropout | Flatten):
                    fresh.add(layer.name)
                if on_layer is not None:
                    on_layer(layer.name, _public(y))
                if layer.name in keep_set:
                    kept[layer.name] = _public(y)
                if layer.name in g.outputs:
                    outputs[layer.name] = kept.get(layer.name) if layer.name in kept else (
                        _public(y))
                for src in set(layer.inputs):
                    if last_use.get(src) == i and src not in protected:
                        env.pop(src, None)
        return ExecutionResult(
            outputs=MappingProxyType({name: outputs[name] for name in g.outputs}),
            layers=MappingProxyType(kept),
            saturations=MappingProxyType(sats),
            formats=q.formats,
            input_format=q.input_format,
            float_outputs=frozenset(float_outs),
        )


def execute(qmodel: QuantizedModel, x_int: np.ndarray, *,
            keep: bool | str | Iterable[str] = False, float_input: bool = False,
            method: Method = "auto",
            on_layer: Callable[[str, np.ndarray], None] | None = None) -> ExecutionResult:
    """Execute `qmodel` bit-exactly on a batch (see `ReferenceExecutor.run`). Prepares the
    weights on every call; build a `ReferenceExecutor` once to run many batches."""
    ex = ReferenceExecutor.build(qmodel, method=method)
    return ex.run(x_int, keep=keep, float_input=float_input, on_layer=on_layer)


def execute_layer(qmodel: QuantizedModel, layer_name: str, inputs: list[np.ndarray], *,
                  method: Method = "auto") -> tuple[np.ndarray, int]:
    """One layer of `qmodel` on upstream integer outputs: (int64 output, saturations)."""
    ex = ReferenceExecutor.build(qmodel, method=method, layers=[layer_name])
    return ex.run_layer(layer_name, inputs)


__all__ = [
    "ACC_INT64_LIMIT", "F64_EXACT", "METHODS", "ExecutionResult", "Method", "PreparedMatrix",
    "ReferenceExecutor", "accumulator_bound", "check_accumulator", "conv_acc", "execute",
    "execute_layer", "fc_acc", "finish", "int8_gemm_available", "maxpool_int", "prepare_matrix",
    "quantize_input",
]
