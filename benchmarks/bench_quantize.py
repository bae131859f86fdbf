"""Speed of the quantization flow: fmnist-vgg with 1,000 calibration images (goal ≤ 5 s).

    .venv/bin/python benchmarks/bench_quantize.py [--model fmnist-vgg] [--calib-size 1000]
        [--bits 8] [--repeat 3] [--static]

Loads the model and the calibration images first (not timed), then times `quantize()` end to
end (graph preparation, weight search, greedy feature-map search with the exact accumulators),
`--repeat` times, and prints every run (wall and CPU seconds), the medians, the process's peak
resident memory and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import torch

from deepfpga.data import load_dataset
from deepfpga.quant.flow import quantize
from deepfpga.zoo import get


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fmnist-vgg")
    ap.add_argument("--calib-size", type=int, default=1000)
    ap.add_argument("--bits", default="8")
    ap.add_argument("--metric", default="l1")
    ap.add_argument("--static", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    graph = get(args.model)
    calib = load_dataset("fashion-mnist", split="train", limit=args.calib_size)
    times, cpu = [], []
    load0 = os.getloadavg()[0]
    for i in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        qm = quantize(graph, calib.x, bits=args.bits, static=args.static, metric=args.metric)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        print(f"run {i + 1}: {times[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU", file=sys.stderr)
    cal = qm.meta["calibration"]
    print(f"{args.model}, {len(calib)} calibration images, {args.bits}-bit"
          f" {'static' if args.static else 'dynamic'}, metric {args.metric},"
          f" torch threads {torch.get_num_threads()}: median {statistics.median(times):.2f} s"
          f" over {len(times)} runs (min {min(times):.2f}, max {max(times):.2f}), CPU median"
          f" {statistics.median(cpu):.2f} s; peak RSS"
          f" {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average"
          f" {load0:.1f} -> {os.getloadavg()[0]:.1f};"
          f" calibration top-1 agreement {cal.get('top1_agreement', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
