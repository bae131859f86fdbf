"""`deepfpga analyze MODEL`: per-layer operations, parameters and memory (paper §4)."""

from __future__ import annotations

import argparse

from deepfpga.cli.output import add_json_flag, print_json, table

MODEL_HELP = (
    "a zoo name (alexnet, zf, vgg11, vgg13, vgg16, vgg19, vgg16-svd, resnet18, fmnist-vgg,"
    " fmnist-alex, fmnist-resnet),"
    " a .onnx file, a float-model .npz, or package.module:factory returning a torch.nn.Module"
    " (needs --input-shape)"
)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="per-sample input shape, required for package.module:factory")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "analyze", help="operations, parameters and memory per layer (paper §4)",
        description="Time and space complexity of every layer: MACs, operations (2 per MAC),"
                    " parameters, and weight / feature-map bytes at --bits per value.",
    )
    add_model_args(p)
    p.add_argument("--bits", type=int, default=16, help="bits per weight and value (default 16)")
    add_json_flag(p)
    return p


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(map(str, s))


def run(args: argparse.Namespace) -> int:
    from deepfpga.analysis.complexity import analyze
    from deepfpga.models import load_model

    graph = load_model(args.model, args.input_shape)
    rep = analyze(graph, bits=args.bits)
    if args.json:
        print_json(rep.to_dict())
        return 0
    print(f"{rep.model}: input {_shape(rep.input_shape)}, {rep.bits}-bit weights and values;"
          " 1 MAC = 2 operations; KB/MB = 10^3/10^6 bytes")
    print()
    print(table(
        ["layer", "kind", "output", "MACs", "MOP", "params", "weights KB", "in KB", "out KB",
         "where"],
        [[r.name, r.kind, _shape(r.output_shape), r.macs, r.ops / 1e6, r.params,
          r.weight_bytes / 1e3, r.input_bytes / 1e3, r.output_bytes / 1e3,
          "host" if r.host_only else "accel"]
         for r in rep.rows],
    ))
    print()
    print(table(
        ["category", "layers", "GOP", "ops %", "M params", "params %", "weights MB"],
        [[t.category.upper() if t.category in ("conv", "fc") else t.category, t.layers,
          round(t.gop, 4), round(100 * t.ops_share, 2), round(t.mparams, 3),
          round(100 * t.params_share, 2), round(t.weight_bytes / 1e6, 3)]
         for t in rep.totals],
        digits=4,
    ))
    return 0
