"""Benchmark: the functional simulator on VGG16 (224×224, random weights, 16-bit, zc706-paper)
for one image, side by side with float32 torch on the same network; goal ≤ 3× float32.

    .venv/bin/python benchmarks/bench_functional.py [--model vgg16] [--target zc706-paper]
        [--repeat 3] [--check] [--profile] [--method auto|f32|i8|f64|split|int64]

The model is `random_qmodel` on the zoo architecture (16-bit data, weights and biases); the float
network has the same weights dequantized (q·2^-fl) as float32 and runs through
`deepfpga.ir.float_exec.run_float` (torch). Compilation is done once and timed separately. Both
sides get one warm-up run, then `--repeat` timed runs in one process, alternating; best and
median are printed. `--check` also runs the bit-exact reference executor and asserts the
simulator's output equals it; `--profile` prints where the simulator's time goes, per
instruction kind (LOAD / CALC / SAVE) and per function. `--method` forces the exact product
method of the CONV CALCs (default: the fastest measured here, per CALC group).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections import Counter

import numpy as np


def float_graph(graph, q):
    """The architecture with the quantized model's weights dequantized to float32."""
    params = {}
    for name, arrays in q.weights.items():
        f = q.formats[name]
        params[name] = {"weight": np.ldexp(arrays["weight"].astype(np.float64),
                                           -f.weight.fl).astype(np.float32)}
        if "bias" in arrays:
            params[name]["bias"] = np.ldexp(arrays["bias"].astype(np.float64),
                                            -f.bias.fl).astype(np.float32)
    return graph.replace(params=params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--target", default="zc706-paper")
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare with the reference executor")
    ap.add_argument("--profile", action="store_true", help="profile one simulation")
    ap.add_argument("--method", default="auto", help="exact product method of CONV CALCs")
    args = ap.parse_args()

    import torch

    from deepfpga import zoo
    from deepfpga.compiler import compile_model
    from deepfpga.hw.config import load_config
    from deepfpga.ir.float_exec import run_float
    from deepfpga.quant.random_model import random_qmodel
    from deepfpga.quant.reference import execute
    from deepfpga.sim.functional import simulate

    rng = np.random.default_rng(args.seed)
    cfg = load_config(args.target)
    graph = zoo.get(args.model)
    t0 = time.perf_counter()
    q = random_qmodel(graph, rng, bw_d=args.bits, bw_w=args.bits, bw_b=args.bits)
    t_q = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = compile_model(q, cfg)
    t_compile = time.perf_counter() - t0
    fg = float_graph(graph, q)
    fmt = q.input_format
    x_int = rng.integers(fmt.qmin, fmt.qmax, size=(1, *graph.input_shape), endpoint=True)
    x_float = np.ldexp(x_int.astype(np.float64), -fmt.fl).astype(np.float32)
    counts = Counter(type(i).__name__ for i in compiled.program.instructions)
    print(f"{args.model} {args.bits}-bit on {cfg.name}: {len(compiled.program.instructions):,}"
          f" instructions ({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items()))}),"
          f" DDR image {len(compiled.ddr_image) / 1e6:.0f} MB; random model {t_q:.1f} s,"
          f" compiled in {t_compile:.1f} s; torch threads {torch.get_num_threads()}")

    def sim():
        return simulate(compiled, x_int, method=args.method)

    def flt():
        return run_float(fg, x_float)

    res = sim()
    flt()
    t_sim, t_flt, c_sim, c_flt = [], [], [], []
    for _ in range(args.repeat):
        for fn, wall, cpu in ((sim, t_sim, c_sim), (flt, t_flt, c_flt)):
            t0, p0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - p0)
    med = statistics.median
    print(f"functional simulator: wall best {min(t_sim):.2f} s, median {med(t_sim):.2f} s;"
          f" CPU median {med(c_sim):.2f} s")
    print(f"float32 torch:        wall best {min(t_flt):.3f} s, median {med(t_flt):.3f} s;"
          f" CPU median {med(c_flt):.3f} s")
    print(f"ratio (median wall): {med(t_sim) / med(t_flt):.1f}x, (median CPU):"
          f" {med(c_sim) / med(c_flt):.1f}x (goal <= 3x), over {args.repeat} runs each")

    if args.check:
        t0 = time.perf_counter()
        ref = execute(q, x_int, keep={d.output for d in compiled.manifest.layers})
        t_ref = time.perf_counter() - t0
        bad = {name: int(np.count_nonzero(res.layers[name] != ref.layers[name]))
               for name in ref.layers}
        assert not any(bad.values()), f"simulator differs from the reference: {bad}"
        print(f"check: all {len(bad)} stage outputs equal the reference executor"
              f" (reference {t_ref:.2f} s)")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        sim()
        prof.disable()
        st = pstats.Stats(prof)
        total = max(v[3] for v in st.stats.values())  # the outermost call's cumulative time
        print(f"\nprofile of one simulation ({total:.2f} s under the profiler), the simulator's"
              " own functions by cumulative time:")
        mine = sorted(((v[3], v[1], v[2], k) for k, v in st.stats.items()
                       if any(m in k[0] for m in ("sim/functional", "compiler/"))),
                      reverse=True)
        for ct, nc, tt, (path, line, name) in mine[:16]:
            where = f"{path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}:{line}"
            print(f"  {name:<18} {where:<28} calls {nc:>7,}  own {tt:6.2f} s"
                  f"  cumulative {ct:6.2f} s ({100 * ct / total:4.1f} %)")
        st.sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
