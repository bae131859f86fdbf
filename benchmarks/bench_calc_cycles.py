"""Datapath CALC cycles of a compiled zoo model, per layer (the formula of rtl/accel/timing.py,
which tests/rtl/accel/test_calc_timing.py checks cycle for cycle against amaranth.sim).

    .venv/bin/python benchmarks/bench_calc_cycles.py [--model fmnist-vgg] [--target zedboard]

Prints, per layer: CALCs, CALC cycles, products (terms) and products per cycle. CALC cycles only:
LOADs and SAVEs run concurrently on their own engines.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from deepfpga import zoo
from deepfpga.compiler.compile import compile_architecture
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Calc, CalcKind
from deepfpga.rtl.accel.timing import calc_cycles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fmnist-vgg")
    ap.add_argument("--target", default="zedboard")
    args = ap.parse_args()
    cfg = load_config(args.target)
    comp = compile_architecture(zoo.get(args.model), cfg)
    names = {d.index: d.name for d in comp.manifest.layers}
    cycles: dict[int, int] = defaultdict(int)
    calcs: dict[int, int] = defaultdict(int)
    terms: dict[int, int] = defaultdict(int)
    for ins in comp.program.instructions:
        if isinstance(ins, Calc) and ins.to and ins.ti:
            cycles[ins.layer] += calc_cycles(cfg, ins)
            calcs[ins.layer] += 1
            taps = 1 if ins.kind == CalcKind.FC else 9
            terms[ins.layer] += ins.to * ins.ti * taps * ins.out_rows * ins.out_cols
    print(f"{args.model} on {args.target}")
    print(f"{'layer':12} {'CALCs':>6} {'cycles':>10} {'products':>10} {'per cycle':>9}")
    for k in sorted(cycles):
        print(f"{names[k]:12} {calcs[k]:6} {cycles[k]:10,} {terms[k]:10,}"
              f" {terms[k] / cycles[k]:9.1f}")
    total, prods = sum(cycles.values()), sum(terms.values())
    print(f"{'total':12} {sum(calcs.values()):6} {total:10,} {prods:10,} {prods / total:9.1f}")


if __name__ == "__main__":
    main()
