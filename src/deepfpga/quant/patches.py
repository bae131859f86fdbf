"""The input side of the exact products: patch matrices of convolutions (built block by block,
never whole) and FC inputs, split into the digits of the product method (see `gemm.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir.layers import _window_out
from deepfpga.quant.gemm import (
    _GEMM_DTYPE,
    Patches,
    PreparedMatrix,
    Workspace,
    _scratch,
    _x_digits,
    exact_gemm,
)
from deepfpga.quant.intarrays import _bits_of_range, _np, _range_of

# A layer is computed in row blocks whose scratch memory (patch matrix, products, accumulators)
# is about this many bytes.
_BLOCK_BYTES = 96 << 20


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
    itemsize = _GEMM_DTYPE[pw.method].itemsize
    n_chunks = max(1, len(pw.k_bounds) - 1)
    per_row = nx * pw.kp * itemsize + n_chunks * nx * pw.n_digits * pw.o * max(itemsize, 4)
    if not pw.raw:
        per_row += 8 * pw.o
    return max(1, _BLOCK_BYTES // max(1, per_row))


def fc_patches(xt: torch.Tensor, pw: PreparedMatrix, check: bool, what: str) -> Patches:
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
    return Patches(
        rows=n, n_digits=nx, c=c, blocks=blocks,
        block=lambda b: digits[:, blocks[b][0]:blocks[b][1]].reshape(-1, pw.kp).contiguous(),
        row_sums=lambda b: xt[blocks[b][0]:blocks[b][1]].sum(dim=1, dtype=torch.int64),
    )


def conv_patches(xt: torch.Tensor, pw: PreparedMatrix, kernel: tuple[int, int],
                  stride: tuple[int, int], padding: tuple[int, int], check: bool,
                  what: str, ws: Workspace | None = None
                  ) -> tuple[Patches, tuple[int, int, int]]:
    """The patch matrix of a convolution, and the output geometry (N, Ho, Wo).

    X has one row per output pixel (n, y, x) and K = kh·kw·C columns in (ky, kx, c) order (the
    weights' columns are put in the same order by `conv_matrix`). Rows are built block by block
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
    hp, wp = h + 2 * ph, w + 2 * pw_
    padded = bool(ph or pw_ or c_in > c_x)

    def int_padded() -> torch.Tensor:
        return F.pad(nhwc, (0, c_in - c_x, pw_, pw_, ph, ph)) if padded else nhwc

    if pw.x_digits[1] == 1:
        # One digit: convert, lay out and pad in one copy into a zeroed map of the GEMM dtype.
        dt = _GEMM_DTYPE[pw.method]
        shape = (1, n, hp, wp, c_in)
        if ws is None:
            digits = torch.zeros(shape, dtype=dt) if padded else torch.empty(shape, dtype=dt)
        else:       # reused memory (fresh pages fault on first touch), zeroed in numpy
            digits = ws.tensor("map", shape, dt)
            if padded:
                _np(digits).fill(0)
        digits[0, :, ph:ph + h, pw_:pw_ + w, :c_x].copy_(nhwc)
        c = 0
    else:
        digits, c = _x_digits(int_padded(), pw)
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
            s = int_padded().sum(dim=3, dtype=torch.int64).contiguous()
            win = s.as_strided((n, ho, wo, kh, kw), (hp * wp, sh * wp, sw, wp, 1))
            sums.append(win.sum(dim=(3, 4)).reshape(-1))
        r0, r1 = blocks[b]
        return sums[0][r0:r1]

    patches = Patches(n * ho * wo, nx, c, blocks, block, row_sums)
    return patches, (n, ho, wo)


def _conv_channels(c: int, kh: int, kw: int) -> int:
    """Channels after zero padding to make K = kh·kw·C a multiple of 4 (the int8 kernel's
    requirement, see `prepare_matrix`); zero channels add nothing to any sum."""
    while (kh * kw * c) % 4:
        c += 1
    return c


def conv_matrix(w: torch.Tensor) -> torch.Tensor:
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
    patches, (n, ho, wo) = conv_patches(xt, pw, kernel, stride, padding, True, what)
    return exact_gemm(patches, pw).reshape(n, ho, wo, pw.o).permute(0, 3, 1, 2)


def _fc_acc_t(xt: torch.Tensor, pw: PreparedMatrix, what: str = "fc input") -> torch.Tensor:
    return exact_gemm(fc_patches(xt, pw, True, what), pw)


