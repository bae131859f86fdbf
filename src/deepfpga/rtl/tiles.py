"""A tile of work for one PE, its validation, and its golden result.

The golden result comes from the project's bit-exact reference (`deepfpga.quant.reference`:
`conv_acc`, `finish`, `maxpool_int`), so the RTL is checked against the same oracle as every
other implementation of the arithmetic contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError
from deepfpga.quant.fixedpoint import FixedFormat
from deepfpga.quant.qmodel import LayerFormats
from deepfpga.rtl.params import KERNEL, ROW_BITS, SHIFT_BITS, TAPS, PEParams


@dataclass(frozen=True, eq=False)
class TileJob:
    """x: (convolvers, H, W) unpadded tile, one input channel per convolver (unused channels are
    zero); w: (convolvers, 3, 3). pad = (top, bottom, left, right) zero rows/columns.
    psum: (Ho, Wo) partial sums to add (None: no add). bias: integer at bias_bits, added as
    bias << bias_shift (None: no bias). finish: apply ReLU?/shift/saturate/pool? (contract steps
    3-5) instead of emitting the raw accumulator. shift = fl_acc - fl_out.
    """

    x: np.ndarray
    w: np.ndarray
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    stride: int = 1
    psum: np.ndarray | None = None
    bias: int | None = None
    bias_shift: int = 0
    finish: bool = True
    relu: bool = False
    pool: bool = False
    shift: int = 0

    @property
    def padded_shape(self) -> tuple[int, int]:
        t, b, lft, r = self.pad
        return t + self.x.shape[1] + b, lft + self.x.shape[2] + r

    @property
    def conv_shape(self) -> tuple[int, int]:
        hp, wp = self.padded_shape
        return (hp - KERNEL) // self.stride + 1, (wp - KERNEL) // self.stride + 1

    @property
    def out_shape(self) -> tuple[int, int]:
        ho, wo = self.conv_shape
        return (ho // 2, wo // 2) if (self.finish and self.pool) else (ho, wo)

    @property
    def n_out(self) -> int:
        h, w = self.out_shape
        return h * w


def _in_range(a: np.ndarray, bits: int) -> bool:
    return bool(a.size == 0 or (a.min() >= -(1 << (bits - 1)) and a.max() < (1 << (bits - 1))))


def validate_job(job: TileJob, p: PEParams) -> None:
    """Refuse a job this PE cannot run, naming the offending field."""
    x, w = np.asarray(job.x), np.asarray(job.w)
    if x.ndim != 3 or x.shape[0] != p.convolvers:
        raise InputError(f"tile x must be ({p.convolvers}, H, W), got {x.shape}")
    if w.shape != (p.convolvers, KERNEL, KERNEL):
        raise InputError(f"tile w must be ({p.convolvers}, 3, 3), got {w.shape}")
    if x.dtype.kind not in "iu" or w.dtype.kind not in "iu":
        raise InputError("tile x and w must be integer arrays")
    if not _in_range(x, p.data_bits) or not _in_range(w, p.weight_bits):
        raise InputError(f"tile x/w outside {p.data_bits}/{p.weight_bits}-bit range")
    if len(job.pad) != 4 or not all(0 <= q <= p.max_pad for q in job.pad):
        raise InputError(f"tile pad {job.pad} outside 0..{p.max_pad}")
    if job.stride not in (1, 2):
        raise InputError(f"tile stride {job.stride} not supported (1 or 2)")
    hp, wp = job.padded_shape
    if not KERNEL <= wp <= p.line_depth:
        raise InputError(f"tile padded width {wp} outside 3..{p.line_depth}")
    if not KERNEL <= hp < (1 << ROW_BITS):
        raise InputError(f"tile padded height {hp} outside 3..{(1 << ROW_BITS) - 1}")
    if job.psum is not None and (tuple(job.psum.shape) != job.conv_shape
                                 or not _in_range(np.asarray(job.psum), p.acc_bits)):
        raise InputError(f"tile psum must be {job.conv_shape} at {p.acc_bits} bits")
    if job.bias is not None and not _in_range(np.asarray([job.bias]), p.bias_bits):
        raise InputError(f"tile bias {job.bias} outside {p.bias_bits}-bit range")
    if not 0 <= job.bias_shift < p.acc_bits:
        raise InputError(f"tile bias_shift {job.bias_shift} outside 0..{p.acc_bits - 1}")
    if not -(1 << (SHIFT_BITS - 1)) <= job.shift < (1 << (SHIFT_BITS - 1)):
        raise InputError(f"tile shift {job.shift} outside the {SHIFT_BITS}-bit signed range")
    if job.pool and not job.finish:
        raise InputError("tile pool needs finish (pooling runs on shifted values)")
    if job.n_out == 0:
        raise InputError(f"tile produces no output (conv output {job.conv_shape})")


def _accumulator(job: TileJob) -> np.ndarray:
    from deepfpga.quant.reference import conv_acc

    t, b, lft, r = job.pad
    xp = np.pad(np.asarray(job.x, dtype=np.int64), ((0, 0), (t, b), (lft, r)))
    w = np.asarray(job.w, dtype=np.int64)[None]
    acc = conv_acc(xp[None], w, job.stride, 0)[0, 0]
    if job.psum is not None:
        acc = acc + np.asarray(job.psum, dtype=np.int64)
    return acc


def layer_formats(p: PEParams, bias_shift: int, shift: int) -> LayerFormats:
    """Formats with fl_acc - fl_b = bias_shift and fl_acc - fl_out = shift (fl_in = fl_w = 0)."""
    return LayerFormats(input=FixedFormat(p.data_bits, 0), output=FixedFormat(p.data_bits, -shift),
                        weight=FixedFormat(p.weight_bits, 0),
                        bias=FixedFormat(p.bias_bits, -bias_shift))


def expected(job: TileJob, p: PEParams) -> tuple[np.ndarray, int]:
    """The PE's outputs for `job` in emission order (row-major), and its saturation count."""
    from deepfpga.quant.reference import finish, maxpool_int

    validate_job(job, p)
    acc = _accumulator(job)
    lim = 1 << (p.acc_bits - 1)
    bias = 0 if job.bias is None else job.bias << job.bias_shift
    if np.abs(acc).max() + abs(bias) >= lim:
        raise InputError(f"tile breaks the accumulator bound of {p.acc_bits} bits")
    if not job.finish:
        return (acc + bias).reshape(-1), 0
    fmts = layer_formats(p, job.bias_shift, job.shift)
    b = None if job.bias is None else np.array([job.bias], dtype=np.int64)
    y, nsat = finish(acc[None, None], b, fmts, job.relu)
    if job.pool:
        y = maxpool_int(y, 2, 2, 0, False)
    return np.asarray(y, dtype=np.int64).reshape(-1), int(nsat)


