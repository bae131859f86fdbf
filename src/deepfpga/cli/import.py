"""`deepfpga import MODEL.onnx -o Q.npz`: a quantized ONNX file (QONNX or QDQ) as a quantized
model, formats from the file (no calibration).

Power-of-two scales, zero points 0 and per-tensor scales map exactly; anything else is refused
naming the node and the value, unless `--requantize` rounds scales to the nearest power of two
(per-channel weight scales to one per tensor). With `--data`, the file itself (in onnxruntime)
and the imported model (the bit-exact reference executor) are scored on the test images, so
the accuracy change of `--requantize` is measured, not guessed. `deepfpga run`/`compile` also
take the .onnx directly.
"""

from __future__ import annotations

import argparse
from typing import Any

from deepfpga.cli.output import add_json_flag, print_json, table


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("import", help="a QONNX / QDQ file as a quantized model (.npz)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL.onnx", help="quantized ONNX file (QONNX or QDQ)")
    p.add_argument("-o", "--out", metavar="Q.npz", help="quantized-model file to write")
    p.add_argument("--requantize", action="store_true",
                   help="round scales to the nearest power of two instead of refusing")
    p.add_argument("--data", metavar="DATA",
                   help="score the file and the imported model on these test images"
                        " (fashion-mnist, a folder of class folders, or an .npz with x and y)")
    p.add_argument("--images", type=int, default=1000, metavar="N",
                   help="test images for --data (default 1000)")
    add_json_flag(p)
    return p


def _scores(imp: Any, path: str, data: str, n: int) -> dict[str, Any]:
    """Top-1 of the file in onnxruntime and of the imported model in the reference executor."""
    from pathlib import Path

    import numpy as np
    import onnx

    from deepfpga.data import load_dataset
    from deepfpga.interchange.runtime import file_runner
    from deepfpga.quant.evaluate import topk_hits
    from deepfpga.quant.reference import ReferenceExecutor

    ds = load_dataset(data, "test", n)
    run = file_runner(onnx.load_model_from_string(Path(path).read_bytes()))
    ex = ReferenceExecutor.build(imp.qmodel)
    chunks = range(0, len(ds), 500)
    theirs = np.concatenate([run(ds.x[i:i + 500]) for i in chunks])
    ours = np.concatenate([ex.run(ds.x[i:i + 500], float_input=True).output for i in chunks])
    t1_file = float(topk_hits(theirs, ds.y, 1).mean())
    t1_ours = float(topk_hits(ours, ds.y, 1).mean())
    return {"images": len(ds), "top1_file": t1_file, "top1_deepfpga": t1_ours,
            "top1_change": t1_ours - t1_file,
            "predictions_differing": int((theirs.argmax(1) != ours.argmax(1)).sum())}


def run(args: argparse.Namespace) -> int:
    from deepfpga.errors import InputError
    from deepfpga.interchange.onnx_quant import load_quantized_onnx, summary_rows
    from deepfpga.quant.qfile import save_qmodel

    if args.images <= 0:
        raise InputError(f"--images must be positive, got {args.images}")
    imp = load_quantized_onnx(args.model, requantize=args.requantize)
    q = imp.qmodel
    out = save_qmodel(args.out, q) if args.out else None
    scores = _scores(imp, args.model, args.data, args.images) if args.data else None
    info = {"model": q.graph.name, "kind": imp.kind, "input_format": q.input_format.to_dict(),
            "formats": {n: f.to_dict() for n, f in q.formats.items()}, "notes": list(imp.notes),
            "output": str(out) if out else None, "accuracy": scores}
    if args.json:
        print_json(info)
        return 0
    print(f"{q.graph.name}: {imp.kind.upper()}, {len(q.graph.layers)} layers, input"
          f" {q.input_format}")
    print(table(["layer", "kind", "input", "weight", "bias", "output"], summary_rows(q)))
    for n in imp.notes:
        print(f"note: {n}")
    if scores:
        print(f"top-1 on {scores['images']} images: file (onnxruntime)"
              f" {100 * scores['top1_file']:.2f} %, deepfpga {100 * scores['top1_deepfpga']:.2f}"
              f" % (change {100 * scores['top1_change']:+.2f}), predictions differing:"
              f" {scores['predictions_differing']}")
    if out:
        print(f"wrote {out}")
    return 0
