"""Presets, the device table, the resource estimate and check_fits."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from deepfpga.errors import InputError
from deepfpga.hw.config import PRESETS, AcceleratorConfig, load_config
from deepfpga.hw.devices import DEVICES, get_device
from deepfpga.hw.engines import bank_count, grid_channels, grid_dsps
from deepfpga.hw.resources import (
    check_fits,
    dsps_per_multiplier,
    estimate,
    lutram_luts,
    memory_bram36,
    not_buildable_reason,
    ram_blocks,
)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load_and_fit(preset: str) -> None:
    cfg = load_config(preset)
    est = estimate(cfg)
    if not_buildable_reason(cfg) is None:       # zc706-paper is a reference, not a design
        assert est.buildable, [line.to_dict() for line in est.fit_report()]
    # every AcceleratorConfig key is written out in the preset file (no silent defaults)
    text = resources.files("deepfpga.hw.presets").joinpath(f"{preset}.toml").read_text()
    assert set(tomllib.loads(text)) == set(cfg.to_dict())


def test_zc706_paper_values() -> None:
    cfg = load_config("zc706-paper")
    assert (cfg.device, cfg.clock_mhz, cfg.data_bits, cfg.weight_bits) == ("XC7Z045", 150.0, 16, 16)
    assert (cfg.num_pe, cfg.convolvers_per_pe, cfg.ddr_bandwidth_gbps) == (2, 64, 4.2)
    assert {"paper", "secondary", "assumed"} <= set(cfg.notes)
    # not buildable: the paper's 1152 multipliers exceed the 900 DSP48E1, and what the RTL would
    # build from these keys needs more block RAM than the device has
    assert cfg.convolver_taps == 1152 > get_device("XC7Z045").dsps
    assert cfg.multipliers == 128 and cfg.peak_gops == pytest.approx(38.4)
    est = estimate(cfg)
    assert est.bram36 > get_device("XC7Z045").bram36_equivalent and not est.buildable
    assert not_buildable_reason(cfg) is not None
    check_fits(cfg)                                  # a reference: not refused
    with pytest.raises(InputError, match="does not fit device XC7Z045: BRAM36"):
        check_fits(cfg.replace(notes={}))


def test_estimate_counts_what_the_rtl_builds() -> None:
    for preset in ("zedboard", "zc706", "zc706-8", "tiny"):
        cfg = load_config(preset)
        est = estimate(cfg)
        b = bank_count(cfg)
        # the grid (channels × B lanes) and the one-accumulator loop's B lanes, not 9 per convolver
        assert est.multipliers == grid_channels(cfg) * b + b == cfg.multipliers + b
        # two products per DSP48E1 at 8 bits (channel pairs), one otherwise
        assert est.dsps == grid_dsps(cfg) + b + (9 if cfg.device == "LFE5U-85F" else 8)
        assert grid_dsps(cfg) == (b * -(-grid_channels(cfg) // 2) if cfg.weight_bits <= 8
                                  else grid_channels(cfg) * b)
        names = [m.name for m in est.buffers]
        assert names == ["input", "weight", "bias", "output", "staging", "pool row"]
        assert est.bram36 == sum(m.bram36 for m in est.buffers)


def test_shallow_wide_memories_go_to_block_ram_when_cheaper() -> None:
    # what Yosys's memory_libmap did with zc706's 16 staging banks (86 × 768 bits, written a
    # 16-bit lane at a time): block RAM, 12 BRAM36 each (a lane takes two 9-bit byte enables:
    # 64 of a RAMB36's 72 bits), while a shallow narrow bank (BIAS: 128 × 16) stays in
    # distributed RAM
    est = {m.name: m for m in estimate(load_config("zc706")).buffers}
    st, bias = est["staging"], est["bias"]
    assert (st.banks, st.depth, st.width) == (16, 86, 768)
    assert (st.bram36, st.lutram_luts) == (192.0, 0)
    assert bias.depth == 128 and bias.bram36 == 0 and bias.lutram_luts > 0


def test_device_table() -> None:
    assert set(DEVICES) == {"XC7Z020", "XC7Z045", "XCZU9EG", "LFE5U-85F"}
    assert get_device("zu9eg").name == "XCZU9EG" and get_device("ECP5-85F").name == "LFE5U-85F"
    assert get_device("XC7Z045").bram36_equivalent == 545
    assert get_device("LFE5U-85F").bram36_equivalent == 104
    with pytest.raises(InputError, match="unknown device 'XC9999'"):
        get_device("XC9999")


def test_dsp_mapping_by_width() -> None:
    dev = get_device("XC7Z045")
    assert dsps_per_multiplier(16, 16, dev) == 1
    assert dsps_per_multiplier(25, 18, dev) == 1
    assert dsps_per_multiplier(24, 24, dev) == 2      # 24 ≤ 25 but 24 > 18: split the other
    assert dsps_per_multiplier(32, 32, dev) == 4
    ecp5 = get_device("LFE5U-85F")
    assert dsps_per_multiplier(16, 16, ecp5) == 1 and dsps_per_multiplier(20, 16, ecp5) == 2


def test_ram_blocks_port_and_depth() -> None:
    dev = get_device("XC7Z045")
    assert ram_blocks(4096, 64, dev) == 1               # 512 × 64: one block
    assert ram_blocks(4096, 128, dev) == 2              # width-bound
    assert ram_blocks(65536, 8, dev) == 16              # depth-bound: 4K × 9 each
    assert ram_blocks(100, 8, dev) == 1
    # parity bits are data bits to Yosys: 2K × 18 holds a 16-bit bank of 2048 in one block
    assert memory_bram36(2048, (16,), dev) == 1.0
    assert memory_bram36(1024, (16,), dev) == 0.5      # a RAMB18
    # a second read port is a second copy, of only the bits it reads
    assert memory_bram36(4096, (32, 8), dev) == 4 + 1
    ecp5 = get_device("LFE5U-85F")
    assert memory_bram36(4096, (16,), ecp5) == 2.0      # 4 DP16KD of 1K × 18
    assert lutram_luts(128, 16, get_device("XC7Z020")) == 48     # 2 × 6 RAM64M


def test_check_fits_refuses_with_margin() -> None:
    cfg = load_config("zedboard")
    big = cfg.replace(input_buffer_bytes=4 * 1024 * 1024, fc_buffer_bytes=4096)
    with pytest.raises(InputError, match=r"does not fit device XC7Z020: BRAM36-equivalent"
                                         r" [\d,]+ > 140 by [\d,]+"):
        check_fits(big)
    many = cfg.replace(convolvers_per_pe=400)       # 768 grid products, 128 banks
    with pytest.raises(InputError, match=r"DSP [\d,]+ > 220 .*; LUT [\d,]+ > 53,200"):
        check_fits(many)
    with pytest.raises(InputError, match="unknown device"):
        check_fits(cfg.replace(device="nope"))


def test_load_config_from_toml_refuses_oversized(tmp_path) -> None:
    text = resources.files("deepfpga.hw.presets").joinpath("tiny.toml").read_text()
    p = tmp_path / "big.toml"
    p.write_text(text.replace("convolvers_per_pe = 4", "convolvers_per_pe = 400"))
    with pytest.raises(InputError, match="does not fit device LFE5U-85F"):
        load_config(p)
    ok = tmp_path / "ok.toml"
    ok.write_text(text)
    assert isinstance(load_config(ok), AcceleratorConfig)


def test_one_device_table_serves_synthesis_and_the_cli() -> None:
    from deepfpga.cli import build_parser
    from deepfpga.hw.devices import device_names

    for dev in DEVICES.values():
        assert dev.yosys_synth in ("synth_xilinx", "synth_ecp5")
        assert (dev.yosys_family is not None) == (dev.yosys_synth == "synth_xilinx")
        assert (dev.nextpnr_device is not None) == (dev.family == "ecp5")
    names = device_names()
    assert {"xc7z020", "xc7z045", "xczu9eg", "lfe5u-85f", "ecp5-85f"} <= set(names)
    assert all(get_device(n) in DEVICES.values() for n in names)
    # `deepfpga rtl synth --device` offers exactly the table's names
    args = build_parser().parse_args(["rtl", "synth", "--device", "ecp5-85f"])
    assert args.device == "ecp5-85f"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rtl", "synth", "--device", "xc9000"])
