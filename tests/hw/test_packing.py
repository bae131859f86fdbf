"""Two 8-bit products per DSP48E1 (Xilinx WP486, deepfpga.hw.engines.PACK_SHIFT): the split is
exact for every 8-bit triple, the operands fit the DSP's ports, and the grid packs where the
device's ports allow it."""

from __future__ import annotations

import numpy as np

from deepfpga.hw import engines
from deepfpga.hw.config import load_config

VALUES = np.arange(-128, 128, dtype=np.int64)


def test_split_is_exact_for_every_8_bit_pixel_and_weight_pair() -> None:
    w_hi, w_lo = (a.ravel() for a in np.meshgrid(VALUES, VALUES, indexing="ij"))
    packed = engines.packed_weight(w_hi, w_lo)
    # the packed weight fits the DSP48E1's signed 25-bit A port
    assert packed.min() >= -(1 << 24) and packed.max() < 1 << 24
    for pix in VALUES:                           # 256 × 65,536: all 2^24 triples
        p = pix * packed + engines.PACK_BIAS
        # the product register (P) is 2·PACK_SHIFT bits, signed
        assert p.min() >= -(1 << 31) and p.max() < 1 << 31
        hi, lo = engines.split_packed(p)
        np.testing.assert_array_equal(hi, pix * w_hi)
        np.testing.assert_array_equal(lo, pix * w_lo)


def test_low_field_is_its_bits_with_the_top_one_inverted_read_signed() -> None:
    # what the RTL builds (lanes._products): Cat(p[:15], ~p[15]).as_signed()
    u = np.arange(1 << engines.PACK_SHIFT, dtype=np.int64)
    flipped = u ^ (1 << (engines.PACK_SHIFT - 1))
    as_signed = flipped - ((flipped >> (engines.PACK_SHIFT - 1)) << engines.PACK_SHIFT)
    np.testing.assert_array_equal(as_signed, engines.split_packed(u)[1])


def test_grid_packs_8_bit_on_xilinx_only() -> None:
    zed, z8, z16, tiny = (load_config(p) for p in ("zedboard", "zc706-8", "zc706", "tiny"))
    assert engines.packs_pairs(zed) and engines.packs_pairs(z8)
    assert not engines.packs_pairs(z16)                        # 16-bit operands
    small8 = tiny.replace(data_bits=8, weight_bits=8, bias_bits=8, acc_bits=32)
    assert not engines.packs_pairs(small8)                     # ECP5: 18×18 multipliers
    assert engines.packs_pairs(small8.replace(device="XC7Z020"))
    for cfg in (zed, z8):
        n, b = engines.grid_channels(cfg), engines.bank_count(cfg)
        assert engines.grid_dsps(cfg) == b * ((n + 1) // 2)
        assert engines.grid_multipliers(cfg) == n * b          # the peak still counts products
    assert engines.grid_dsps(z16) == engines.grid_multipliers(z16)


def test_odd_channel_count_leaves_the_last_channel_alone() -> None:
    cfg = load_config("zedboard").replace(num_pe=1, convolvers_per_pe=24)   # 3 channels × 8
    assert engines.grid_channels(cfg) == 3 and engines.packs_pairs(cfg)
    assert engines.grid_dsps(cfg) == 8 * 2
