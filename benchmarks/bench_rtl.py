"""PE RTL: cycles per tile (vs one pixel per cycle) and simulation speed of both simulators.

    .venv/bin/python benchmarks/bench_rtl.py [--target tiny] [--tiles 3] [--size 32]

Runs `--tiles` full-size tiles (size×size, padding 1, stride 1, no stalls) through the PE in
amaranth.sim and in Icarus Verilog, checks both bit-exactly against the reference, and prints the
PE's cycles per tile against the ideal (padded pixels: one pixel per cycle) and each simulator's
simulated cycles per wall-clock second.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np

from deepfpga.hw.config import load_config
from deepfpga.rtl.icarus import run_icarus
from deepfpga.rtl.params import PEParams
from deepfpga.rtl.simulate import simulate
from deepfpga.rtl.tiles import expected, random_job


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="tiny")
    ap.add_argument("--tiles", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()

    p = PEParams.from_config(load_config(args.target))
    size = min(args.size, p.max_row_width)
    rng = np.random.default_rng(0)
    jobs = [random_job(rng, p, width=size, height=size, pad=(1, 1, 1, 1), stride=1,
                       pool=bool(k % 2)) for k in range(args.tiles)]
    wants = [expected(j, p) for j in jobs]

    # CPU seconds as well as wall seconds: the machine may be shared.
    t0, c0 = time.perf_counter(), time.process_time()
    outs = simulate(p, jobs)
    t_py, c_py = time.perf_counter() - t0, time.process_time() - c0
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), _child_cpu() + time.process_time()
        vouts = run_icarus(p, jobs, tmp, valid_pct=100, ready_pct=100)
        t_iv, c_iv = time.perf_counter() - t0, _child_cpu() + time.process_time() - c0

    cycles = sum(o.cycles for o in outs)
    for (want, nsat), o, v in zip(wants, outs, vouts, strict=True):
        assert np.array_equal(o.values, want) and o.sat_count == nsat
        assert np.array_equal(v.values, want) and v.sat_count == nsat
    ideal = sum(j.padded_shape[0] * j.padded_shape[1] for j in jobs)
    print(f"PE {p.tag()}: {args.tiles} tiles of {size}x{size} (+pad 1), bit-exact in both")
    vcycles = sum(v.cycles for v in vouts)
    print(f"cycles {cycles} (Icarus testbench count: {vcycles}), ideal (1 padded pixel/cycle)"
          f" {ideal}, overhead per tile {(cycles - ideal) / len(jobs):.1f} cycles,"
          f" efficiency {ideal / cycles:.3f}")
    print(f"amaranth.sim: {t_py:.2f} s wall, {c_py:.2f} s CPU, {cycles / c_py:,.0f} cycles per"
          " CPU second")
    print(f"icarus (incl. Verilog export + compile): {t_iv:.2f} s wall, {c_iv:.2f} s CPU,"
          f" {cycles / c_iv:,.0f} cycles per CPU second")


if __name__ == "__main__":
    main()
