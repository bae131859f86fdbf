"""Benchmark: compile VGG16-SVD (architecture, zero weights) for zc706-paper; goal ≤ 2 s.

    .venv/bin/python benchmarks/bench_compile.py [--model vgg16-svd] [--target zc706-paper]
        [--repeat 5] [--profile]

Times `compile_architecture` (mapping, tiling search, allocation, code generation, manifest,
overlap check) in one process after one warm-up run: wall-clock and process CPU time (the CPU
time is what the compiler costs; the wall clock also shows the machine's load). Encoding the
program to bytes is timed separately. Writing files is not included.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg16-svd")
    ap.add_argument("--target", default="zc706-paper")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from deepfpga import zoo
    from deepfpga.compiler import compile_architecture
    from deepfpga.hw.config import load_config

    cfg = load_config(args.target)
    graph = zoo.get(args.model)
    c = compile_architecture(graph, cfg)           # warm-up (imports, caches)
    wall, cpu, enc = [], [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        c = compile_architecture(graph, cfg)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        c.program_bytes()
        enc.append(time.perf_counter() - t0)
    p = c.manifest.program
    print(f"{args.model} on {cfg.name}: {p.instructions:,} instructions ({p.load:,} LOAD,"
          f" {p.calc:,} CALC, {p.save:,} SAVE), {len(c.manifest.layers)} stages,"
          f" DDR image {c.manifest.ddr_size / 1e6:.1f} MB")
    print(f"compile_architecture: wall best {min(wall):.3f} s, median {statistics.median(wall):.3f}"
          f" s; CPU best {min(cpu):.3f} s, median {statistics.median(cpu):.3f} s"
          f" ({args.repeat} runs; goal ≤ 2 s)")
    print(f"encode program: best {min(enc):.3f} s; load average {os.getloadavg()[0]:.1f}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        compile_architecture(graph, cfg)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(15)


if __name__ == "__main__":
    main()
