"""`deepfpga compile QMODEL --target T -o OUTDIR`: bad TOML targets, bad output directories."""

from __future__ import annotations

import re

import pytest

DIR_KINDS = ("file/", "ro", "empty", "long", "isfile")


def _toml(files, key: str, value: str | None) -> str:
    """The tiny target with `key = value` (None: the key removed)."""
    text = files.target.read_text()
    line = re.compile(rf"^{key} = .*$", re.M)
    if value is None:
        return line.sub("", text)
    if line.search(text):
        return line.sub(f"{key} = {value}", text)
    return text.replace("[notes]", f"{key} = {value}\n\n[notes]")


VALUES = {
    "clock-nan": ("clock_mhz", "nan", "clock_mhz"),
    "clock-inf": ("clock_mhz", "inf", "clock_mhz"),
    "clock-minus-inf": ("clock_mhz", "-inf", "clock_mhz"),
    "clock-zero": ("clock_mhz", "0.0", "clock_mhz"),
    "clock-negative": ("clock_mhz", "-100.0", "clock_mhz"),
    "clock-absurd": ("clock_mhz", "1e30", "clock_mhz"),
    "clock-string": ("clock_mhz", '"fast"', "clock_mhz"),
    "clock-bool": ("clock_mhz", "true", "clock_mhz"),
    "clock-array": ("clock_mhz", "[100]", "clock_mhz"),
    "clock-date": ("clock_mhz", "1979-05-27", "clock_mhz"),
    "ddr-tiny": ("ddr_bandwidth_gbps", "1e-300", "ddr_bandwidth_gbps"),
    "ddr-nan": ("ddr_bandwidth_gbps", "nan", "ddr_bandwidth_gbps"),
    "ddr-inf": ("ddr_bandwidth_gbps", "inf", "ddr_bandwidth_gbps"),
    "pe-zero": ("num_pe", "0", "num_pe"),
    "pe-float": ("num_pe", "1.5", "num_pe"),
    "pe-huge": ("num_pe", "100000000", "num_pe"),
    "convolvers-negative": ("convolvers_per_pe", "-4", "convolvers_per_pe"),
    "kernel-5": ("kernel", "5", "kernel"),
    "data-bits-1": ("data_bits", "1", "data_bits"),
    "data-bits-64": ("data_bits", "64", "data_bits"),
    "acc-bits-small": ("acc_bits", "8", "acc_bits"),
    "acc-bits-huge": ("acc_bits", "100", "acc_bits"),
    "buffer-zero": ("input_buffer_bytes", "0", "input_buffer_bytes"),
    "buffer-huge": ("input_buffer_bytes", "9223372036854775807", "input_buffer_bytes"),
    "fc-buffer-exceeds": ("fc_buffer_bytes", "1000000", "fc_buffer_bytes"),
    "burst-zero": ("max_burst_bytes", "0", "max_burst_bytes"),
    "overhead-absurd": ("burst_overhead_cycles", "1e9", "burst_overhead_cycles"),
    "max-pad-8": ("max_pad", "8", "max_pad"),
    "axi-48": ("axi_data_bits", "48", "axi_data_bits"),
    "device-unknown": ("device", '"XC9999"', "XC9999"),
    "device-number": ("device", "7", "device"),
    "name-number": ("name", "7", "name"),
    "notes-string": ("notes", '"hi"', "notes"),
    "missing-clock": ("clock_mhz", None, "clock_mhz"),
    "unknown-key": ("colour", '"red"', "colour"),
}


@pytest.mark.parametrize("case", sorted(VALUES))
def test_bad_target_value(case, files, work, refused):
    key, value, match = VALUES[case]
    t = work / "t.toml"
    t.write_text(_toml(files, key, value))
    out = work / "build"
    refused(["compile", files.qmodel, "--target", t, "-o", out, "--json"], match)
    assert not out.exists()


RAW = {
    "binary": (bytes(range(256)) * 4, "not a TOML text file"),
    "utf16": ("name = 'x'".encode("utf-16"), "not a TOML text file"),
    "invalid": (b"name = = 3\n", "invalid TOML"),
    "empty": (b"", "missing key"),
    "duplicate-key": (b"name = 'a'\nname = 'b'\n", "invalid TOML"),
    "table-only": (b"[x]\na = 1\n", "unknown key"),
}


@pytest.mark.parametrize("case", sorted(RAW))
def test_bad_target_file(case, files, work, refused):
    data, match = RAW[case]
    t = work / "t.toml"
    t.write_bytes(data)
    refused(["compile", files.qmodel, "--target", t, "-o", work / "build"], match)


@pytest.mark.parametrize("spec", ["zc707", "missing.toml", "."])
def test_unknown_target(spec, files, work, refused):
    refused(["compile", files.qmodel, "--target", spec, "-o", work / "build"],
            "neither a preset")


@pytest.mark.parametrize("kind", DIR_KINDS)
def test_bad_outdir(kind, files, work, bad_location, refused):
    path, match = bad_location(kind, "")
    refused(["compile", files.qmodel, "--target", "tiny", f"-o={path}"], match,
            keep=[work / "existing.npz"])


def test_outdir_checked_before_the_model_is_read(work, bad_location, refused):
    path, match = bad_location("file/", "")
    refused(["compile", work / "missing.npz", "--target", "tiny", f"-o={path}"], match)
