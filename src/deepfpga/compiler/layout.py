"""DDR data arrangement (paper §7.2–7.3): element encoding, feature-map and weight layouts.

- Elements are little-endian two's complement at the config's widths (data, weight, bias bytes).
- Feature maps are channel-major, rows contiguous (C, H, W): a full-width tile of one channel is
  one contiguous run, and a tile spanning every row of several channels is one run in total.
  Flattening (C, H, W) gives the FC input vector in the same order as torch's flatten.
- CONV weights are stored per (output group, input group) block in the order the program loads
  them; a block is dense (sub-kernel, to, ti, 3, 3), each kernel zero-padded to a multiple of 3
  and cut into 3×3 sub-kernels (row-major), so one block is one DMA run. A 1×1 kernel (CONV1)
  is stored as it is: a block is dense (to, ti).
- FC weights are stored as dense (to, ti) blocks in load order, one DMA run each.
- Weights of at most 4 bits on a config with 1-byte weights are stored packed (`WeightStore`):
  two per byte, low nibble first, each row of a block (one LOAD segment) padded to whole bytes.
- Biases are one vector per layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from deepfpga.compiler.mapping import Stage
from deepfpga.compiler.tiling import Tiling
from deepfpga.hw import arch
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.arch import KERNEL, TAPS

ALIGN = 64   # every region starts on a 64-byte boundary (a full AXI beat group)


def align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


def pack_array(values: np.ndarray, nbytes: int) -> np.ndarray:
    """Integers → uint8 array of little-endian two's complement, `nbytes` each (values must
    fit)."""
    v = np.asarray(values).reshape(-1)
    if nbytes in (1, 2, 4, 8):
        return np.ascontiguousarray(v.astype(f"<i{nbytes}")).view(np.uint8)
    v = np.ascontiguousarray(v.astype("<i8"))
    return np.ascontiguousarray(v.view(np.uint8).reshape(-1, 8)[:, :nbytes]).reshape(-1)


def pack(values: np.ndarray, nbytes: int) -> bytes:
    """Integers → little-endian two's complement of `nbytes` each (values must fit)."""
    return pack_array(values, nbytes).tobytes()


def unpack(data: bytes | np.ndarray, nbytes: int, dtype: type = np.int64) -> np.ndarray:
    """Little-endian two's complement elements of `nbytes` → `dtype` (sign-extended)."""
    b = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    b = np.ascontiguousarray(b, dtype=np.uint8).reshape(-1)
    if nbytes in (1, 2, 4, 8):
        return b.view(f"<i{nbytes}").astype(dtype)
    b = b.reshape(-1, nbytes)
    full = np.zeros((b.shape[0], 8), dtype=np.uint8)
    full[:, :nbytes] = b
    v = full.view("<i8").reshape(-1)
    shift = 64 - 8 * nbytes
    return ((v << shift) >> shift).astype(dtype, copy=False)


def pack_nibbles(rows: np.ndarray) -> np.ndarray:
    """(r, L) integers in [−8, 7] → (r, ⌈L/2⌉) uint8: two per byte, element 2k in the low
    nibble, 2k+1 in the high one; an odd row's last high nibble is 0 (padding)."""
    r = np.asarray(rows, np.int64)
    if r.size and (r.min() < -8 or r.max() > 7):
        raise ValueError("packed weights must lie in [-8, 7]")
    if r.shape[1] % 2:
        r = np.concatenate([r, np.zeros((r.shape[0], 1), np.int64)], axis=1)
    nib = (r & 0xF).astype(np.uint8)
    return nib[:, 0::2] | (nib[:, 1::2] << 4)


def unpack_nibbles(b: np.ndarray, length: int) -> np.ndarray:
    """(..., ⌈length/2⌉) packed bytes → (..., length) int64, each nibble sign-extended (the
    inverse of `pack_nibbles`; the pad nibble of an odd row is dropped)."""
    b = np.asarray(b, np.uint8)
    nib = np.stack([b & 0xF, b >> 4], axis=-1).reshape(*b.shape[:-1], -1)[..., :length]
    return (nib.astype(np.int64) ^ 8) - 8


def splits(total: int, size: int) -> list[tuple[int, int]]:
    """(start, length) of consecutive tiles of `size` over `total`."""
    return [(s, min(size, total - s)) for s in range(0, total, size)]


def conv_block_order(stage: Stage, t: Tiling) -> list[tuple[int, int]]:
    """(output group, input group) in first-load order: output groups outer in both orders."""
    n_o = len(splits(stage.out_channels, t.to))
    n_i = len(splits(stage.in_channels, t.ti))
    return [(og, ig) for og in range(n_o) for ig in range(n_i)]


def fc_block_order(stage: Stage, t: Tiling) -> list[tuple[int, int]]:
    n_o = len(splits(stage.out_channels, t.to))
    n_i = len(splits(stage.in_channels, t.ti))
    if t.order == "in":
        return [(og, ig) for ig in range(n_i) for og in range(n_o)]
    return [(og, ig) for og in range(n_o) for ig in range(n_i)]


