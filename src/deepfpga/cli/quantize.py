"""`deepfpga quantize MODEL --calib DATA`: dynamic-precision fixed point (paper §5)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from deepfpga.cli.output import add_json_flag, print_json, table

DATA_HELP = "'fashion-mnist' (or 'fmnist'), a folder DIR/<class>/*.png|jpg, or an .npz with x and y"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from deepfpga.cli.analyze import add_model_args
    from deepfpga.quant.activations import FM_METRICS
    from deepfpga.quant.bits import PRESETS
    from deepfpga.quant.weights import WEIGHT_METRICS

    p = subparsers.add_parser(
        "quantize", help="choose fixed-point formats on calibration data (paper §5)",
        description="Quantize a float model: per-layer weight fractional lengths, then greedy"
                    " feature-map fractional lengths layer by layer on calibration images"
                    " (or one fl for everything with --static). Writes the quantized model file"
                    " and prints every layer's formats and calibration error.",
    )
    add_model_args(p)
    p.add_argument("--calib", required=True, metavar="DATA", help=f"calibration data: {DATA_HELP}")
    p.add_argument("--calib-size", type=int, default=1000, metavar="N",
                   help="calibration images, the first N of the set (default 1000)")
    p.add_argument("--calib-split", default="train", choices=("train", "test"),
                   help="Fashion-MNIST split to calibrate on (default train)")
    p.add_argument("--bits", default="8", choices=tuple(PRESETS),
                   help="bit-width preset: data/weights 16, 8, or 8/4 (8-bit CONV weights, 4-bit"
                        " FC weights); default 8")
    p.add_argument("--bits-file", metavar="F.toml",
                   help="per-layer overrides: [layers.NAME] data_bits/weight_bits/bias_bits = N")
    p.add_argument("--static", action="store_true",
                   help="static precision baseline: one fl for all weights, one for all maps")
    p.add_argument("--metric", default="l1", choices=FM_METRICS,
                   help="feature-map error: l1 (default), l2, or kl (histogram divergence)")
    p.add_argument("--weight-metric", default="l1", choices=WEIGHT_METRICS,
                   help="weight/bias error: l1 (default) or l2")
    p.add_argument("--out", metavar="Q.npz",
                   help="quantized model file (default <model>-q<bits>[-static].npz)")
    add_json_flag(p)
    return p


def default_out(model: str, bits: str, static: bool) -> Path:
    stem = Path(model).stem if Path(model).suffix else model.replace(":", "-")
    return Path(f"{stem}-q{bits.replace('/', '-')}{'-static' if static else ''}.npz")


def _fmt(d: dict[str, Any] | None) -> str:
    return "-" if not d else f"Q{d['bw']}.{d['fl']}"


def check_calibration_memory(graph: Any, n: int, asked: int) -> None:
    """InputError when calibrating on `n` images (of `--calib-size asked`) cannot fit: the
    calibration streams in batches, so this is the images plus fixed budgets
    (`quant.calibrate.calibration_bytes`)."""
    from deepfpga.data.memory import check_memory
    from deepfpga.quant.calibrate import calibration_bytes

    check_memory(calibration_bytes(graph, n),
                 f"--calib-size {asked} ({n} images of {','.join(map(str, graph.input_shape))})",
                 "give a smaller --calib-size")


def run(args: argparse.Namespace) -> int:
    from deepfpga.data import load_dataset
    from deepfpga.errors import InputError
    from deepfpga.fileio import check_output
    from deepfpga.models import load_model
    from deepfpga.quant.bits import load_bits_file
    from deepfpga.quant.flow import quantize
    from deepfpga.quant.qfile import save_qmodel

    if args.calib_size <= 0:
        raise InputError(f"--calib-size must be positive, got {args.calib_size}")
    out = Path(args.out) if args.out is not None else default_out(args.model, args.bits,
                                                                  args.static)
    if out.suffix != ".npz":
        raise InputError(f"--out must name a .npz file, got {str(out)!r}")
    check_output(out, "--out", inputs=[args.model, args.calib, args.bits_file])
    graph = load_model(args.model, args.input_shape)
    overrides = load_bits_file(args.bits_file) if args.bits_file else None
    c, h, w = _chw(graph.input_shape)
    data = load_dataset(args.calib, split=args.calib_split, limit=args.calib_size,
                        channels=c, size=(h, w))
    check_calibration_memory(graph, len(data), args.calib_size)
    t0 = time.perf_counter()
    qm = quantize(graph, data.x, bits=args.bits, static=args.static, metric=args.metric,
                  overrides=overrides, progress=not args.json, weight_metric=args.weight_metric)
    seconds = time.perf_counter() - t0
    save_qmodel(out, qm)
    meta = qm.meta
    cal = meta["calibration"]
    if args.json:
        print_json({"model": graph.name, "out": str(out), "seconds": seconds,
                    "calib": {"data": args.calib, "size": len(data)},
                    "quantizer": meta["quantizer"], "input_format": qm.input_format.to_dict(),
                    "layers": _rows_json(qm), "calibration": cal,
                    **({"static": meta["static"]} if "static" in meta else {})})
        return 0
    q = meta["quantizer"]
    print(f"{graph.name}: {q['method']} {q['bits']}-bit, metric {q['metric']}"
          f" (weights {q['weight_metric']}), {len(data)} calibration images from {args.calib}"
          f" [{seconds:.1f} s]")
    print()
    print(table(["layer", "kind", "input", "weights", "bias", "output", "w err", "out err",
                 "saturated"], _rows_text(qm), digits=3))
    print()
    line = (f"calibration: output {cal['output']} mean |error| {cal['output_error']:.4g}"
            f" (relative {cal['output_rel_error']:.3%})")
    if "top1_agreement" in cal:
        line += f", top-1 agreement with float {cal['top1_agreement']:.2%}"
    print(line + f", {cal['saturated']:,} saturated values")
    print(f"wrote {out}")
    return 0


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    from deepfpga.errors import InputError

    if len(shape) != 3:
        raise InputError(f"model input shape {shape} is not an image (C, H, W)")
    return shape[0], shape[1], shape[2]


def _rows_text(qm: Any) -> list[list[Any]]:
    rep = qm.meta["layers"]
    rows: list[list[Any]] = [["input", "input", "-", "-", "-", str(qm.input_format), None,
                              rep["input"]["output"]["error"],
                              rep["input"]["output"]["saturated"]]]
    for layer in qm.graph.layers:
        f = qm.formats[layer.name]
        r = rep.get(layer.name, {})
        o = r.get("output")
        rows.append([
            layer.name, layer.kind, str(f.input),
            str(f.weight) if f.weight else "-", str(f.bias) if f.bias else "-", str(f.output),
            r["weight"]["error"] if "weight" in r else None,
            o["error"] if o else None,
            o.get("saturated_layer", o["saturated"]) if o else None,
        ])
    return rows


def _rows_json(qm: Any) -> list[dict[str, Any]]:
    rep = qm.meta["layers"]
    return [{"name": layer.name, "kind": layer.kind, **qm.formats[layer.name].to_dict(),
             "report": rep.get(layer.name, {})} for layer in qm.graph.layers]
