"""`deepfpga simulate MODEL --target T [--set KEY=VALUE]`: bad overrides and compiled dirs."""

from __future__ import annotations

import shutil

import pytest

SETS = {
    "clock-nan": ("clock_mhz=nan", "clock_mhz"),
    "clock-inf": ("clock_mhz=inf", "clock_mhz"),
    "clock-negative": ("clock_mhz=-1", "clock_mhz"),
    "clock-word": ("clock_mhz=fast", "clock_mhz"),
    "ddr-tiny": ("ddr_bandwidth_gbps=1e-300", "ddr_bandwidth_gbps"),
    "ddr-nan": ("ddr_bandwidth_gbps=nan", "ddr_bandwidth_gbps"),
    "overhead-float": ("burst_overhead_cycles=1.5", "burst_overhead_cycles"),
    "overhead-huge": ("burst_overhead_cycles=99999999999", "burst_overhead_cycles"),
    "pe-zero": ("num_pe=0", "num_pe"),
    "unknown-key": ("colour=red", "unknown config key"),
    "notes": ("notes=x", "unknown config key"),
    "no-equals": ("clock_mhz", "KEY=VALUE"),
    "no-key": ("=3", "KEY=VALUE"),
    "array": ("num_pe=[1, 2]", "num_pe"),
    "table": ("num_pe={a=1}", "num_pe"),
    "device-unknown": ("device=XC1", "XC1"),
}


@pytest.mark.parametrize("case", sorted(SETS))
def test_bad_set(case, refused):
    item, match = SETS[case]
    refused(["simulate", "fmnist-vgg", "--target", "zedboard", f"--set={item}", "--json"], match)


def test_compiled_dir_without_manifest(files, work, refused):
    d = work / "b"
    shutil.copytree(files.compiled, d)
    (d / "manifest.json").unlink()
    refused(["simulate", d, "--target", "tiny"], "manifest.json missing")


@pytest.mark.parametrize("text,match", [("{", "invalid JSON"), ("[1]", "JSON object"),
                                        ("\xff", "invalid JSON")])
def test_compiled_dir_bad_manifest(text, match, files, work, refused):
    d = work / "b"
    shutil.copytree(files.compiled, d)
    (d / "manifest.json").write_bytes(text.encode("latin-1"))
    refused(["simulate", d, "--target", "tiny"], match)


def test_compiled_for_another_target(files, refused):
    refused(["simulate", files.compiled, "--target", "zedboard"], "config")


def test_unknown_model(refused):
    refused(["simulate", "nope-net", "--target", "tiny"], "unknown model")


def test_set_on_a_compiled_dir_says_why(files, refused):
    refused(["simulate", files.compiled, "--target", "tiny", "--set", "clock_mhz=50"],
            "pass the model")


def test_space_to_depth_on_a_compiled_dir(files, refused):
    refused(["simulate", files.compiled, "--target", "tiny", "--space-to-depth", "off"],
            "applies when compiling")
