"""The whole accelerator's RTL under Verilator: simulated cycles per CPU second and wall time
per fmnist-vgg image, checked bit-exact against the reference executor.

    .venv/bin/python benchmarks/bench_rtl_accel.py [--targets tiny zedboard] [--images 3]

Per target: quantize fmnist-vgg (8-bit on zedboard, 16-bit on tiny; 100 calibration images),
compile, build (or reuse) the Verilator model, run `--images` test images one after the other
on the RTL (host layers included), and report cycles per image, simulated cycles per CPU second
of this process (the C++ model runs in it), wall seconds per image, and the build time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepfpga import pipeline as flow
from deepfpga.quant.reference import ReferenceExecutor, quantize_input
from deepfpga.rtl.accel.driver import RtlRunner, build_accelerator

BITS = {"tiny": "16", "zedboard": "8", "zc706-paper": "16"}


def bench(target: str, images: int) -> dict[str, float]:
    cfg = flow.RunConfig(model="fmnist-vgg", target=target, bits=BITS.get(target, "8"),
                         images=images, calib_size=100, out=None)
    st = flow.run_flow(cfg, steps=flow.STEPS[:5])      # target, model, data, quantize, compile
    c, hw = st.compiled, st.hw
    t0 = time.perf_counter()
    build = build_accelerator(hw)
    t_build = time.perf_counter() - t0
    x_int, _ = quantize_input(st.qmodel, st.test.x[:images])
    with RtlRunner(c, build) as runner:
        runner.run(x_int[:1])                        # warm-up (first-touch, page faults)
        w0, c0 = time.perf_counter(), time.process_time()
        res = runner.run(x_int)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert res.ok, res.error_message
    ref = ReferenceExecutor.build(st.qmodel).run(x_int, keep=set(res.layers))
    for name, v in res.layers.items():
        assert np.array_equal(v, ref.layers[name]), f"{target}: {name} differs"
    cycles = sum(res.cycles)
    return {"cycles_per_image": res.cycles[0], "images": images,
            "cycles_per_cpu_s": cycles / cpu, "wall_s_per_image": wall / images,
            "cpu_s_per_image": cpu / images, "build_s": t_build, "cached": build.cached,
            "instructions": len(c.program.instructions),
            "frame_ms_at_clock": 1e3 * res.cycles[0] / (hw.clock_mhz * 1e6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["tiny", "zedboard"])
    ap.add_argument("--images", type=int, default=3)
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), "?")
    print(f"CPU: {cpu}")
    print(f"{'target':10} {'cycles/img':>12} {'ms@clk':>8} {'cycles/CPU s':>14} {'wall s/img':>11}"
          f" {'CPU s/img':>10} {'build s':>8}")
    for t in args.targets:
        r = bench(t, args.images)
        print(f"{t:10} {r['cycles_per_image']:12,} {r['frame_ms_at_clock']:8.3f}"
              f" {r['cycles_per_cpu_s']:14,.0f} {r['wall_s_per_image']:11.2f}"
              f" {r['cpu_s_per_image']:10.2f} {r['build_s']:8.1f}"
              f"{' (cached)' if r['cached'] else ''}")


if __name__ == "__main__":
    main()
