"""The resource model's LUT and FF costs per unit, fitted to the recorded syntheses.

Least squares over the current 7-series records (synth_designs; `superseded` ones are left
out): LUT = fixed + rotation_bits + lane_lut_bits (+ the memories' LUTs, cascade
multiplexers and the finalize lanes beyond the first, which are structural, not fitted), FF =
fixed + lane_ff_bits (+ the finalize lanes beyond the first). ECP5 takes the
7-series per-unit costs; only its fixed parts are fitted, to the ECP5 designs in FIT_ECP5.
`hw.resources._LUT_COSTS / _FF_COSTS` are this fit (tests/hw/test_resources_synth.py checks it;
benchmarks/fit_resources.py --write puts a new fit there). Leave-one-out predicts each design
by the fit of the others: the test of the model's form.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
from deepfpga.rtl.synth_designs import design_config

FIT_ECP5 = ("tiny",)          # small8 on ECP5 stays a prediction

Fit = dict[str, dict[str, dict[str, float]]]     # {"lut"|"ff": {family: {term: cost}}}


def current(designs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The records the model is held to: not superseded by a change of the RTL since."""
    return {k: v for k, v in designs.items() if "superseded" not in v}


def _rows(designs: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, dict, float, float]]:
    for name, rec in current(designs).items():
        cfg = design_config(name)
        dev = get_device(cfg.device)
        lanes = record_finalize_lanes(rec)     # the RTL the record measured
        units = fabric_units(cfg, dev, lanes)
        # not fitted: distributed-RAM LUTs, cascade multiplexers, finalize lanes beyond the first
        known = estimate(cfg, lanes).lutram_luts + fixed_lut_units(units)
        yield (name, dev.family, units, rec["synth"]["total_luts"] - known,
               rec["synth"]["ffs"] - fixed_ff_units(units))


def _lstsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(a, y, rcond=None)[0]


def fit(designs: dict[str, dict[str, Any]]) -> Fit:
    rows = list(_rows(designs))
    xc7 = [r for r in rows if r[1] == "7series"]
    out: Fit = {"lut": {}, "ff": {}}
    for kind, terms, col in (("lut", LUT_TERMS, 3), ("ff", FF_TERMS, 4)):
        a = np.array([[r[2][t] for t in terms] for r in xc7])
        y = np.array([float(r[col]) for r in xc7])
        coef = dict(zip(terms, _lstsq(a, y).tolist(), strict=True))
        out[kind]["7series"] = coef
        ecp5 = [r for r in rows if r[1] == "ecp5" and r[0] in FIT_ECP5]
        rest = [r[col] - sum(coef[t] * r[2][t] for t in terms if t != "fixed") for r in ecp5]
        out[kind]["ecp5"] = {**coef, "fixed": float(np.mean(rest))}
    return out


def leave_one_out(designs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
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


def rounded(f: Fit) -> Fit:
    """The fit as resources.py writes it: fixed parts to 0.01, per-unit costs to 1e-4."""
    return {kind: {fam: {t: round(v, 2) if t == "fixed" else round(v, 4) for t, v in c.items()}
                   for fam, c in fams.items()} for kind, fams in f.items()}
