"""Benchmark: the bit-exact reference executor on VGG16 (224×224) against float32 torch running
the same network, side by side in one process; goal ≤ 2.0× float32.

    .venv/bin/python benchmarks/bench_reference.py [--bits 8 16] [--batch 1 8] [--repeat 5]
        [--profile] [--json]

For each bit width the model is `random_qmodel` on the zoo VGG16 (data, weights and biases of
that width, formats chosen from a calibration image so maps are neither zero nor saturated).
The float network has the same weights dequantized (q·2^-fl, exact in float32) and runs layer by
layer through `deepfpga.ir.float_exec.apply_layer` on float32 tensors prepared once (torch's
oneDNN/MKL kernels). Weight preparation of the executor (`ReferenceExecutor.build`) is timed
separately. Each (bits, batch) gets one warm-up run per side, then `--repeat` timed runs that
alternate the order of the two sides; the medians and their ratio are printed. `--profile`
adds the per-layer median times of both sides (what limits the ratio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def float_params(q) -> dict[str, dict[str, torch.Tensor]]:
    """The quantized model's weights dequantized to float32 tensors (exact below 2^24)."""
    params = {}
    for name, arrays in q.weights.items():
        f = q.formats[name]
        params[name] = {"weight": torch.from_numpy(np.ldexp(
            arrays["weight"].astype(np.float64), -f.weight.fl).astype(np.float32))}
        if "bias" in arrays:
            params[name]["bias"] = torch.from_numpy(np.ldexp(
                arrays["bias"].astype(np.float64), -f.bias.fl).astype(np.float32))
    return params


def run_torch(graph, params, x: torch.Tensor, times: dict[str, list[float]] | None = None):
    from deepfpga.ir import INPUT
    from deepfpga.ir.float_exec import apply_layer

    env = {INPUT: x}
    with torch.inference_mode():
        for layer in graph.layers:
            t0 = time.perf_counter()
            env[layer.name] = apply_layer(layer, params.get(layer.name, {}),
                                          [env[s] for s in layer.inputs])
            if times is not None:
                times.setdefault(layer.name, []).append(time.perf_counter() - t0)
            for s in layer.inputs:
                env.pop(s, None)
    return env[graph.outputs[0]]


def run_reference_profiled(ex, x: np.ndarray, times: dict[str, list[float]]) -> None:
    """The executor's own layer loop, timed per layer (same code path as `run`)."""
    from deepfpga.hw.arch import stays_float
    from deepfpga.ir import INPUT
    from deepfpga.quant import executor as R

    q = ex.qmodel
    env = {INPUT: torch.from_numpy(x).to(R._tdtype(q.input_format))}
    with torch.inference_mode():
        for layer in q.graph.layers:
            t0 = time.perf_counter()
            xs = [env.pop(s) for s in layer.inputs]
            if stays_float(layer, q.graph.outputs):
                y = R._host_float(layer, xs, [q.format_of(s).fl for s in layer.inputs])
            else:
                y, _ = ex._layer(layer, xs, owned=True,
                                 fuse_relu=layer.name in ex.relu_fused)
            env[layer.name] = y
            times.setdefault(layer.name, []).append(time.perf_counter() - t0)


def bench(bits: int, batches: list[int], repeat: int, profile: bool, seed: int,
          method: str) -> list[dict]:
    from deepfpga import zoo
    from deepfpga.quant.random_model import random_qmodel
    from deepfpga.quant.reference import ReferenceExecutor

    g = zoo.get("vgg16")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    fin = bits - 1  # inputs in [-1, 1)
    calib = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (1, *g.input_shape))
    q = random_qmodel(g, rng, bits, bits, fl_in=fin, x_calib=calib)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    ex = ReferenceExecutor.build(q, method=method)
    t_prep = time.perf_counter() - t0
    params = float_params(q)
    rows = []
    for n in batches:
        x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (n, *g.input_shape))
        xf = torch.from_numpy(np.ldexp(x.astype(np.float64), -fin).astype(np.float32))
        run_torch(g, params, xf)
        ex.run(x)
        t_ref, t_f32 = [], []
        for i in range(repeat):
            order = ("ref", "f32") if i % 2 == 0 else ("f32", "ref")
            for side in order:
                t0 = time.perf_counter()
                if side == "ref":
                    res = ex.run(x)
                    t_ref.append(time.perf_counter() - t0)
                else:
                    run_torch(g, params, xf)
                    t_f32.append(time.perf_counter() - t0)
        row = {
            "bits": bits, "batch": n, "repeat": repeat, "threads": torch.get_num_threads(),
            "reference_s": statistics.median(t_ref), "float32_s": statistics.median(t_f32),
            "reference_runs_s": t_ref, "float32_runs_s": t_f32,
            "ratio": statistics.median(t_ref) / statistics.median(t_f32),
            "prepare_s": t_prep, "model_build_s": t_model,
            "methods": sorted(set(ex.methods().values())),
            "saturations": res.total_saturations,
        }
        if profile:
            tr: dict[str, list[float]] = {}
            tf: dict[str, list[float]] = {}
            for _ in range(max(1, repeat // 2)):
                run_reference_profiled(ex, x, tr)
                run_torch(g, params, xf, tf)
            row["profile"] = {name: {"reference_ms": 1e3 * statistics.median(tr[name]),
                                     "float32_ms": 1e3 * statistics.median(tf[name])}
                              for name in tr}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="auto", help="accumulation method (default auto)")
    ap.add_argument("--threads", type=int, help="torch threads for both sides (default: torch's)")
    ap.add_argument("--profile", action="store_true", help="per-layer times of both sides")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    rows = []
    for bits in args.bits:
        rows += bench(bits, args.batch, args.repeat, args.profile, args.seed, args.method)
        r = rows[-1]
        print(f"{bits}-bit: model built in {r['model_build_s']:.1f} s, weights prepared in"
              f" {r['prepare_s']:.1f} s, methods {r['methods']}", flush=True)
        for r in rows[-len(args.batch):]:
            print(f"  batch {r['batch']}: reference {r['reference_s']:.3f} s, float32 torch"
                  f" {r['float32_s']:.3f} s, ratio {r['ratio']:.2f}x  (median of"
                  f" {r['repeat']})", flush=True)
            for name, p in r.get("profile", {}).items():
                print(f"    {name:10s} ref {p['reference_ms']:8.1f} ms   f32"
                      f" {p['float32_ms']:8.1f} ms")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
