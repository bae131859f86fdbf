"""dse.build: the base target, buffers sized from shares by the resource model, refusals."""

from __future__ import annotations

import pytest

from deepfpga.dse.build import (
    INVALID,
    NO_FIT,
    OK,
    Builder,
    device_preset,
    make_base,
    preset_built,
    variant_built,
)
from deepfpga.dse.space import Space
from deepfpga.errors import InputError
from deepfpga.hw.devices import get_device
from deepfpga.hw.engines import grid_dsps, grid_multipliers
from deepfpga.hw.resources import BUILD_LIMITS, estimate

SHARES = (("bram_share", (1.0,)), ("input_share", (0.4,)), ("weight_share", (0.2,)),
          ("fc_share", (0.5,)))


def test_base_takes_the_device_preset_and_the_command_line() -> None:
    assert device_preset("xc7z045") == "zc706-paper" and device_preset("XCZU9EG") is None
    b = make_base("XC7Z045", 8, 200.0)
    assert (b.device, b.data_bits, b.weight_bits, b.bias_bits, b.acc_bits, b.clock_mhz) == (
        "XC7Z045", 8, 8, 8, 32, 200.0)
    assert b.ddr_bandwidth_gbps == 4.2            # the ZC706's, from zc706-paper
    assert make_base("XC7Z020", 16, 150.0, ddr_gbps=3.0).acc_bits == 48
    assert make_base("XC7Z020", 16, 150.0, ddr_gbps=3.0).ddr_bandwidth_gbps == 3.0
    with pytest.raises(InputError, match="no preset targets XCZU9EG: give --base"):
        make_base("XCZU9EG", 8, 150.0)
    assert make_base("XCZU9EG", 8, 150.0, base="zc706-paper").device == "XCZU9EG"
    with pytest.raises(InputError, match="--bits must be one of 8, 16"):
        make_base("XC7Z020", 4, 150.0)


def test_buffers_take_their_share_of_block_ram() -> None:
    base = make_base("XC7Z045", 8, 150.0)
    b = Builder(base, Space((("num_pe", (2,)), ("convolvers_per_pe", (32,)), *SHARES)))
    built = b.build({"num_pe": 2, "convolvers_per_pe": 32, "bram_share": 1.0,
                     "input_share": 0.4, "weight_share": 0.2, "fc_share": 0.5})
    assert built.status == OK, built.reason
    cfg = built.config

    def used(c: object) -> dict[str, float]:
        e = {x.name: x.bram36 for x in estimate(c).buffers}
        return {"input": e["input"], "weight": e["weight"] + e["staging"],
                "output": e["output"], "fixed": e["bias"] + e["pool row"]}

    est = used(cfg)
    # the BRAM build limit (90 %) is below 1 − the default 5 % margin
    assert b.keep("bram36") == BUILD_LIMITS["bram36"] == 0.90
    budget = 0.90 * get_device("XC7Z045").bram36_equivalent - est["fixed"]
    for name, share in (("input", 0.4), ("weight", 0.2), ("output", 0.4)):
        assert est[name] <= share * budget + 1e-9
    # the largest whole KiB: one more KiB would need more blocks than the share
    bigger = cfg.replace(input_buffer_bytes=cfg.input_buffer_bytes + 1024)
    assert used(bigger)["input"] > 0.4 * budget
    assert cfg.fc_buffer_bytes == cfg.input_buffer_bytes // 2 // 1024 * 1024
    assert built.resources["share"]["bram36"] <= 0.90


def test_refusals_are_counted_not_raised() -> None:
    base = make_base("XC7Z020", 8, 150.0)
    space = Space((("num_pe", (1, 8)), ("convolvers_per_pe", (4, 128)), ("acc_bits", (32, 12)),
                   ("bram_share", (1.0,)), ("input_share", (0.4, 0.9)),
                   ("weight_share", (0.2,)), ("fc_share", (0.5,))))
    b = Builder(base, space)
    pt = {"num_pe": 1, "convolvers_per_pe": 4, "acc_bits": 32, "bram_share": 1.0,
          "input_share": 0.4, "weight_share": 0.2, "fc_share": 0.5}
    assert b.build(pt).status == OK
    # AcceleratorConfig's own validation: acc_bits below data + weight bits
    r = b.build({**pt, "acc_bits": 12})
    assert r.status == INVALID and "acc_bits" in r.reason
    r = b.build({**pt, "input_share": 0.9})
    assert r.status == INVALID and "nothing for the output buffer" in r.reason
    # a share of block RAM too small for even 1 KiB of weights on their port
    r = b.build({**pt, "weight_share": 0.001})
    assert r.status == NO_FIT and "weight buffer" in r.reason
    # 8 x 128 convolvers: far more products than the device's DSPs
    r = b.build({**pt, "num_pe": 8, "convolvers_per_pe": 128})
    assert r.status == NO_FIT and "DSP" in r.reason


