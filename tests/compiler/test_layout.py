"""compiler.layout: element encoding, sub-kernel cutting, weight blocks in DDR order."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler.compile import architecture_model
from deepfpga.compiler.layout import (
    WeightStore,
    align,
    arrange_weights,
    block_offsets,
    block_rows,
    encoded_blocks,
    pack,
    splits,
    sub_kernels,
    unpack,
    unpack_nibbles,
    weight_blocks,
    weight_region_bytes,
)
from deepfpga.compiler.mapping import map_network
from deepfpga.compiler.tiling import Tiling
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, chain

TINY = load_config("tiny")


def _stages():
    g = chain("n", (3, 9, 9), [
        Conv2d("c", (), in_channels=3, out_channels=5, kernel=(5, 4), padding=(1, 1)),
        Flatten("f", ()), Linear("l", (), in_features=5 * 7 * 8, out_features=6)])
    return map_network(architecture_model(g, TINY), TINY).stages


def test_element_packing_round_trip() -> None:
    rng = np.random.default_rng(0)
    for nbytes in (1, 2, 3, 4, 5, 8):
        lo, hi = -(1 << (8 * nbytes - 1)), (1 << (8 * nbytes - 1)) - 1
        v = rng.integers(lo, hi, size=100, endpoint=True)
        v[:2] = lo, hi
        data = pack(v, nbytes)
        assert len(data) == 100 * nbytes
        assert np.array_equal(unpack(data, nbytes), v)
    assert pack(np.array([-2, 258]), 2) == b"\xfe\xff\x02\x01"     # little-endian two's compl.
    assert pack(np.array([-1]), 3) == b"\xff\xff\xff"


def test_align_and_splits() -> None:
    assert [align(n) for n in (0, 1, 64, 65)] == [0, 64, 64, 128]
    assert splits(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert splits(4, 4) == [(0, 4)] and splits(0, 4) == []


def test_sub_kernels_cut_and_zero_pad() -> None:
    conv = _stages()[0]
    assert conv.sub_kernels == (2, 2)
    w = np.arange(5 * 3 * 5 * 4).reshape(5, 3, 5, 4)
    sub = sub_kernels(w, conv)
    assert sub.shape == (4, 5, 3, 9)
    # put the 3×3 pieces back together: the 6×6 padded kernel, zeros beyond 5×4
    back = sub.reshape(2, 2, 5, 3, 3, 3).transpose(2, 3, 0, 4, 1, 5).reshape(5, 3, 6, 6)
    assert np.array_equal(back[:, :, :5, :4], w)
    assert not back[:, :, 5:, :].any() and not back[:, :, :, 4:].any()


@pytest.mark.parametrize("order", ["out", "in"])
def test_fc_blocks_follow_the_load_order(order: str) -> None:
    fc = _stages()[1]
    t = Tiling(1, 1, 100, 4, order, 1)
    w = np.arange(fc.out_channels * fc.in_channels).reshape(fc.out_channels, fc.in_channels)
    keys = [k for k, _ in weight_blocks(fc, t, w)]
    if order == "in":
        assert keys[:2] == [(0, 0), (1, 0)]      # input groups outermost
    else:
        assert keys[:2] == [(0, 0), (0, 1)]
    offs = block_offsets(fc, t, WeightStore(2, False))
    pos = 0
    for k, blk in weight_blocks(fc, t, w):
        assert offs[k] == pos                     # blocks are back to back, in order
        pos += blk.size * 2
    assert pos == weight_region_bytes(fc, t, WeightStore(2, False))


def test_arranged_weights_are_the_blocks_concatenated() -> None:
    conv = _stages()[0]
    t = Tiling(7, 8, 2, 3, "spatial", 0)
    w = np.random.default_rng(1).integers(-100, 100, size=(5, 3, 5, 4))
    flat = arrange_weights(conv, t, w)
    assert flat.dtype == np.int64
    assert flat.size * 2 == weight_region_bytes(conv, t, WeightStore(2, False)) == 5 * 3 * 4 * 9 * 2
    offs = block_offsets(conv, t, WeightStore(1, False))
    for k, blk in weight_blocks(conv, t, w):
        assert np.array_equal(flat[offs[k]:offs[k] + blk.size], blk)
    assert sorted(np.abs(flat[flat != 0])) == sorted(np.abs(w[w != 0]))


@pytest.mark.parametrize("kind", ["conv", "fc"])
def test_packed_blocks_rows_padded_to_bytes(kind: str) -> None:
    """Packed weights: each row of a block (one LOAD segment) in ⌈n/2⌉ bytes, low nibble
    first, blocks back to back; odd rows (ti·9 with ti odd, an odd FC ti) padded."""
    conv, fc = _stages()
    st, t = (conv, Tiling(7, 8, 3, 2, "weights", 0)) if kind == "conv" else \
        (fc, Tiling(1, 1, 93, 4, "out", 1))
    rng = np.random.default_rng(2)
    shape = (5, 3, 5, 4) if kind == "conv" else (fc.out_channels, fc.in_channels)
    w = rng.integers(-8, 7, size=shape, endpoint=True)
    store = WeightStore(1, True)
    offs = block_offsets(st, t, store)
    pos = 0
    in_sizes = dict(enumerate(n for _, n in splits(st.in_channels, t.ti)))
    out_sizes = dict(enumerate(n for _, n in splits(st.out_channels, t.to)))
    for (k, data), (k2, blk) in zip(encoded_blocks(st, t, w, store), weight_blocks(st, t, w),
                                    strict=True):
        assert k == k2 and offs[k] == pos
        rows, length = block_rows(st, out_sizes[k[0]], in_sizes[k[1]])
        assert length % 2 == 1                      # the pad nibbles are exercised
        assert data.size == rows * ((length + 1) // 2)
        back = unpack_nibbles(data.reshape(rows, -1), length)
        assert np.array_equal(back.reshape(-1), blk)
        pos += data.size
    assert pos == weight_region_bytes(st, t, store)
    assert pos < weight_region_bytes(st, t, WeightStore(1, False))
