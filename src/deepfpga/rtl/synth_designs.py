"""The designs whose synthesis calibrates the resource model, and their records.

benchmarks/bench_synth.py synthesizes them and keeps one record per design in
benchmarks/synth_results.json; benchmarks/fit_resources.py fits the model's LUT/FF costs to the
records; tests/hw/test_resources_synth.py holds the model to them. A record is what synthesis
measured next to `hw.resources.estimate` for the same config (its hash says which). A record
whose RTL has since changed in what it measures carries `superseded` (why): it stays in the
tables as history and is left out of the fit and the test. `finalize_lanes`: the finalize's
width in the RTL the record measured (absent: one lane, before the B-wide finalize); the model
is compared with a record at that width (`hw.resources.record_finalize_lanes`).
"""

from __future__ import annotations

from typing import Any

from deepfpga.errors import InputError
from deepfpga.hw.config import AcceleratorConfig, load_config
from deepfpga.hw.engines import bank_count
from deepfpga.hw.resources import estimate

# name -> (preset, changes to it, place and route)
_SMALL8 = {"num_pe": 2, "data_bits": 8, "weight_bits": 8, "bias_bits": 8, "acc_bits": 32}
DESIGNS: dict[str, tuple[str, dict[str, object], bool]] = {
    "tiny": ("tiny", {}, True),
    "tiny-xc7": ("tiny", {"device": "XC7Z020"}, False),
    "small8": ("tiny", _SMALL8, False),          # the slow test's design (ECP5)
    "small8-xc7": ("tiny", {**_SMALL8, "device": "XC7Z020"}, False),
    "zedboard": ("zedboard", {}, False),
    "zc706": ("zc706", {}, False),
    "zc706-8": ("zc706-8", {}, False),
    # zc706-8 before its input buffer went 512 -> 448 KiB: this run found it at 496 BRAM36 (91 %)
    "zc706-8-512k": ("zc706-8", {"input_buffer_bytes": 524288}, False),
    # the DSE's best 8-bit point on XC7Z045 (BENCHMARKS.md, issue 17): B = 32, far from the
    # presets' B = 2..16, so it tests the LUT/FF model's form, not only its coefficients
    "dse-8x96": ("zc706", {"num_pe": 8, "convolvers_per_pe": 96, "data_bits": 8,
                           "weight_bits": 8, "bias_bits": 8, "acc_bits": 32,
                           "input_buffer_bytes": 786432, "output_buffer_bytes": 524288,
                           "weight_buffer_bytes": 86016, "fc_buffer_bytes": 393216,
                           "datain_port_num": 16, "weightin_port_num": 16,
                           "dataout_port_num": 8}, False),
}

# the keys of `deepfpga rtl synth --json` / SynthResult.to_dict that a record does not keep
_DROPPED = ("params", "log_dir", "fit", "fits")
_MEASURED = ("dsps", "bram36_equivalent", "total_luts", "ffs", "luts", "lutram_luts",
             "synth_seconds")


def design_config(name: str) -> AcceleratorConfig:
    if name not in DESIGNS:
        raise InputError(f"unknown synthesis design {name!r} (known: {', '.join(DESIGNS)})")
    preset, changes, _ = DESIGNS[name]
    cfg = load_config(preset)
    return cfg.replace(name=name, **changes) if changes else cfg


def compare(synth: dict[str, float], est: dict[str, float]) -> dict[str, dict[str, float]]:
    return {k: {"synthesized": synth[k], "estimate": est[k],
                "error_pct": 100 * (est[k] - synth[k]) / synth[k]} for k in synth}


def make_record(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The record of design `name` from a synthesis result (SynthResult.to_dict, or the output of
    `deepfpga rtl synth --target T --device D --json` for that design's config)."""
    missing = [k for k in _MEASURED if k not in result]
    if missing:
        raise InputError(f"synthesis result for {name!r} has no {missing[0]!r}"
                         " (expected `deepfpga rtl synth --json` output)")
    cfg = design_config(name)
    if str(result.get("device", cfg.device)).upper() != cfg.device.upper():
        raise InputError(f"synthesis result for {name!r} is for device {result['device']!r},"
                         f" the design is on {cfg.device}")
    synth = {k: v for k, v in result.items() if k not in _DROPPED}
    synth["design"] = name
    used = {"dsps": result["dsps"], "bram36": result["bram36_equivalent"],
            "luts": result["total_luts"], "ffs": result["ffs"]}
    return {"preset": DESIGNS[name][0], "device": cfg.device, "config_hash": cfg.hash().hex(),
            "finalize_lanes": bank_count(cfg), "synth": synth,
            "compare": compare(used, estimate(cfg).used())}
