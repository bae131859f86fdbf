"""Presets, the device table, the resource estimate and check_fits."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from deepfpga.errors import InputError
from deepfpga.hw.config import PRESETS, AcceleratorConfig, load_config
from deepfpga.hw.devices import DEVICES, get_device
from deepfpga.hw.resources import check_fits, dsps_per_multiplier, estimate, ram_blocks


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load_and_fit(preset: str) -> None:
    cfg = load_config(preset)
    est = estimate(cfg)
    dev = get_device(cfg.device)
    assert est.dsps <= dev.dsps and est.bram36 <= dev.bram36_equivalent
    assert est.luts <= dev.luts and est.ffs <= dev.ffs
    # every AcceleratorConfig key is written out in the preset file (no silent defaults)
    text = resources.files("deepfpga.hw.presets").joinpath(f"{preset}.toml").read_text()
    assert set(tomllib.loads(text)) == set(cfg.to_dict())


def test_zc706_paper_values() -> None:
    cfg = load_config("zc706-paper")
    assert (cfg.device, cfg.clock_mhz, cfg.data_bits, cfg.weight_bits) == ("XC7Z045", 150.0, 16, 16)
    assert (cfg.num_pe, cfg.convolvers_per_pe, cfg.ddr_bandwidth_gbps) == (2, 64, 4.2)
    est = estimate(cfg)
    # 1152 multipliers at 16 bits: all 900 DSPs used, the rest built from LUTs
    assert est.multipliers == 1152 and est.dsps == 900 and est.fabric_multipliers == 252
    assert {"paper", "secondary", "assumed"} <= set(cfg.notes)


def test_zedboard_uses_int8_packing() -> None:
    cfg = load_config("zedboard")
    est = estimate(cfg)
    assert est.dsps == cfg.multipliers // 2 <= 220
    assert est.bram36 <= 140


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
    assert ram_blocks(65536, 8, dev) == 16              # depth-bound: 32 Kbit each
    assert ram_blocks(100, 8, dev) == 1


def test_check_fits_refuses_with_margin() -> None:
    cfg = load_config("zedboard")
    big = cfg.replace(input_buffer_bytes=4 * 1024 * 1024, fc_buffer_bytes=4096)
    with pytest.raises(InputError, match=r"does not fit device XC7Z020: BRAM36-equivalent"
                                         r" [\d,]+ > 140 by [\d,]+"):
        check_fits(big)
    many = cfg.replace(convolvers_per_pe=400)
    with pytest.raises(InputError, match="LUT"):
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