@dataclass(frozen=True)
class WeightStore:
    """How a stage's weights are stored in DDR: `nbytes` per weight, or `packed` (LOAD packed4:
    two 4-bit weights per byte, each LOAD segment — one output channel's row of a block — in
    ⌈length/2⌉ bytes, an odd row padded with a zero nibble)."""

    nbytes: int
    packed: bool

    @classmethod
    def of(cls, stage: Stage, cfg: AcceleratorConfig) -> WeightStore:
        """Packed when the stage's weights have at most 4 bits and the config allows a packed
        LOAD of them (FC blocks into INPUT, CONV weights into WEIGHT: 1-byte weights)."""
        return cls(cfg.weight_bytes, arch.weights_packed(cfg, stage.kind == "fc",
                                                         stage.w_fmt.bw))

    def row_bytes(self, n: int) -> int:
        """DDR bytes of one segment (row) of `n` weights."""
        return int(arch.load_segment_bytes_of(self.nbytes, self.packed, n))

    def encode(self, rows: np.ndarray) -> np.ndarray:
        """(r, L) weights → their DDR bytes (uint8), row after row."""
        if self.packed:
            return pack_nibbles(rows).reshape(-1)
        return pack_array(rows, self.nbytes)


def block_rows(stage: Stage, on: int, inn: int) -> tuple[int, int]:
    """(rows, row length) of a weight block of `on` outputs × `inn` inputs: one row (a LOAD
    segment) per output channel and sub-kernel, of inn·taps weights."""
    return on * stage.nsub, inn * stage.taps


def block_offsets(stage: Stage, t: Tiling, store: WeightStore) -> dict[tuple[int, int], int]:
    """Byte offset of every weight block inside the stage's weight region."""
    return _block_layout(stage, t, store)[0]


def _block_layout(stage: Stage, t: Tiling, store: WeightStore
                  ) -> tuple[dict[tuple[int, int], int], int]:
    osz = dict(enumerate(n for _, n in splits(stage.out_channels, t.to)))
    isz = dict(enumerate(n for _, n in splits(stage.in_channels, t.ti)))
    order = conv_block_order(stage, t) if stage.kind == "conv" else fc_block_order(stage, t)
    offs, pos = {}, 0
    for og, ig in order:
        offs[og, ig] = pos
        rows, length = block_rows(stage, osz[og], isz[ig])
        pos += rows * store.row_bytes(length)
    return offs, pos


def weight_region_bytes(stage: Stage, t: Tiling, store: WeightStore) -> int:
    """Bytes of the stage's weights in DDR (packed odd rows depend on the tiling's ti)."""
    return _block_layout(stage, t, store)[1]


def sub_kernels(w: np.ndarray, stage: Stage) -> np.ndarray:
    """(N, C, kh, kw) → (nsub, N, C, taps): zero-padded to 3A×3B and cut into 3×3 sub-kernels;
    a 1×1 kernel (CONV1) → (1, N, C, 1), unpadded."""
    n, c, kh, kw = w.shape
    a, b = stage.sub_kernels
    k = KERNEL if stage.taps == TAPS else 1
    pad = np.zeros((n, c, k * a, k * b), dtype=np.int64)
    pad[:, :, :kh, :kw] = w
    return pad.reshape(n, c, a, k, b, k).transpose(2, 4, 0, 1, 3, 5).reshape(a * b, n, c, k * k)


def weight_blocks(stage: Stage, t: Tiling, w: np.ndarray
                  ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """((output group, input group), block) in DDR order; each block as stored, flattened."""
    o_spl = splits(stage.out_channels, t.to)
    i_spl = splits(stage.in_channels, t.ti)
    if stage.kind == "conv":
        sub = sub_kernels(np.asarray(w), stage)
        for og, ig in conv_block_order(stage, t):
            (o0, on), (i0, inn) = o_spl[og], i_spl[ig]
            yield (og, ig), sub[:, o0:o0 + on, i0:i0 + inn, :].reshape(-1)
    else:
        w2 = np.asarray(w)
        for og, ig in fc_block_order(stage, t):
            (o0, on), (i0, inn) = o_spl[og], i_spl[ig]
            yield (og, ig), w2[o0:o0 + on, i0:i0 + inn].reshape(-1)


def encoded_blocks(stage: Stage, t: Tiling, w: np.ndarray, store: WeightStore
                   ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """((output group, input group), the block's DDR bytes) in DDR order."""
    i_spl = splits(stage.in_channels, t.ti)
    for (og, ig), blk in weight_blocks(stage, t, w):
        length = block_rows(stage, 1, i_spl[ig][1])[1]
        yield (og, ig), store.encode(blk.reshape(-1, length))


def arrange_weights(stage: Stage, t: Tiling, w: np.ndarray) -> np.ndarray:
    """The stage's weights in DDR order (int64, one element per weight)."""
    parts = [np.asarray(b, dtype=np.int64) for _, b in weight_blocks(stage, t, w)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
