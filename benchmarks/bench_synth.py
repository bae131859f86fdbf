"""Synthesis of the whole accelerator for the presets, against the resource model.

    .venv/bin/python benchmarks/bench_synth.py [--design NAME ...] [--workdir DIR]
    .venv/bin/python benchmarks/bench_synth.py --record NAME=FILE   # a `rtl synth --json` run
    .venv/bin/python benchmarks/bench_synth.py --markdown          # docs/rtl.md's tables

Runs `deepfpga.rtl.synth.synthesize_accel` (what `deepfpga rtl synth` runs) for each design of
`deepfpga.rtl.synth_designs.DESIGNS` —
`tiny` on LFE5U-85F with nextpnr (Fmax), `zedboard` on XC7Z020, `zc706` and `zc706-8` on
XC7Z045, and the small ones `tiny-xc7` (tiny on XC7Z020), `small8` (2 PEs, 8-bit, on
LFE5U-85F: the slow test's design) and `small8-xc7` — and writes every measured figure with
`deepfpga.hw.resources.estimate`'s beside it to benchmarks/synth_results.json (read by
tests/hw/test_resources_synth.py). Each design's Verilog, logs and netlists stay in
WORKDIR/<design>; a finished run of the same Verilog there is read, not repeated, so the
script can be re-run cheaply after the model changes. zc706 takes about an hour of one core;
running designs in separate processes at once is safe (the results file is locked and merged).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepfpga.errors import InputError
from deepfpga.fileio import atomic_write_json
from deepfpga.hw.resources import estimate, record_finalize_lanes
from deepfpga.rtl.synth import synthesize_accel
from deepfpga.rtl.synth_designs import DESIGNS, design_config, make_record

RESULTS = Path(__file__).with_name("synth_results.json")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                 if ln.startswith("Model name")), platform.processor())


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


@contextmanager
def _locked_results() -> Iterator[dict]:
    """The results file's designs, written back on exit; runs of other designs at the same time
    (one process per design is how the big ones are run) wait for the lock and keep theirs."""
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"designs": {}}
        designs = dict(old.get("designs", {}))
        yield designs
        atomic_write_json(RESULTS, {"cpu": _cpu(), "command": "benchmarks/bench_synth.py",
                                    "designs": designs})


def _summary(name: str, rec: dict) -> str:
    line = ", ".join(f"{k} {v['synthesized']:,.1f} vs {v['estimate']:,.1f}"
                     f" ({v['error_pct']:+.1f}%)" for k, v in rec["compare"].items())
    r = rec["synth"]
    fmax = f", Fmax {r['fmax_mhz']} MHz" if r.get("fmax_mhz") is not None else ""
    pnr = f", pnr {r['pnr_seconds']} s" if r.get("pnr_seconds") is not None else ""
    return f"{name} on {rec['device']}: {line}{fmax}; synth {r['synth_seconds']} s{pnr}"


def _read_record(spec: str) -> tuple[str, dict]:
    name, sep, path = spec.partition("=")
    if not sep or name not in DESIGNS:
        raise InputError(f"--record {spec!r}: expected DESIGN=FILE with DESIGN one of"
                         f" {', '.join(DESIGNS)}")
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"--record {spec!r}: cannot read {path}: {e}") from None
    if not isinstance(result, dict):
        raise InputError(f"--record {spec!r}: {path} is not a JSON object")
    return name, make_record(name, result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", action="append", choices=sorted(DESIGNS),
                    help="design to run (repeatable; default: all)")
    ap.add_argument("--record", action="append", metavar="DESIGN=FILE", default=[],
                    help="record the output of `deepfpga rtl synth --json` for DESIGN's config"
                         " (repeatable); no synthesis")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache/deepfpga/synth"),
                    help="one directory per design: Verilog, logs, netlists (reused)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per tool run")
    ap.add_argument("--markdown", action="store_true",
                    help="print the docs/rtl.md tables from the recorded results; no synthesis")
    args = ap.parse_args()
    if args.markdown:
        old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"designs": {}}
        print(markdown(old["designs"]), flush=True)
        return
    if args.record:
        try:
            records = [_read_record(spec) for spec in args.record]
        except InputError as e:
            raise SystemExit(f"bench_synth: error: {e}") from None
        with _locked_results() as designs:
            for name, rec in records:
                designs[name] = rec
                print(_summary(name, rec))
    else:
        for name in args.design or list(DESIGNS):
            r = synthesize_accel(design_config(name), workdir=Path(args.workdir) / name,
                                 pnr=DESIGNS[name][2], timeout_s=args.timeout)
            rec = make_record(name, r.to_dict())
            print(_summary(name, rec))
            with _locked_results() as designs:     # each design as it finishes
                designs[name] = rec
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
