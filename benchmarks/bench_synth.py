"""Synthesis of the whole accelerator for the presets, against the resource model.

    .venv/bin/python benchmarks/bench_synth.py [--design NAME ...] [--workdir DIR]

Runs `deepfpga.rtl.synth.synthesize_accel` (what `deepfpga rtl synth` runs) for each design —
`tiny` on LFE5U-85F with nextpnr (Fmax), `zedboard` on XC7Z020, `zc706` and `zc706-8` on
XC7Z045, and the small ones `tiny-xc7` (tiny on XC7Z020), `small8` (2 PEs, 8-bit, on
LFE5U-85F: the slow test's design) and `small8-xc7` — and writes every measured figure with
`deepfpga.hw.resources.estimate`'s beside it to benchmarks/synth_results.json (read by
tests/hw/test_resources_synth.py). Each design's Verilog, logs and netlists stay in
WORKDIR/<design>; a finished run of the same Verilog there is read, not repeated, so the
script can be re-run cheaply after the model changes. zc706 takes about an hour of one core.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

from deepfpga.fileio import atomic_write_json
from deepfpga.hw.config import AcceleratorConfig, load_config
from deepfpga.hw.engines import bank_count
from deepfpga.hw.resources import estimate, record_finalize_lanes
from deepfpga.rtl.synth import synthesize_accel

RESULTS = Path(__file__).with_name("synth_results.json")
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


def design_config(name: str) -> AcceleratorConfig:
    preset, changes, _ = DESIGNS[name]
    cfg = load_config(preset)
    return cfg.replace(name=name, **changes) if changes else cfg


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                 if ln.startswith("Model name")), platform.processor())


def compare(synth: dict[str, float], est: dict[str, float]) -> dict[str, dict[str, float]]:
    return {k: {"synthesized": synth[k], "estimate": est[k],
                "error_pct": 100 * (est[k] - synth[k]) / synth[k]} for k in synth}


_NAMES = {"dsps": "DSP", "bram36": "BRAM36-eq.", "luts": "LUT", "ffs": "FF"}


def markdown(designs: dict[str, dict]) -> str:
    """The tables of docs/rtl.md: what synthesis measured, and the estimate against it."""
    out = ["| design | device | DSP | BRAM36-eq. | LUT (logic + memory) | FF | Fmax |"
           " synth / P&R (s) |", "|---|---|---|---|---|---|---|---|"]
    for name, d in designs.items():
        r = d["synth"]
        fmax = f"{r['fmax_mhz']:.2f} MHz" if r.get("fmax_mhz") else "-"
        pnr = f" / {r['pnr_seconds']:,.0f}" if r.get("pnr_seconds") else ""
        mark = " (superseded)" if "superseded" in d else ""
        out.append(f"| `{name}`{mark} | {d['device']} | {r['dsps']} | {r['bram36_equivalent']:g} |"
                   f" {r['total_luts']:,} ({r['luts']:,} + {r['lutram_luts']:,}) |"
                   f" {r['ffs']:,} | {fmax} | {r['synth_seconds']:,.0f}{pnr} |")
    out += ["", "| design | device | resource | synthesized | estimate | error % |",
            "|---|---|---|---|---|---|"]
    for name, d in designs.items():
        if "superseded" in d:         # its RTL has changed since: no estimate to compare
            continue
        cfg = design_config(name)
        est = estimate(cfg, record_finalize_lanes(d)).used()
        for k, v in d["compare"].items():
            err = 100 * (est[k] - v["synthesized"]) / v["synthesized"]
            out.append(f"| `{name}` | {d['device']} | {_NAMES[k]} | {v['synthesized']:,g} |"
                       f" {est[k]:,g} | {err:+.1f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", action="append", choices=sorted(DESIGNS),
                    help="design to run (repeatable; default: all)")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache/deepfpga/synth"),
                    help="one directory per design: Verilog, logs, netlists (reused)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per tool run")
    ap.add_argument("--markdown", action="store_true",
                    help="print the docs/rtl.md tables from the recorded results; no synthesis")
    args = ap.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"designs": {}}
    if args.markdown:
        print(markdown(old["designs"]))
        return
    designs = dict(old.get("designs", {}))
    for name in args.design or list(DESIGNS):
        cfg = design_config(name)
        _, _, pnr = DESIGNS[name]
        r = synthesize_accel(cfg, workdir=Path(args.workdir) / name, pnr=pnr,
                             timeout_s=args.timeout)
        est = estimate(cfg)
        designs[name] = {
            "preset": DESIGNS[name][0], "device": cfg.device, "config_hash": cfg.hash().hex(),
            "finalize_lanes": bank_count(cfg),
            "synth": {**{k: v for k, v in r.to_dict().items()
                         if k not in ("cells", "params", "log_dir")}, "cells": r.cells},
            "compare": compare(r.used(), est.used()),
        }
        line = ", ".join(f"{k} {v['synthesized']:,.1f} vs {v['estimate']:,.1f}"
                         f" ({v['error_pct']:+.1f}%)" for k, v in designs[name]["compare"].items())
        fmax = f", Fmax {r.fmax_mhz} MHz" if r.fmax_mhz is not None else ""
        print(f"{name} on {cfg.device}: {line}{fmax}; synth {r.synth_seconds} s"
              + (f", pnr {r.pnr_seconds} s" if r.pnr_seconds is not None else ""))
    atomic_write_json(RESULTS, {"cpu": _cpu(), "command": "benchmarks/bench_synth.py",
                                "designs": designs})
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
