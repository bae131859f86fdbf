"""`deepfpga infer QMODEL --input X.npy`: run a quantized model bit-exactly on a batch.

The reference executor computes the arithmetic contract exactly (docs/arithmetic.md); this
command writes its final output, optionally every layer's integers, and reports per layer the
shape, the fixed-point format and how many values saturated.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from deepfpga.cli.output import add_json_flag, print_json, table


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "infer", help="run a quantized model bit-exactly on an input batch",
        description="Run a quantized model file (.npz from `deepfpga quantize`) through the"
                    " bit-exact reference executor. The input is a .npy batch (N, C, H, W) or"
                    " one sample (C, H, W): integers already in the model's input format, or"
                    " floats with --float-input (quantized here, saturations reported).",
    )
    p.add_argument("qmodel", metavar="QMODEL", help="quantized model file (.npz)")
    p.add_argument("--input", required=True, metavar="X.npy", help="input batch (.npy)")
    p.add_argument("--output", metavar="Y.npy",
                   help="write the final output here (.npy; .npz for a model with several"
                        " outputs)")
    p.add_argument("--dump", metavar="DIR",
                   help="write every layer's output as DIR/<layer>.npy (integers in the"
                        " format's smallest type; float for a host-only output layer) and"
                        " DIR/formats.json")
    p.add_argument("--float-input", action="store_true",
                   help="the input holds floats: quantize it to the model's input format")
    add_json_flag(p)
    return p


def _load_input(path: str, float_input: bool, input_shape: tuple[int, ...],
                fmt: Any) -> tuple[np.ndarray, bool]:
    """The input batch, and whether a single sample was given (a batch axis is added)."""
    from deepfpga.errors import InputError
    from deepfpga.fileio import NPZ_READ_ERRORS

    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such input file: {p}")
    try:
        x = np.load(p, allow_pickle=False)
    except NPZ_READ_ERRORS as e:
        raise InputError(f"input {p}: not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        raise InputError(f"input {p}: an .npz archive; give one .npy array")
    single = tuple(x.shape) == tuple(input_shape)
    if single:
        x = x[None]
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        want = ", ".join(map(str, input_shape))
        raise InputError(
            f"input {p}: shape {tuple(x.shape)} does not fit the model input ({want})"
            f" or a batch (N, {want})"
        )
    if x.shape[0] == 0:
        raise InputError(f"input {p}: an empty batch (0 samples)")
    if float_input:
        if x.dtype.kind not in "fiu":
            raise InputError(f"input {p}: dtype {x.dtype} is not numeric")
    elif x.dtype.kind not in "iu":
        raise InputError(
            f"input {p}: dtype {x.dtype}; give integers in the input format {fmt}"
            f" [{fmt.qmin}, {fmt.qmax}] or pass --float-input"
        )
    return x, single


def _write_output(path: str, outputs: dict[str, np.ndarray], single: bool) -> Path:
    """One output as .npy, several as .npz (the suffix was checked before running)."""
    from deepfpga.fileio import atomic_save_npy, atomic_save_npz

    outs = {k: (v[0] if single else v) for k, v in outputs.items()}
    if len(outs) == 1:
        return atomic_save_npy(path, next(iter(outs.values())))
    return atomic_save_npz(path, outs)


def run(args: argparse.Namespace) -> int:
    from deepfpga.errors import InputError
    from deepfpga.fileio import atomic_save_npy, atomic_write_json, check_output
    from deepfpga.hw.arch import stays_float
    from deepfpga.ir import INPUT
    from deepfpga.quant.qfile import load_qmodel
    from deepfpga.quant.reference import ReferenceExecutor

    if args.output is not None:
        check_output(args.output, "--output", inputs=[args.input, args.qmodel])
    if args.dump is not None:
        check_output(args.dump, "--dump", directory=True)
    qm = load_qmodel(args.qmodel)
    g = qm.graph
    x, single = _load_input(args.input, args.float_input, g.input_shape, qm.input_format)
    if args.output is not None:
        n_out = len(g.outputs)
        suffix = Path(args.output).suffix
        if (n_out == 1 and suffix != ".npy") or (n_out > 1 and suffix != ".npz"):
            raise InputError(f"--output must end in {'.npy' if n_out == 1 else '.npz'}"
                             f" (the model has {n_out} output(s))")
    dump = Path(args.dump) if args.dump else None
    if dump is not None:  # the files --dump writes must not replace what this run reads
        for fname in [f"{INPUT}.npy", "formats.json", *(f"{lay.name}.npy" for lay in g.layers)]:
            check_output(dump / fname, "--dump", inputs=[args.input, args.qmodel, args.output])
    float_layers = {lay.name for lay in g.layers if stays_float(lay, g.outputs)}

    def write_layer(name: str, arr: np.ndarray) -> None:
        assert dump is not None
        a = arr[0] if single else arr
        if name not in float_layers:
            a = a.astype(qm.format_of(name).dtype)
        atomic_save_npy(dump / f"{name}.npy", a)

    ex = ReferenceExecutor.build(qm)
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
    res = ex.run(x, float_input=args.float_input, keep={INPUT} if dump is not None else False,
                 on_layer=write_layer if dump is not None else None)
    if dump is not None:
        write_layer(INPUT, res.layers[INPUT])
        atomic_write_json(dump / "formats.json", {
            "input": qm.input_format.to_dict(),
            "layers": {name: f.to_dict() for name, f in qm.formats.items()},
            "float_layers": sorted(float_layers),
        })
    out_path = _write_output(args.output, dict(res.outputs), single) if args.output else None

    shapes = g.shapes()
    rows = []
    if args.float_input:
        rows.append({"layer": INPUT, "kind": "input", "where": "host",
                     "shape": list(shapes[INPUT]), "format": str(qm.input_format),
                     "saturated": res.saturations.get(INPUT, 0)})
    for lay in g.layers:
        fmt = "float" if lay.name in float_layers else str(qm.formats[lay.name].output)
        rows.append({"layer": lay.name, "kind": lay.kind,
                     "where": "host" if lay.host_only else "accelerator",
                     "shape": list(shapes[lay.name]), "format": fmt,
                     "saturated": res.saturations[lay.name]})
    summary = {
        "model": g.name,
        "batch": int(x.shape[0]),
        "input_format": qm.input_format.to_dict(),
        "layers": rows,
        "total_saturated": res.total_saturations,
        "outputs": {name: {"shape": list(a.shape[1:] if single else a.shape),
                           "dtype": str(a.dtype)} for name, a in res.outputs.items()},
        "output_file": str(out_path) if out_path else None,
        "dump_dir": str(dump) if dump else None,
    }
    if args.json:
        print_json(summary)
        return 0
    print(f"{g.name}: {summary['batch']} sample(s), input format {qm.input_format}")
    print(table(["layer", "kind", "where", "shape", "format", "saturated"],
                [[r["layer"], r["kind"], r["where"], "x".join(map(str, r["shape"])),
                  r["format"], r["saturated"]] for r in rows]))
    print(f"total saturated values: {summary['total_saturated']}")
    if out_path:
        print(f"output written to {out_path}")
    if dump:
        print(f"layer outputs written to {dump}/")
    return 0
