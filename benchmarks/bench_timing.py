"""Benchmark: timing simulation of VGG16-SVD (architecture) on zc706-paper; goal ≤ 1 s.

    .venv/bin/python benchmarks/bench_timing.py [--model vgg16-svd] [--target zc706-paper]
    .venv/bin/python benchmarks/bench_timing.py --agreement [--keep 8]

Compilation is done once and not timed; the simulation is run `--repeat` times and the best and
median wall times are printed. `--agreement` instead compares the simulator's `estimate_stage`
with the compiler's closed-form `estimate` over the tiler's `--keep` best candidates of every
stage: ratio, time per call, and what re-ranking those candidates by simulation would gain.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from deepfpga.compiler import compile_architecture
from deepfpga.hw.config import AcceleratorConfig, load_config
from deepfpga.sim.timing import simulate_timing
from deepfpga.zoo import get


def agreement(model: str, cfg: AcceleratorConfig, keep: int) -> None:
    from deepfpga.compiler.compile import architecture_model
    from deepfpga.compiler.mapping import map_network
    from deepfpga.compiler.tiling import choose, estimate
    from deepfpga.sim.timing import estimate_stage

    m = map_network(architecture_model(get(model), cfg), cfg)
    ratios, t_closed, t_sim, chosen, best = [], 0.0, 0.0, 0.0, 0.0
    for st in m.stages:
        sims = []
        for t, _ in choose(st, cfg, keep=keep).top:
            t0 = time.perf_counter()
            e = estimate(st, t, cfg)
            t1 = time.perf_counter()
            s = estimate_stage(st, t, cfg)
            t2 = time.perf_counter()
            t_closed, t_sim = t_closed + t1 - t0, t_sim + t2 - t1
            ratios.append(s / e)
            sims.append(s)
        chosen, best = chosen + sims[0], best + min(sims)
    r = np.array(ratios)
    print(f"{model} on {cfg.name}: {len(r)} tilings ({keep} best of {len(m.stages)} stages)")
    print(f"simulated / closed form: median {np.median(r):.3f}, min {r.min():.3f},"
          f" max {r.max():.3f}, mean |diff| {100 * np.mean(abs(r - 1)):.1f} %")
    print(f"per call: closed form {1e3 * t_closed / len(r):.1f} ms,"
          f" simulator {1e3 * t_sim / len(r):.1f} ms")
    print(f"stages in isolation: tiler's choice {1e3 * chosen:.2f} ms, best of the candidates"
          f" by simulation {1e3 * best:.2f} ms ({100 * (1 - best / chosen):.2f} % less) for"
          f" {t_sim:.1f} s of simulation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg16-svd")
    ap.add_argument("--target", default="zc706-paper")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--agreement", action="store_true",
                    help="compare estimate_stage with the closed-form cost model instead")
    ap.add_argument("--keep", type=int, default=8)
    args = ap.parse_args()
    cfg = load_config(args.target)
    if args.agreement:
        agreement(args.model, cfg, args.keep)
        return
    t0 = time.perf_counter()
    compiled = compile_architecture(get(args.model), cfg)
    t_compile = time.perf_counter() - t0
    program = compiled.program
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        timing = simulate_timing(compiled)
        times.append(time.perf_counter() - t0)
    print(f"{args.model} on {args.target}: {len(program.instructions):,} instructions"
          f" (compiled in {t_compile:.2f} s)")
    print(f"simulate_timing: best {min(times):.3f} s, median {statistics.median(times):.3f} s"
          f" over {args.repeat} runs (goal ≤ 1 s)")
    print(f"result: {timing.cycles:,} cycles, {timing.seconds * 1e3:.1f} ms, {timing.fps:.2f} fps,"
          f" CONV {timing.conv_gops:.1f} GOP/s, overall {timing.gops:.1f} GOP/s")


if __name__ == "__main__":
    main()