def test_shell_margin_refuses_what_check_fits_would_take() -> None:
    base = make_base("XC7Z020", 8, 150.0)
    space = Space((("num_pe", (2,)),))
    # the zedboard buffers take `used` of the BRAM: a margin just below 1 − used fits, one just
    # above is refused
    used = estimate(base.replace(num_pe=2)).bram36 / get_device("XC7Z020").bram36_equivalent
    free = round(100 * (1 - used))
    assert Builder(base, space, (free - 1) / 100).build({"num_pe": 2}).status == OK
    r = Builder(base, space, (free + 1) / 100).build({"num_pe": 2})
    assert r.status == NO_FIT and f"{free + 1} % shell margin" in r.reason
    with pytest.raises(InputError, match="--margin"):
        Builder(base, space, 1.0)


def test_no_point_is_kept_that_rtl_synth_would_call_unbuildable() -> None:
    # the DSE's verdict is the build limits' (hw.resources.BUILD_LIMITS, what `deepfpga rtl
    # synth` judges): DSP and BRAM at most 90 %, LUT 80 %, even with no shell margin
    # the buffers of the last sweep's best XC7Z020 point (128/128/32 KiB)
    base = make_base("XC7Z020", 8, 150.0).replace(
        input_buffer_bytes=131072, output_buffer_bytes=131072, weight_buffer_bytes=32768,
        fc_buffer_bytes=65536)
    space = Space((("num_pe", (1, 2, 4, 8, 12, 16)), ("convolvers_per_pe", (16, 32, 64))))
    b = Builder(base, space, 0.0)
    seen = set()
    for pe in (1, 2, 4, 8, 12, 16):
        for conv in (16, 32, 64):
            r = b.build({"num_pe": pe, "convolvers_per_pe": conv})
            if r.status == OK:
                assert estimate(r.config).buildable, (pe, conv)
            elif "build limit" in r.reason:
                seen.add(r.reason.split()[0])
                assert not estimate(base.replace(num_pe=pe, convolvers_per_pe=conv)).buildable
    assert seen                   # some points fit the device but not the build limits
    # 12 x 32 (216 DSP48E1, 98 % of the XC7Z020): the last sweep's best point, refused now
    assert b.build({"num_pe": 12, "convolvers_per_pe": 32}).status == NO_FIT


def test_presets_for_comparison() -> None:
    p = preset_built("zc706-paper")
    assert p.status == OK and p.config.name == "zc706-paper"
    v = variant_built("zc706-paper", make_base("XC7Z045", 8, 150.0))
    assert v.status == OK and (v.config.data_bits, v.config.acc_bits) == (8, 32)
    assert v.config.num_pe == 2 and v.config.convolvers_per_pe == 64
    # two 8-bit products per DSP48E1 in the grid (WP486 pairs), one at 16 bits
    assert grid_dsps(v.config) == grid_multipliers(v.config) // 2
    assert v.resources["dsps"] == p.resources["dsps"] - grid_dsps(v.config)


def test_shares_may_all_be_fixed() -> None:
    base = make_base("XC7Z020", 8, 150.0)
    space = Space((("num_pe", (2,)),), (("bram_share", 0.5), ("input_share", 0.4),
                                        ("weight_share", 0.2), ("fc_share", 0.5)))
    assert space.uses_shares
    cfg = Builder(base, space).build({"num_pe": 2}).config
    assert cfg.input_buffer_bytes < base.input_buffer_bytes      # half the block RAM, resized
    assert estimate(cfg).bram36 <= 0.5 * 0.95 * 140 + 2
