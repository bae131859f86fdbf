"""The timing model against the accelerator RTL: per-layer, per-instruction-kind and frame
cycles of fmnist-vgg, fmnist-alex and fmnist-resnet on `tiny` (16-bit) and `zedboard` (8-bit).

    .venv/bin/python benchmarks/bench_calibration.py [--models fmnist-vgg fmnist-alex]
        [--targets tiny zedboard] [--json | --markdown]

Per combination: quantize (100 calibration images), compile, run one test image on the RTL
under Verilator (the build is cached per config), time the same program with the timing
simulator, and print per layer RTL cycles, model cycles and the error (model − RTL) / RTL,
per instruction kind the summed durations, and the frame. The goal (issue 13): every layer
within 5 %, every frame within 3 %; the exit status is 1 when a combination misses it.
"""

from __future__ import annotations

import argparse
import json
import sys

from deepfpga import pipeline as flow
from deepfpga.quant.reference import quantize_input
from deepfpga.rtl.accel.driver import RtlRunner, build_accelerator
from deepfpga.sim.calibration import Calibration, compare
from deepfpga.sim.timing import simulate_timing

BITS = {"tiny": "16", "zedboard": "8"}
LAYER_GOAL, FRAME_GOAL = 0.05, 0.03


def measure(model: str, target: str) -> Calibration:
    run = flow.RunConfig(model=model, target=target, bits=BITS.get(target, "8"), images=1,
                         calib_size=100, out=None)
    st = flow.run_flow(run, steps=flow.STEPS[:5])      # target, model, data, quantize, compile
    c, hw = st.compiled, st.hw
    x_int, _ = quantize_input(st.qmodel, st.test.x[:1])
    with RtlRunner(c, build_accelerator(hw)) as r:
        res = r.run(x_int[:1])
    if not res.ok:
        raise SystemExit(f"{model} on {target}: the RTL failed: {res.error_message}")
    return compare(c, res.trace, res.cycles[0], simulate_timing(c))


def _table(model: str, target: str, cal: Calibration) -> str:
    lines = [f"{model} on {target}", f"{'':10} {'RTL cycles':>12} {'model cycles':>13}"
             f" {'error %':>8}"]
    for r in (*cal.layers, *cal.kinds, cal.frame):
        lines.append(f"{r.name:10} {r.rtl:12,} {r.model:13,} {100 * r.error:+8.2f}")
    return "\n".join(lines)


def _markdown(model: str, target: str, cal: Calibration) -> str:
    lines = [f"{model}, `{target}` ({BITS.get(target, '8')}-bit):", "",
             "| layer | RTL cycles | model cycles | error % |", "|---|---|---|---|"]
    for r in (*cal.layers, *cal.kinds, cal.frame):
        lines.append(f"| {r.name} | {r.rtl:,} | {r.model:,} | {100 * r.error:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["fmnist-vgg", "fmnist-alex", "fmnist-resnet"])
    ap.add_argument("--targets", nargs="+", default=["tiny", "zedboard"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="per-layer tables for docs/timing.md")
    args = ap.parse_args()
    out, ok = [], True
    for model in args.models:
        for target in args.targets:
            cal = measure(model, target)
            met = (abs(cal.worst_layer().error) <= LAYER_GOAL
                   and abs(cal.frame.error) <= FRAME_GOAL)
            ok &= met
            out.append({"model": model, "target": target, "goal_met": met,
                        "rows": [{"name": r.name, "rtl": r.rtl, "model": r.model,
                                  "error": r.error}
                                 for r in (*cal.layers, *cal.kinds, cal.frame)]})
            if args.markdown:
                print(_markdown(model, target, cal))
            elif not args.json:
                print(_table(model, target, cal))
                worst = cal.worst_layer()
                print(f"worst layer {worst.name} {100 * worst.error:+.2f} %, frame"
                      f" {100 * cal.frame.error:+.3f} %: goal {'met' if met else 'MISSED'}")
                print()
    if args.json:
        print(json.dumps(out, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
