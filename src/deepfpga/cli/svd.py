"""`deepfpga svd MODEL --layer NAME --rank R ...`: factor fc layers by truncated SVD."""

from __future__ import annotations

import argparse
from typing import Any

from deepfpga.cli.analyze import add_model_args
from deepfpga.cli.output import add_json_flag, print_json, table
from deepfpga.errors import InputError


class _Ordered(argparse.Action):
    """Keep --layer / --rank / --reduction / --energy in command-line order, so each rank spec
    belongs to the --layer before it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        items = list(getattr(namespace, "svd_items", None) or [])
        items.append((self.dest, values))
        namespace.svd_items = items


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "svd", help="factor fc layers by truncated SVD (paper §4)",
        description="Replace each named fc layer W (out x in) by two fc layers <name>_a"
                    " (in -> r, no bias) and <name>_b (r -> out) from the truncated SVD."
                    " Each --layer is followed by one of --rank, --reduction, --energy.",
    )
    add_model_args(p)
    p.add_argument("--layer", action=_Ordered, dest="layer", metavar="NAME", required=True,
                   help="fc layer to factor (repeatable)")
    p.add_argument("--rank", action=_Ordered, dest="rank", type=int, metavar="R",
                   help="keep R singular values")
    p.add_argument("--reduction", action=_Ordered, dest="reduction", type=float, metavar="F",
                   help="remove at least this fraction of the layer's weights (e.g. 0.85)")
    p.add_argument("--energy", action=_Ordered, dest="energy", type=float, metavar="E",
                   help="keep this fraction of the sum of squared singular values (needs weights)")
    p.add_argument("--out", metavar="FILE.npz",
                   help="write the factored graph as a float-model .npz (see docs/ir.md)")
    add_json_flag(p)
    p.set_defaults(svd_items=None)
    return p


def _specs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    from deepfpga.compress.svd import RankSpec

    specs: dict[str, Any] = {}
    current: str | None = None
    for key, value in items:
        if key == "layer":
            if current is not None and current not in specs:
                raise InputError(f"--layer {current} has no --rank, --reduction or --energy")
            if value in specs:
                raise InputError(f"--layer {value} given twice")
            current = value
        else:
            if current is None:
                raise InputError(f"--{key} must follow a --layer")
            if current in specs:
                raise InputError(f"--layer {current} has more than one rank option")
            specs[current] = RankSpec(**{key: value})
    if current is not None and current not in specs:
        raise InputError(f"--layer {current} has no --rank, --reduction or --energy")
    return specs


def run(args: argparse.Namespace) -> int:
    from deepfpga.analysis.complexity import analyze
    from deepfpga.compress.svd import svd_compress
    from deepfpga.fileio import check_output
    from deepfpga.frontends.float_model import save_float_model
    from deepfpga.models import load_model

    if args.out is not None:
        if not args.out.endswith(".npz"):
            raise InputError(f"--out must name a .npz file, got {args.out!r}")
        check_output(args.out, "--out", inputs=[args.model])
    specs = _specs(args.svd_items or [])
    graph = load_model(args.model, args.input_shape)
    result = svd_compress(graph, specs)
    before, after = analyze(graph).total(), analyze(result.graph).total()
    if args.out is not None:
        save_float_model(result.graph, args.out)
    if args.json:
        print_json({
            "model": graph.name,
            "has_weights": graph.has_weights,
            "layers": [vars(r) for r in result.layers],
            "params_before": before.params,
            "params_after": after.params,
            "ops_before": before.ops,
            "ops_after": after.ops,
            "out": args.out,
        })
        return 0
    print(table(
        ["layer", "out x in", "rank", "weights before", "weights after", "reduction %",
         "rel. error", "energy kept"],
        [[r.layer, f"{r.out_features}x{r.in_features}", r.rank, r.weights_before,
          r.weights_after, round(100 * r.reduction, 2), r.rel_error, r.energy_kept]
         for r in result.layers],
        digits=4,
    ))
    if not graph.has_weights:
        print("(architecture without weights: no reconstruction error)")
    print(f"\nmodel {graph.name}: {before.params:,} -> {after.params:,} parameters"
          f" ({100 * (1 - after.params / before.params):.2f}% fewer),"
          f" {before.gop:.4f} -> {after.gop:.4f} GOP")
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0