def weight_words(job: TileJob) -> list[int]:
    """Weights in weight-port address order: lane·9 + ky·3 + kx."""
    return [int(v) for v in np.asarray(job.w, dtype=np.int64).reshape(-1, TAPS).reshape(-1)]


def random_job(rng: np.random.Generator, p: PEParams, *, max_height: int = 8,
               **fixed: object) -> TileJob:
    """A random job that satisfies the accumulator bound.

    Keyword arguments fix a choice: stride, pad, pool, finish, width, height, relu, shift,
    accumulate (psum on/off), use_bias. Magnitudes are drawn per job (small, mid, full range,
    or only the extreme values) so every shift direction gives exact and saturated results.
    """
    n, d, wb, a = p.convolvers, p.data_bits, p.weight_bits, p.acc_bits
    lim = 1 << (a - 1)
    stride = int(fixed.get("stride", rng.choice([1, 2])))
    pad = fixed.get("pad")
    if pad is None:
        pad = tuple(int(v) for v in rng.integers(0, p.max_pad + 1, size=4))
    pool = bool(fixed.get("pool", rng.random() < 0.4))
    finish = bool(fixed.get("finish", pool or rng.random() < 0.75))
    # Sizes: the padded frame must hold at least one window (two per side when pooling).
    need = KERNEL + stride * (1 if pool else 0)
    wmin = max(1, need - pad[2] - pad[3])
    hmin = max(1, need - pad[0] - pad[1])
    wmax = p.line_depth - pad[2] - pad[3]
    width = int(fixed.get("width", rng.integers(wmin, max(wmin, wmax) + 1)))
    height = int(fixed.get("height", rng.integers(hmin, max(hmin, max_height) + 1)))

    mode = rng.choice(["small", "mid", "full", "extreme"])
    xb = {"small": 2, "mid": max(2, d // 2), "full": d, "extreme": d}[mode]
    wbits = {"small": 2, "mid": max(2, wb // 2), "full": wb, "extreme": wb}[mode]
    if mode == "extreme":
        x = rng.choice([-(1 << (d - 1)), (1 << (d - 1)) - 1], size=(n, height, width))
        w = rng.choice([-(1 << (wb - 1)), (1 << (wb - 1)) - 1], size=(n, KERNEL, KERNEL))
    else:
        x = rng.integers(-(1 << (xb - 1)), 1 << (xb - 1), size=(n, height, width))
        w = rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), size=(n, KERNEL, KERNEL))
    # Keep |conv| ≤ lim/2: shrink x if 9·n·max|x|·max|w| could exceed it.
    wmag = int(np.abs(w).max()) or 1
    xcap = max(1, (lim // 2) // (TAPS * n * wmag))
    x = np.clip(x, -xcap, xcap - 1 if xcap > 1 else 0)

    job = TileJob(x=x.astype(np.int64), w=w.astype(np.int64), pad=pad, stride=stride,
                  finish=finish, pool=pool)
    ho, wo = job.conv_shape
    psum = None
    if fixed.get("accumulate", rng.random() < 0.5):
        pbits = int(rng.integers(1, a - 2))
        psum = rng.integers(-(1 << (pbits - 1)), 1 << (pbits - 1), size=(ho, wo))
    bias, bias_shift = None, 0
    if fixed.get("use_bias", rng.random() < 0.6):
        bias = int(rng.integers(-(1 << (p.bias_bits - 1)), 1 << (p.bias_bits - 1)))
        bias_shift = int(rng.integers(0, max(1, a - 2 - p.bias_bits) + 1))
    # A data shift near the one that maps the accumulator's range onto the data range, ±4.
    conv_mag = TAPS * n * int(np.abs(x).max(initial=1)) * wmag
    mag = conv_mag + (0 if psum is None else int(np.abs(psum).max()))
    mag += 0 if bias is None else abs(bias) << bias_shift
    shift = int(fixed.get("shift", max(-(d + 2), min(a + 2, mag.bit_length() - d
                                                      + int(rng.integers(-4, 5))))))
    return TileJob(x=job.x, w=job.w, pad=pad, stride=stride, psum=psum, bias=bias,
                   bias_shift=bias_shift, finish=finish,
                   relu=bool(fixed.get("relu", rng.random() < 0.5)), pool=pool, shift=shift)
