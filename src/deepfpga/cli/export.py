"""`deepfpga export QMODEL --format qdq|qonnx -o model.onnx`: a quantized model as ONNX.

QMODEL is a quantized-model .npz (from `deepfpga quantize`) or a quantized .onnx (QDQ or QONNX,
re-written in the other form). QDQ runs in onnxruntime and gives the integers of the bit-exact
reference executor: every rounding requantizer carries half an LSB in its bias so that
QuantizeLinear's round-half-even equals the contract's round half up (`--plain` leaves it out;
then exact ties round differently). docs/interchange.md has the mapping and the measurements.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from deepfpga.cli.output import add_json_flag, print_json


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from deepfpga.interchange.export import FORMATS

    p = sub.add_parser("export", help="write a quantized model as QDQ ONNX or QONNX",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="QMODEL", help="quantized-model .npz or quantized .onnx")
    p.add_argument("--format", choices=FORMATS, default="qdq",
                   help="qdq (QuantizeLinear/DequantizeLinear, default) or qonnx (Quant nodes)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="file to write")
    p.add_argument("--plain", action="store_true",
                   help="no half-LSB rounding bias: requantizers round half to even, not up")
    add_json_flag(p)
    return p


def load_quantized(spec: str) -> Any:
    """A QuantizedModel from a quantized-model .npz or a quantized .onnx."""
    from deepfpga.errors import InputError
    from deepfpga.quant.qfile import is_qmodel_file, load_qmodel

    path = Path(spec)
    if is_qmodel_file(path):
        return load_qmodel(path)
    if path.suffix.lower() == ".onnx":
        from deepfpga.interchange.onnx_quant import load_quantized_onnx

        return load_quantized_onnx(path).qmodel
    if not path.exists():
        raise InputError(f"no such file: {spec}")
    raise InputError(f"{spec}: not a quantized model (.npz from deepfpga quantize, or a QDQ /"
                     " QONNX .onnx)")


def run(args: argparse.Namespace) -> int:
    from deepfpga.fileio import atomic_write_bytes
    from deepfpga.interchange.export import export_onnx

    q = load_quantized(args.model)
    data = export_onnx(q, args.format, half_lsb=not args.plain)
    out = atomic_write_bytes(args.output, data)
    info = {"model": q.graph.name, "format": args.format, "output": str(out), "bytes": len(data),
            "layers": len(q.graph.layers), "half_lsb": not args.plain,
            "input_format": q.input_format.to_dict()}
    if args.json:
        print_json(info)
    else:
        rounding = ("round half up (half-LSB bias)" if not args.plain
                    else "round half to even (plain)")
        print(f"{q.graph.name}: {len(q.graph.layers)} layers as {args.format.upper()},"
              f" requantizers {rounding}, input {q.input_format}")
        print(f"wrote {out} ({len(data):,} bytes)")
    return 0
