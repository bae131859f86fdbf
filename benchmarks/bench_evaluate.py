"""`deepfpga evaluate` of a quantized model (bit-exact executor) against the same evaluation of
the float model, side by side in one process; goal ≤ 1.5× the float model.

    .venv/bin/python benchmarks/bench_evaluate.py [--model fmnist-vgg] [--bits 8]
        [--qmodel Q.npz] [--limit N] [--repeat 3]

The quantized model is read from `--qmodel` or made first (not timed) with the default flow on
the first 1,000 Fashion-MNIST training images. Then `quant.evaluate.evaluate` runs on the
Fashion-MNIST test images (all 10,000 unless `--limit`), alternating quantized and float,
`--repeat` times each (after one warm-up each); medians of wall and CPU time and their ratio are
printed, with the CPU model, torch's threads, the accumulation methods the executor chose and the
load average (the machine may be shared: the ratio is what to compare).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from deepfpga.data import load_dataset
from deepfpga.quant.evaluate import evaluate
from deepfpga.quant.flow import quantize
from deepfpga.quant.qfile import load_qmodel
from deepfpga.quant.reference import ReferenceExecutor
from deepfpga.zoo import get


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fmnist-vgg")
    ap.add_argument("--bits", default="8")
    ap.add_argument("--qmodel", help="a quantized model file (default: quantize first)")
    ap.add_argument("--limit", type=int, help="evaluate the first N test images only")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    graph = get(args.model)
    if args.qmodel:
        qm = load_qmodel(args.qmodel)
    else:
        calib = load_dataset("fashion-mnist", split="train", limit=1000)
        qm = quantize(graph, calib.x, bits=args.bits)
    test = load_dataset("fashion-mnist", split="test", limit=args.limit)
    methods = sorted(set(ReferenceExecutor.build(qm).methods().values()))
    load0 = os.getloadavg()[0]
    times: dict[str, list[tuple[float, float]]] = {"fixed": [], "float": []}
    results = {}
    for i in range(args.repeat + 1):
        for side in ("fixed", "float") if i % 2 == 0 else ("float", "fixed"):
            model = qm if side == "fixed" else graph
            t0, c0 = time.perf_counter(), time.process_time()
            results[side] = evaluate(model, test.x, test.y)
            if i:  # the first round is the warm-up
                times[side].append((time.perf_counter() - t0, time.process_time() - c0))
    med = {s: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
           for s, t in times.items()}
    print(f"{cpu_name()}, torch threads {torch.get_num_threads()}, load average"
          f" {load0:.1f} -> {os.getloadavg()[0]:.1f}; {args.model} {args.bits}-bit, methods"
          f" {methods}, {len(test)} images, {args.repeat} runs each")
    for s in ("fixed", "float"):
        r = results[s]
        print(f"  {s:5s}: wall median {med[s][0]:.2f} s, CPU median {med[s][1]:.2f} s,"
              f" top-1 {r.top1:.4f}")
    print(f"  ratio fixed / float: wall {med['fixed'][0] / med['float'][0]:.2f}x,"
          f" CPU {med['fixed'][1] / med['float'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
