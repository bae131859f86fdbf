#!/usr/bin/env python
"""Write small ONNX models with the kernels and shapes the model zoo lacks (issue 12, item 5):
5×5, 7×7 stride 2, 1×1 and 11×11 stride 4 convolutions, odd map sizes (57×57) and FC layers.

    .venv/bin/python scripts/make_onnx_models.py [--out DIR] [--seed S] [--list]

Each model is a torch module with seeded random weights (torch's default initialisation),
exported with `torch.onnx.export(..., dynamo=False)` (torch 2.13's legacy exporter) to
DIR/<name>.onnx. The models are for running the toolchain end to end on shapes it must
support, not for accuracy. `make_models(out_dir, seed)` is what tests call.
"""

from __future__ import annotations

import argparse
import io
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/onnx-models", help="output directory")
    ap.add_argument("--seed", type=int, default=0, help="torch seed of the weights")
    ap.add_argument("--list", action="store_true", help="list the models and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, (factory, shape) in MODELS.items():
            print(f"{name:10s} input {shape}: {(factory.__doc__ or '').strip()}")
        return 0
    for name, path in make_models(args.out, args.seed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
