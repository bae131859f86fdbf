"""Benchmark: design-space exploration of VGG16-SVD (deepfpga dse).

    .venv/bin/python benchmarks/bench_dse.py --rate [--points 48]
    .venv/bin/python benchmarks/bench_dse.py --fronts [--budget 200]
    .venv/bin/python benchmarks/bench_dse.py --check dse-out/best.toml [--images 1]

`--rate`: points per second of a genetic sweep (seed 0, the default space) on XC7Z045 at 8
bits, in-process and on a local Ray of 2 workers (Ray's start-up timed apart); the two fronts
must be equal. `--fronts`: the sweep on XC7Z045 and XC7Z020 at 8 and 16 bits, the best point of
each beside the hand-made presets of that chip (as they are and at the sweep's widths) and the
paper's 4.45 fps (ZC706, 16-bit). `--check TOML`: VGG16-SVD with random weights at the
target's widths, compiled for a target (a `best.toml`) and run on the functional simulator,
every tensor compared with the reference executor. Outputs go to a temporary directory unless
`--out` is given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from deepfpga.cli.simulate import PAPER
from deepfpga.dse.flow import Request, run
from deepfpga.parallel import InProcess, RayCluster

MODEL = "vgg16-svd"


def sweep(out: Path, device: str, bits: int, budget: int, executor: Any) -> dict[str, Any]:
    req = Request(MODEL, device, bits=bits, budget=budget, seed=0, out=out, paper=PAPER)
    summary, _ = run(req, executor)
    return summary


def rate(out: Path, points: int) -> None:
    s_local = sweep(out / "local", "XC7Z045", 8, points, InProcess())
    t0 = time.perf_counter()
    cluster = RayCluster(None, 2)
    start = time.perf_counter() - t0
    try:
        s_ray = sweep(out / "ray", "XC7Z045", 8, points, cluster)
    finally:
        cluster.close()
    same = [(r["key"], r["fps"]) for r in s_local["front"]] == [(r["key"], r["fps"])
                                                               for r in s_ray["front"]]
    print(f"{MODEL} on XC7Z045, 8-bit, genetic search (seed 0), {points} points:")
    for name, s in (("in-process", s_local), ("Ray, 2 local workers", s_ray)):
        print(f"  {name:22s} {s['counts']['fresh']} points in {s['seconds']:.1f} s ="
              f" {s['points_per_second']:.2f} points/s")
    print(f"  Ray start-up (ray.init, 2 CPUs): {start:.1f} s; same front: {same}")


def fronts(out: Path, budget: int) -> None:
    rows = []
    for device in ("XC7Z045", "XC7Z020"):
        for bits in (8, 16):
            s = sweep(out / f"{device}-{bits}", device, bits, budget, InProcess())
            b = s["best"]
            rows.append((device, bits, s, b))
            print(f"{device} {bits:2d}-bit: {s['counts']['evaluated']} points"
                  f" ({s['counts']['no-fit'] + s['counts']['invalid']} refused) in"
                  f" {s['seconds']:.0f} s, front {len(s['front'])} points")
            if b:
                c = b["config"]
                print(f"  best {b['fps']:.2f} fps, {b['gops']:.1f} GOP/s:"
                      f" {c['num_pe']}x{c['convolvers_per_pe']} ({b['multipliers']} mult),"
                      f" buffers in/out/w {c['input_buffer_bytes'] // 1024}/"
                      f"{c['output_buffer_bytes'] // 1024}/{c['weight_buffer_bytes'] // 1024}"
                      f" KiB, ports {c['datain_port_num']}/{c['weightin_port_num']}/"
                      f"{c['dataout_port_num']}; DSP {100 * b['share']['dsp']:.0f} %,"
                      f" BRAM {100 * b['share']['bram36']:.0f} %,"
                      f" LUT {100 * b['share']['lut']:.0f} %")
            for p in s["presets"]:
                got = (f"{p['fps']:.2f} fps, {p['gops']:.1f} GOP/s" if p.get("fps")
                       else f"refused: {p['reason'][:90]}")
                print(f"  preset {p['name']}: {got}")
    print(f"paper ({PAPER['source']}): {PAPER['fps']} fps")


def check(target: Path, images: int) -> None:
    import numpy as np

    from deepfpga.compiler import compile_model
    from deepfpga.hw.config import load_config
    from deepfpga.quant.random_model import random_qmodel
    from deepfpga.sim.check import check_bit_exact
    from deepfpga.zoo import get

    cfg = load_config(target)
    rng = np.random.default_rng(0)
    graph = get(MODEL)
    t0 = time.perf_counter()
    q = random_qmodel(graph, rng, cfg.data_bits, cfg.weight_bits)
    compiled = compile_model(q, cfg)
    t1 = time.perf_counter()
    x = rng.random((images, *graph.input_shape), dtype=np.float32)
    r = check_bit_exact(q, compiled, x, np.zeros(images, np.int64), images)
    t2 = time.perf_counter()
    print(f"{MODEL} (random {cfg.data_bits}-bit weights) on {cfg.name} ({target}):"
          f" {len(compiled.program.instructions)} instructions, model + compile {t1 - t0:.1f} s;"
          f" {images} image(s) on the functional simulator in {t2 - t1:.1f} s:"
          f" {r.values_compared:,} values compared, {r.mismatches} mismatches,"
          f" bit-exact: {r.bit_exact}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", action="store_true")
    ap.add_argument("--fronts", action="store_true")
    ap.add_argument("--points", type=int, default=48)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--check", type=Path, metavar="TOML")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dse-") as tmp:
        out = a.out or Path(tmp)
        if a.rate:
            rate(out / "rate", a.points)
        if a.fronts:
            fronts(out / "fronts", a.budget)
        if a.check:
            check(a.check, a.images)


if __name__ == "__main__":
    main()
