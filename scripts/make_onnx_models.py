#!/usr/bin/env python
"""Write small ONNX models with the kernels and shapes the model zoo lacks (issue 12, item 5):
5×5, 7×7 stride 2, 1×1 and 11×11 stride 4 convolutions, odd map sizes (57×57) and FC layers.

    .venv/bin/python scripts/make_onnx_models.py [--out DIR] [--seed S] [--list]
    .venv/bin/python scripts/make_onnx_models.py --rtl tiny      # and run each on the RTL

Each model is a torch module with seeded random weights (torch's default initialisation),
exported with `torch.onnx.export(..., dynamo=False)` (torch 2.13's legacy exporter) to
DIR/<name>.onnx. The models are for running the toolchain end to end on shapes it must
support, not for accuracy. `make_models(out_dir, seed)` and `quantized(path, bits)` are what
tests and benchmarks/bench_calibration.py call.

With `--rtl TARGET` each model is also imported, quantized (16 bits if the target's data is
16 bits wide, else 8; calibrated on 8 uniform random inputs), compiled for TARGET and run on
its accelerator RTL under Verilator for 2 random inputs (`rtl.accel.driver.run_compiled`);
every tensor the accelerator writes is compared with the reference executor and the functional
simulator, and the instructions and cycles per image are printed. Exit 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from deepfpga.fileio import atomic_write_bytes


def _k5() -> nn.Module:
    """5×5 (padding 2), then 1×1, then two FC layers."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),          # 20 → 10
        nn.Conv2d(8, 6, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 10 * 10, 32), nn.ReLU(), nn.Linear(32, 10))


def _k7s2() -> nn.Module:
    """7×7 stride 2 (padding 3) on an odd 57×57 map, as AlexNet-style stems do."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(2),  # 57 → 29 → 14
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),           # 14 → 7
        nn.Flatten(), nn.Linear(8 * 7 * 7, 10))


def _k11s4() -> nn.Module:
    """11×11 stride 4 (padding 2; AlexNet's conv1) on 57×57, then 3×3 and FC layers."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 11, stride=4, padding=2), nn.ReLU(),                 # 57 → 13
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),          # 13 → 6
        nn.Flatten(), nn.Linear(12 * 6 * 6, 24), nn.ReLU(), nn.Linear(24, 5))


def _odd57() -> nn.Module:
    """Odd sizes all the way: 57 → pool 28 → valid 3×3 26 → pool 13 → 1×1, FC."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),           # 57 → 28
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2),                      # 28 → 26 → 13
        nn.Conv2d(6, 4, 1),
        nn.Flatten(), nn.Linear(4 * 13 * 13, 10))


# name -> (module factory, input shape (C, H, W))
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "k5-1x1-fc": (_k5, (3, 20, 20)),
    "k7s2-57": (_k7s2, (1, 57, 57)),
    "k11s4-57": (_k11s4, (3, 57, 57)),
    "odd57": (_odd57, (2, 57, 57)),
}


def export_bytes(name: str, seed: int = 0) -> bytes:
    """The ONNX file of model `name` with weights from torch seed `seed + its index`."""
    factory, shape = MODELS[name]
    torch.manual_seed(seed + list(MODELS).index(name))
    module = factory().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the legacy exporter announces its deprecation
        torch.onnx.export(module, torch.zeros(1, *shape), buf, dynamo=False,
                          input_names=["x"], output_names=["y"])
    return buf.getvalue()


def make_models(out_dir: str | Path, seed: int = 0,
                names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write DIR/<name>.onnx for every model (or `names`); returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names or tuple(MODELS):
        paths[name] = atomic_write_bytes(out / f"{name}.onnx", export_bytes(name, seed))
    return paths


def quantized(path: Path, bits: str, seed: int = 0, images: int = 2) -> tuple:
    """A model file imported and quantized at `bits` on 8 uniform random inputs, and `images`
    more random inputs quantized: (graph, quantized model, integer inputs)."""
    import numpy as np

    from deepfpga.frontends.onnx_import import import_onnx
    from deepfpga.quant.flow import quantize
    from deepfpga.quant.reference import quantize_input

    g = import_onnx(path)
    rng = np.random.default_rng(seed)
    q = quantize(g, rng.random((8, *g.input_shape), dtype=np.float32), bits=bits)
    x, _ = quantize_input(q, rng.random((images, *g.input_shape), dtype=np.float32))
    return g, q, x


def check_on_rtl(path: Path, target: str, seed: int = 0, build: object = None
                 ) -> dict[str, object]:
    """One model file through import, quantize, compile and the RTL (see the module doc);
    `build`: the target's Verilator model when the caller has it."""
    import numpy as np

    from deepfpga.compiler import compile_model
    from deepfpga.hw.config import load_config
    from deepfpga.quant.reference import execute
    from deepfpga.rtl.accel.driver import run_compiled
    from deepfpga.sim.functional import simulate

    cfg = load_config(target)
    _, q, x = quantized(path, "16" if cfg.data_bits == 16 else "8", seed)
    c = compile_model(q, cfg)
    res = run_compiled(c, x, build)
    ref, fsim = execute(q, x, keep="all"), simulate(c, x)
    bad = [t for t, v in res.layers.items()
           if not (np.array_equal(v, ref.layers[t]) and np.array_equal(v, fsim.layers[t]))]
    ok = res.ok and not bad and res.saturations == fsim.saturations
    return {"instructions": len(c.program.instructions), "cycles": res.cycles[0] if res.ok else 0,
            "ok": ok, "why": res.error_message or (f"mismatch in {bad}" if bad else "")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/onnx-models", help="output directory")
    ap.add_argument("--seed", type=int, default=0, help="torch seed of the weights")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    ap.add_argument("--rtl", metavar="TARGET", help="also run each model on TARGET's RTL")
    args = ap.parse_args(argv)
    if args.list:
        for name, (factory, shape) in MODELS.items():
            print(f"{name:10s} input {shape}: {(factory.__doc__ or '').strip()}")
        return 0
    failed = 0
    build = None
    if args.rtl:
        from deepfpga.errors import InputError
        from deepfpga.hw.config import load_config
        from deepfpga.rtl.accel.driver import build_accelerator

        try:
            cfg = load_config(args.rtl)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        build = build_accelerator(cfg)      # once: its Verilog takes a while
    for name, path in make_models(args.out, args.seed).items():
        if not args.rtl:
            print(f"{name}: {path}")
            continue
        r = check_on_rtl(path, args.rtl, args.seed, build)
        failed += not r["ok"]
        print(f"{name:10s} {args.rtl}: {r['instructions']:6,} instructions,"
              f" {r['cycles']:10,} cycles/image, {'bit-exact' if r['ok'] else 'FAILED'}"
              f" {r['why']}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
