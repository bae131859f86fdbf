"""compiler.layout: element encoding, sub-kernel cutting, weight blocks in DDR order."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler.compile import architecture_model
from deepfpga.compiler.layout import (
    align,
    arrange_weights,
    block_offsets,
    pack,
    splits,
    sub_kernels,
    unpack,
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
    offs = block_offsets(fc, t, 2)
    pos = 0
    for k, blk in weight_blocks(fc, t, w):
        assert offs[k] == pos                     # blocks are back to back, in order
        pos += blk.size * 2
    assert pos == weight_region_bytes(fc, 2)


def test_arranged_weights_are_the_blocks_concatenated() -> None:
    conv = _stages()[0]
    t = Tiling(7, 8, 2, 3, "spatial", 0)
    w = np.random.default_rng(1).integers(-100, 100, size=(5, 3, 5, 4))
    flat = arrange_weights(conv, t, w)
    assert flat.dtype == np.int64
    assert flat.size * 2 == weight_region_bytes(conv, 2) == 5 * 3 * 4 * 9 * 2
    offs = block_offsets(conv, t, 1)
    for k, blk in weight_blocks(conv, t, w):
        assert np.array_equal(flat[offs[k]:offs[k] + blk.size], blk)
    assert sorted(np.abs(flat[flat != 0])) == sorted(np.abs(w[w != 0]))
