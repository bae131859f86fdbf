"""The timing model against the accelerator RTL: per-layer, per-instruction-kind and frame
cycles of fmnist-vgg, fmnist-alex and fmnist-resnet on `tiny` (16-bit) and `zedboard` (8-bit).

    .venv/bin/python benchmarks/bench_calibration.py [--models fmnist-vgg fmnist-alex]
        [--targets tiny zedboard] [--onnx] [--json | --markdown]

Per combination: quantize (100 calibration images), compile, run one test image on the RTL
under Verilator (the build is cached per config), time the same program with the timing
simulator, and print per layer RTL cycles, model cycles and the error (model − RTL) / RTL,
per instruction kind the summed durations, and the frame. `--onnx` adds the ONNX models of
scripts/make_onnx_models.py (quantized on random inputs, one random image; `--models` with no
name runs only those). The goal (issue 13): every layer
within 5 %, every frame within 3 %; the exit status is 1 when a combination misses it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np

from deepfpga import pipeline as flow
from deepfpga.compiler import Compiled, compile_model
from deepfpga.hw.config import load_config
from deepfpga.quant.reference import quantize_input
from deepfpga.rtl.accel.driver import RtlRunner, build_accelerator
from deepfpga.sim.calibration import Calibration, compare
from deepfpga.sim.timing import simulate_timing

BITS = {"tiny": "16", "zedboard": "8"}
LAYER_GOAL, FRAME_GOAL = 0.05, 0.03


def _on_rtl(c: Compiled, x_int: np.ndarray, label: str) -> Calibration:
    """One image of `x_int` through program `c` on its config's RTL, against the timing model."""
    with RtlRunner(c, build_accelerator(c.config)) as r:
        res = r.run(x_int[:1])
    if not res.ok:
        raise SystemExit(f"{label}: the RTL failed: {res.error_message}")
    return compare(c, res.trace, res.cycles[0], simulate_timing(c))


def measure(model: str, target: str) -> Calibration:
    run = flow.RunConfig(model=model, target=target, bits=BITS.get(target, "8"), images=1,
                         calib_size=100, out=None)
    st = flow.run_flow(run, steps=flow.STEPS[:5])      # target, model, data, quantize, compile
    x_int, _ = quantize_input(st.qmodel, st.test.x[:1])
    return _on_rtl(st.compiled, x_int, f"{model} on {target}")


def _onnx_script() -> ModuleType:
    """scripts/make_onnx_models.py: the ONNX models with kernels and shapes the zoo lacks."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_onnx_models.py"
    spec = importlib.util.spec_from_file_location("make_onnx_models", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure_onnx(mk: ModuleType, path: Path, target: str) -> Calibration:
    """As `measure`, for an ONNX model without a dataset: quantized on random inputs and one
    random image (`mk.quantized`, as scripts/make_onnx_models.py --rtl)."""
    _, q, x_int = mk.quantized(path, BITS.get(target, "8"), images=1)
    return _on_rtl(compile_model(q, load_config(target)), x_int, f"{path.stem} on {target}")


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
    ap.add_argument("--models", nargs="*", default=["fmnist-vgg", "fmnist-alex", "fmnist-resnet"],
                    help="zoo models (none: only --onnx)")
    ap.add_argument("--targets", nargs="+", default=["tiny", "zedboard"])
    ap.add_argument("--onnx", action="store_true",
                    help="also the ONNX models of scripts/make_onnx_models.py (5×5, 7×7/2,"
                         " 11×11/4, 1×1, 57×57 maps), quantized on random inputs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="per-layer tables for docs/timing.md")
    args = ap.parse_args()
    out, ok = [], True
    with tempfile.TemporaryDirectory(prefix="deepfpga-calibration-") as tmp:
        jobs = [(m, t, lambda m=m, t=t: measure(m, t)) for m in args.models for t in args.targets]
        if args.onnx:
            mk = _onnx_script()
            jobs += [(name, t, lambda p=p, t=t: measure_onnx(mk, p, t))
                     for name, p in mk.make_models(tmp).items() for t in args.targets]
        for model, target, run in jobs:
            cal = run()
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
