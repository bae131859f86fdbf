"""`deepfpga evaluate MODEL_OR_QMODEL --data DATA`: top-1/top-5 accuracy.

A quantized model file runs through the bit-exact reference executor; anything `load_model`
takes (zoo name, .onnx, float-model .npz, package.module:factory) runs in float32.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from deepfpga.cli.output import add_json_flag, print_json, table
from deepfpga.cli.quantize import DATA_HELP


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="top-1/top-5 accuracy of a float or quantized model",
        description="Accuracy on a labelled image set: a quantized model file (from"
                    " `deepfpga quantize`) through the bit-exact executor, a float model"
                    " through float32 execution. Runs in batches (bounded memory).",
    )
    p.add_argument("model", metavar="MODEL_OR_QMODEL",
                   help="a quantized model .npz, or a float model (zoo name, .onnx, float-model"
                        " .npz, package.module:factory with --input-shape)")
    p.add_argument("--input-shape", metavar="C,H,W",
                   help="per-sample input shape, required for package.module:factory")
    p.add_argument("--data", required=True, metavar="DATA", help=f"labelled images: {DATA_HELP}")
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="Fashion-MNIST split (default test)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=250, metavar="B",
                   help="images per batch (default 250)")
    from deepfpga.cli.dse import add_ray_flags

    add_ray_flags(p, "evaluate shards of the images")
    add_json_flag(p)
    return p


def load_any(spec: str, input_shape: str | None) -> Any:
    """A QuantizedModel for a quantized-model file, else a float Graph via load_model."""
    from deepfpga.errors import InputError
    from deepfpga.quant.qfile import is_qmodel_file

    if is_qmodel_file(spec):
        from deepfpga.quant.qfile import load_qmodel

        if input_shape is not None:
            raise InputError("--input-shape applies to float models only")
        return load_qmodel(spec)
    from deepfpga.models import load_model

    return load_model(spec, input_shape)


def run(args: argparse.Namespace) -> int:
    from deepfpga.data import load_dataset
    from deepfpga.errors import InputError
    from deepfpga.quant.evaluate import evaluate
    from deepfpga.quant.qmodel import QuantizedModel

    if args.limit is not None and args.limit <= 0:
        raise InputError(f"--limit must be positive, got {args.limit}")
    if args.batch_size <= 0:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    model = load_any(args.model, args.input_shape)
    graph = model.graph if isinstance(model, QuantizedModel) else model
    shape = graph.input_shape
    kw = {"channels": shape[0], "size": (shape[1], shape[2])} if len(shape) == 3 else {}
    data = load_dataset(args.data, split=args.split, limit=args.limit, **kw)
    executor_info = None
    t0 = time.perf_counter()
    if args.ray or args.ray_address:
        from deepfpga.parallel import make_executor
        from deepfpga.quant.shard import evaluate_sharded

        executor = make_executor(args.ray, args.ray_address, args.workers)
        try:
            res, shards = evaluate_sharded(model, data.x, data.y, executor,
                                           batch_size=args.batch_size, progress=not args.json)
        finally:
            executor.close()
        executor_info = {"kind": executor.kind, "workers": executor.workers, "shards": shards}
    else:
        if args.workers is not None:
            raise InputError("--workers needs --ray or --ray-address")
        res = evaluate(model, data.x, data.y, batch_size=args.batch_size,
                       progress=not args.json)
    seconds = time.perf_counter() - t0
    d = {"model": args.model, "name": graph.name, "data": args.data, "split": args.split,
         "seconds": seconds, **res.to_dict()}
    if executor_info:
        d["executor"] = executor_info
    if isinstance(model, QuantizedModel):
        d["quantizer"] = model.meta.get("quantizer")
    if args.json:
        print_json(d)
        return 0
    how = "bit-exact fixed point" if res.kind == "fixed" else "float32"
    print(f"{graph.name} ({how}) on {res.n:,} images of {args.data}"
          f"{' (' + args.split + ')' if args.data.lower() in ('fmnist', 'fashion-mnist') else ''}"
          f" [{seconds:.1f} s"
          + (f", {executor_info['shards']} shards on {executor_info['workers']} Ray workers"
             if executor_info else "") + "]")
    rows = [["top-1", res.correct1, 100.0 * res.top1],
            [f"top-{res.k5}", res.correct5, 100.0 * res.top5]]
    print(table(["metric", "correct", "accuracy %"], rows, digits=2))
    if res.saturated is not None:
        print(f"saturated values: {res.saturated:,}")
    return 0
