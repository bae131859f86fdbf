"""Accuracy against SVD rank for the first hidden FC layer of a trained model (paper §3, §4).

For each rank r the layer W (out × in) is replaced by its rank-r factors (deepfpga.compress.svd)
and the network is evaluated on the test images in float32 and after 8-bit dynamic quantization
(quantized after factoring, calibrated on training images). Also: the VGG16 FC6 rank-500 weight
reduction by analysis (the paper's 85.8 %).

Writes benchmarks/svd_rank.md (table, settings, the command) and benchmarks/svd_rank.png.

    .venv/bin/python scripts/svd_rank.py                # fmnist-vgg, all 10,000 test images
    .venv/bin/python scripts/svd_rank.py --test-limit 2000 --ranks 8,32,128
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RANKS = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192)


def _parse_ranks(text: str) -> list[int]:
    try:
        ranks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad rank list {text!r}") from None
    if not ranks or ranks[0] <= 0:
        raise argparse.ArgumentTypeError("ranks must be positive integers")
    return ranks


def first_hidden_fc(graph) -> str:
    """The first FC layer whose output feeds another FC layer (not the classifier)."""
    from deepfpga.ir import Linear

    fcs = [layer.name for layer in graph.layers if isinstance(layer, Linear)]
    if len(fcs) < 2:
        raise SystemExit(f"{graph.name}: needs at least two FC layers, has {fcs}")
    return fcs[0]


def vgg16_fc6() -> dict:
    """FC6 of VGG16 (architecture only) factored at rank 500, by analysis."""
    from deepfpga import zoo
    from deepfpga.analysis.complexity import analyze
    from deepfpga.compress.svd import svd_compress

    g = zoo.get("vgg16")
    rep = svd_compress(g, {"fc6": 500}).layers[0]
    full, svd = analyze(g), analyze(zoo.get("vgg16-svd"))
    return {"out": rep.out_features, "in": rep.in_features, "rank": rep.rank,
            "before": rep.weights_before, "after": rep.weights_after,
            "reduction": rep.reduction,
            "params_full": full.total().params, "params_svd": svd.total().params,
            "gop_full": full.total().gop, "gop_svd": svd.total().gop}


def evaluate_rank(graph, layer: str, rank: int | None, calib_x, test, bits: str) -> dict:
    from deepfpga.compress.svd import svd_compress
    from deepfpga.quant.evaluate import evaluate
    from deepfpga.quant.flow import quantize

    t0 = time.perf_counter()
    lay = graph.layer(layer)
    if rank is None:
        g = graph
        row = {"rank": min(lay.out_features, lay.in_features), "factored": False,
               "weights": lay.out_features * lay.in_features, "reduction": 0.0, "rel_error": 0.0}
    else:
        res = svd_compress(graph, {layer: rank})
        rep = res.layers[0]
        g = res.graph
        row = {"rank": rank, "factored": True, "weights": rep.weights_after,
               "reduction": rep.reduction, "rel_error": rep.rel_error}
    f = evaluate(g, test.x, test.y)
    q = quantize(g, calib_x, bits=bits)
    fq = evaluate(q, test.x, test.y)
    row.update(float_top1=f.top1, float_top5=f.top5, q_top1=fq.top1, q_top5=fq.top5,
               seconds=time.perf_counter() - t0)
    return row


def plot(rows: list[dict], base: dict, layer: str, model: str, bits: str, n: int,
         path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax, zoom, ax2 = fig.subplots(1, 3)
    r = [row["rank"] for row in rows]
    for a in (ax, zoom):
        a.plot(r, [100 * row["float_top1"] for row in rows], "o-", color="#1f77b4",
               label="float32, factored")
        a.plot(r, [100 * row["q_top1"] for row in rows], "s-", color="#d62728",
               label=f"{bits}-bit dynamic, factored")
        a.axhline(100 * base["float_top1"], color="#1f77b4", ls="--", lw=1,
                  label=f"float32, unfactored ({100 * base['float_top1']:.2f} %)")
        a.axhline(100 * base["q_top1"], color="#d62728", ls="--", lw=1,
                  label=f"{bits}-bit, unfactored ({100 * base['q_top1']:.2f} %)")
    top = max(100 * base["float_top1"], 100 * base["q_top1"])
    zoom.set_ylim(top - 3, top + 0.5)
    near = [row["rank"] for row in rows
            if min(row["float_top1"], row["q_top1"]) * 100 >= top - 3] or r
    zoom.set_title("the same, top-1 near the unfactored model")
    ax.set_title(f"{model}: test top-1 against the rank of {layer}")
    ax.set_ylabel(f"test top-1 (%), {n:,} images")
    ax.legend(fontsize="small", loc="lower right")
    ax2.plot(r, [100 * row["reduction"] for row in rows], "o-", color="#2ca02c",
             label="weights removed from the layer (%)")
    ax2.plot(r, [100 * row["rel_error"] for row in rows], "^-", color="#9467bd",
             label="reconstruction error ‖W − BA‖/‖W‖ (%)")
    ax2.set_ylim(-5, 105)
    ax2.set_ylabel("%")
    ax2.set_title("weight reduction and reconstruction error")
    ax2.legend(fontsize="small", loc="lower left")
    for a in (ax, zoom, ax2):
        a.set_xscale("log", base=2)
        ticks = near if a is zoom else r
        a.set_xticks(ticks, [str(v) for v in ticks], fontsize="small")
        a.minorticks_off()
        a.set_xlabel(f"rank of {layer}")
        a.grid(True, alpha=0.3)
    zoom.set_xlim(min(near) / 1.25, max(r) * 1.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    from deepfpga.fileio import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())


def smallest_rank_within(rows: list[dict], base: dict, key: str, pts: float) -> dict | None:
    """The smallest rank whose top-1 (`key`) is within `pts` points of the unfactored model."""
    ok = [row for row in rows if 100 * (base[key] - row[key]) <= pts]
    return min(ok, key=lambda row: row["rank"]) if ok else None


def markdown(rows: list[dict], base: dict, vgg: dict, args: argparse.Namespace, layer: str,
             shape: tuple[int, int], n: int, seconds: float, png: Path) -> str:
    out, inn = shape
    lines = [
        "# Accuracy against SVD rank",
        "",
        f"Model `{args.model}`, layer `{layer}` ({out}×{inn} weights = {out * inn:,}),"
        " "
        f"replaced by `{layer}_a` ({inn}→r, no bias) and `{layer}_b` (r→{out}) from the truncated"
        " SVD (singular values split evenly between the factors; `deepfpga.compress.svd`).",
        f"Test: the first {n:,} Fashion-MNIST test images. {args.bits}-bit: dynamic-precision"
        f" quantization after factoring (`deepfpga.quant.flow.quantize`, bits `{args.bits}`),"
        f" calibrated on the first {args.calib_size:,} training images, evaluated through the"
        " bit-exact reference executor.",
        "",
        "Command:",
        "",
        "    " + " ".join([".venv/bin/python", "scripts/svd_rank.py",
                           *map(shlex.quote, sys.argv[1:])]),
        "",
        f"Run {dt.datetime.now().astimezone().isoformat(timespec='minutes')} on"
        f" {platform.machine()} ({platform.python_implementation()} {platform.python_version()}),"
        f" {seconds:.0f} s in total.",
        "",
        f"![accuracy against rank]({png.name})",
        "",
        "| rank | weights in layer | reduction | reconstruction error | float top-1 |"
        f" {args.bits}-bit top-1 | float top-5 | {args.bits}-bit top-5 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in [*rows, base]:
        name = str(row["rank"]) if row["factored"] else f"{row['rank']} (unfactored)"
        lines.append(
            f"| {name} | {row['weights']:,} | {100 * row['reduction']:.1f} % |"
            f" {100 * row['rel_error']:.2f} % | {100 * row['float_top1']:.2f} % |"
            f" {100 * row['q_top1']:.2f} % | {100 * row['float_top5']:.2f} % |"
            f" {100 * row['q_top5']:.2f} % |")
    lines.append("")
    for key, what in (("float_top1", "float32"), ("q_top1", f"{args.bits}-bit")):
        best = smallest_rank_within(rows, base, key, 0.5)
        if best is not None:
            lines.append(
                f"- {what}: the smallest measured rank within 0.5 points of the unfactored"
                f" model's top-1 ({100 * base[key]:.2f} %) is **{best['rank']}**"
                f" ({100 * best[key]:.2f} %), removing {100 * best['reduction']:.1f} % of"
                f" `{layer}`'s weights.")
    lines += [
        "",
        "Reduction = 1 − r·(in + out)/(in·out) of the layer's weight matrix (biases unchanged);"
        " reconstruction error = ‖W − B·A‖_F / ‖W‖_F of the float factors.",
        "",
        "## VGG16 FC6 at rank 500 (paper §3–§4), by analysis",
        "",
        f"FC6 of `vgg16` is {vgg['out']}×{vgg['in']} = {vgg['before']:,} weights; rank"
        f" {vgg['rank']} factors hold {vgg['rank']}·({vgg['in']} + {vgg['out']}) ="
        f" {vgg['after']:,}: **{100 * vgg['reduction']:.1f} % fewer weights in that layer**"
        " (the paper: 85.8 %). Whole network: "
        f"{vgg['params_full'] / 1e6:.2f} M → {vgg['params_svd'] / 1e6:.2f} M parameters,"
        f" {vgg['gop_full']:.2f} → {vgg['gop_svd']:.2f} GOP per image"
        " (`deepfpga analyze vgg16`, `deepfpga analyze vgg16-svd`). No ImageNet weights ship"
        " with deepfpga, so the paper's accuracy cost (~0.04 %) is not re-measured here.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fmnist-vgg")
    p.add_argument("--layer", default=None, help="FC layer to factor (default: first hidden FC)")
    p.add_argument("--ranks", type=_parse_ranks, default=list(DEFAULT_RANKS))
    p.add_argument("--test-limit", type=int, default=10000)
    p.add_argument("--calib-size", type=int, default=1000)
    p.add_argument("--bits", default="8")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "svd_rank.md"))
    p.add_argument("--png", default=str(ROOT / "benchmarks" / "svd_rank.png"))
    args = p.parse_args(argv)

    from deepfpga.data import load_dataset
    from deepfpga.fileio import atomic_write_text
    from deepfpga.models import load_model

    t0 = time.perf_counter()
    graph = load_model(args.model)
    layer = args.layer or first_hidden_fc(graph)
    lay = graph.layer(layer)
    top = min(lay.out_features, lay.in_features)
    ranks = [r for r in args.ranks if r < top]
    test = load_dataset("fashion-mnist", "test", args.test_limit)
    calib = load_dataset("fashion-mnist", "train", args.calib_size)
    calib_x = np.asarray(calib.x)
    rows = []
    base = evaluate_rank(graph, layer, None, calib_x, test, args.bits)
    print(f"unfactored: float {100 * base['float_top1']:.2f} %, {args.bits}-bit"
          f" {100 * base['q_top1']:.2f} % ({base['seconds']:.1f} s)", flush=True)
    for r in ranks:
        row = evaluate_rank(graph, layer, r, calib_x, test, args.bits)
        rows.append(row)
        print(f"rank {r}: reduction {100 * row['reduction']:.1f} %, error"
              f" {100 * row['rel_error']:.2f} %, float {100 * row['float_top1']:.2f} %,"
              f" {args.bits}-bit {100 * row['q_top1']:.2f} % ({row['seconds']:.1f} s)",
              flush=True)
    vgg = vgg16_fc6()
    png = Path(args.png)
    plot(rows, base, layer, args.model, args.bits, len(test), png)
    md = markdown(rows, base, vgg, args, layer, (lay.out_features, lay.in_features), len(test),
                  time.perf_counter() - t0, png)
    atomic_write_text(args.out, md)
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
