"""Fit the resource model's LUT and FF costs per unit to the recorded syntheses.

    .venv/bin/python benchmarks/fit_resources.py            # coefficients, leave-one-out
    .venv/bin/python benchmarks/fit_resources.py --write    # ... and put them in resources.py

Reads benchmarks/synth_results.json (bench_synth.py's records) and fits as
`deepfpga.rtl.synth_fit` describes; tests/hw/test_resources_synth.py checks that the constants
in src/deepfpga/hw/resources.py are this fit, so a new or changed record needs `--write`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from deepfpga.fileio import atomic_write_text
from deepfpga.rtl.synth_fit import Fit, fit, leave_one_out, rounded

RESULTS = Path(__file__).with_name("synth_results.json")
RESOURCES = Path(__file__).resolve().parents[1] / "src/deepfpga/hw/resources.py"


def _table(name: str, costs: dict[str, dict[str, float]]) -> str:
    rows = []
    for fam, c in costs.items():
        inner = ", ".join(f"{json.dumps(t)}: {v}" for t, v in c.items())
        rows.append(f"    {json.dumps(fam)}: {{{inner}}},\n")
    return f"{name} = {{\n{''.join(rows)}}}\n"


def write_constants(f: Fit, path: Path = RESOURCES) -> None:
    """Replace the _LUT_COSTS and _FF_COSTS tables of resources.py by the rounded fit."""
    src, r = path.read_text(), rounded(f)
    for name, kind in (("_LUT_COSTS", "lut"), ("_FF_COSTS", "ff")):
        src, n = re.subn(rf"^{name} = \{{\n(?:    .*\n)+\}}\n", _table(name, r[kind]), src,
                         count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"fit_resources: {name} table not found in {path}")
    atomic_write_text(path, src)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true",
                    help=f"write the fitted constants into {RESOURCES.name}")
    args = ap.parse_args()
    designs = json.loads(RESULTS.read_text())["designs"]
    f = fit(designs)
    for kind, fams in rounded(f).items():
        for fam, coef in fams.items():
            print(kind, fam, coef)
    print("leave-one-out error % (7-series):")
    for name, e in leave_one_out(designs).items():
        print(f"  {name:12s} LUT {e['lut']:+6.1f}  FF {e['ff']:+6.1f}")
    if args.write:
        write_constants(f)
        print(f"wrote {RESOURCES}")


if __name__ == "__main__":
    main()
