"""Fit the resource model's LUT and FF costs per unit to the recorded syntheses.

    .venv/bin/python benchmarks/fit_resources.py            # coefficients, residuals, leave-one-out

Reads benchmarks/synth_results.json (written by bench_synth.py; records marked `superseded`
are left out; a record without `finalize_lanes` measured the RTL whose finalize had one lane)
and fits, by least squares,
`deepfpga.hw.resources`' per-unit costs on the 7-series designs: LUT = fixed + rotation_bits +
lane_lut_bits (+ the memories' LUTs, cascade multiplexers and the finalize lanes beyond the
first, which are structural), FF = fixed + lane_ff_bits (+ the finalize lanes beyond the
first). ECP5 takes the 7-series per-unit costs; only its fixed parts are fitted (to the ECP5
designs in FIT_ECP5).
tests/hw/test_resources_synth.py checks that the constants in resources.py are this fit.
Leave-one-out shows how well each design is predicted by the others: the test of the model's
form.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from deepfpga.hw.devices import get_device
from deepfpga.hw.resources import (
    FF_TERMS,
    LUT_TERMS,
    estimate,
    fabric_units,
    fixed_ff_units,
    fixed_lut_units,
    record_finalize_lanes,
)

RESULTS = Path(__file__).with_name("synth_results.json")
FIT_ECP5 = ("tiny",)          # small8 on ECP5 stays a prediction


def _design_config(name: str):
    spec = importlib.util.spec_from_file_location("bench_synth",
                                                  Path(__file__).with_name("bench_synth.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.design_config(name)


def _rows(designs: dict[str, dict]):
    for name, rec in designs.items():
        if "superseded" in rec:       # an RTL that has changed since in what it measures
            continue
        cfg = _design_config(name)
        dev = get_device(cfg.device)
        lanes = record_finalize_lanes(rec)     # the RTL the record measured
        units = fabric_units(cfg, dev, lanes)
        # what is not fitted: distributed-RAM LUTs and the block-RAM cascade multiplexers
        known = estimate(cfg, lanes).lutram_luts + fixed_lut_units(units)
        yield (name, dev.family, units, rec["synth"]["total_luts"] - known,
               rec["synth"]["ffs"] - fixed_ff_units(units))


def _lstsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(a, y, rcond=None)[0]


def fit(designs: dict[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{"lut"|"ff": {family: {term: cost}}} from the recorded designs."""
    rows = list(_rows(designs))
    xc7 = [r for r in rows if r[1] == "7series"]
    out: dict[str, dict[str, dict[str, float]]] = {"lut": {}, "ff": {}}
    for kind, terms, col in (("lut", LUT_TERMS, 3), ("ff", FF_TERMS, 4)):
        a = np.array([[r[2][t] for t in terms] for r in xc7])
        y = np.array([float(r[col]) for r in xc7])
        coef = dict(zip(terms, _lstsq(a, y).tolist(), strict=True))
        out[kind]["7series"] = coef
        ecp5 = [r for r in rows if r[1] == "ecp5" and r[0] in FIT_ECP5]
        rest = [r[col] - sum(coef[t] * r[2][t] for t in terms if t != "fixed") for r in ecp5]
        out[kind]["ecp5"] = {**coef, "fixed": float(np.mean(rest))}
    return out


def leave_one_out(designs: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per 7-series design: the LUT and FF error (%) of the fit made without it."""
    rows = [r for r in _rows(designs) if r[1] == "7series"]
    out = {}
    for i, (name, _, units, lut, ff) in enumerate(rows):
        others = rows[:i] + rows[i + 1:]
        errs = {}
        for kind, terms, col, y in (("lut", LUT_TERMS, 3, lut), ("ff", FF_TERMS, 4, ff)):
            c = _lstsq(np.array([[r[2][t] for t in terms] for r in others]),
                       np.array([float(r[col]) for r in others]))
            errs[kind] = 100 * (sum(ci * units[t] for ci, t in zip(c, terms, strict=True)) - y) / y
        out[name] = errs
    return out


def main() -> None:
    designs = json.loads(RESULTS.read_text())["designs"]
    for kind, fams in fit(designs).items():
        for fam, coef in fams.items():
            print(kind, fam, {k: round(v, 4) for k, v in coef.items()})
    print("leave-one-out error % (7-series):")
    for name, e in leave_one_out(designs).items():
        print(f"  {name:12s} LUT {e['lut']:+6.1f}  FF {e['ff']:+6.1f}")


if __name__ == "__main__":
    main()
