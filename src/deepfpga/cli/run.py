"""`deepfpga run`: the whole flow on one model, checked bit-exact, with an HTML report.

With no arguments: the trained `fmnist-vgg`, Fashion-MNIST, the `zedboard` target (an 8-bit
accelerator, matching the 8-bit model), 8-bit dynamic quantization calibrated on training images,
the test images through the functional simulator (checked value by value against the reference
executor), the timing simulator, and `out/report.html` + `out/summary.json`.

Exit status: 0 when every simulated value equals the reference; 1 when any differs (the report is
still written); 2 for bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Any

from deepfpga.cli.compile import add_space_to_depth_flag
from deepfpga.cli.output import add_json_flag, print_json, table
from deepfpga.errors import InputError


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from deepfpga import pipeline as flow

    p = sub.add_parser(
        "run", help="the whole flow: quantize, compile, simulate, check bit-exact, report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=flow.DEFAULT_MODEL, metavar="MODEL",
                   help="zoo name, .onnx, float-model .npz or pkg.mod:factory"
                        f" (default {flow.DEFAULT_MODEL})")
    p.add_argument("--target", default=flow.DEFAULT_TARGET, metavar="PRESET_OR_TOML",
                   help=f"accelerator config (default {flow.DEFAULT_TARGET})")
    p.add_argument("--data", default=flow.DEFAULT_DATA, metavar="DATA",
                   help="fashion-mnist, a folder of class folders, or an .npz with x and y"
                        f" (default {flow.DEFAULT_DATA}); calibration uses its training split")
    p.add_argument("--images", type=_positive, default=flow.DEFAULT_IMAGES, metavar="N",
                   help=f"test images to simulate (default {flow.DEFAULT_IMAGES})")
    p.add_argument("--bits", default="8", choices=("8", "16", "8/4"),
                   help="quantization preset (default 8)")
    p.add_argument("--calib-size", type=_positive, default=flow.DEFAULT_CALIB, metavar="N",
                   help=f"calibration images (default {flow.DEFAULT_CALIB})")
    p.add_argument("--batch-size", type=_positive, default=flow.DEFAULT_BATCH, metavar="N",
                   help=f"images per simulated batch (default {flow.DEFAULT_BATCH})")
    p.add_argument("--out", default="out", metavar="DIR",
                   help="where report.html and summary.json go (default out/)")
    p.add_argument("--rtl", action="store_true",
                   help="also run test images on the accelerator RTL (Verilator) and check them")
    p.add_argument("--rtl-images", type=_positive, default=2, metavar="N",
                   help="images for --rtl (default 2)")
    add_space_to_depth_flag(p)
    add_json_flag(p)
    return p


def _say(args: argparse.Namespace, text: str = "") -> None:
    if not args.json:
        print(text, flush=True)


def _human(s: dict[str, Any], files: dict[str, Path]) -> None:
    acc, perf, exact = s["accuracy"], s["performance"], s["bit_exact"]
    sim, flt = acc["simulated"], acc["float"]
    print()
    print(table(["", "top-1 %", f"top-{sim['k5']} %", "images"], [
        [f"fixed point ({s['quantization']['bits']}-bit), functional simulator",
         100 * sim["top1"], 100 * sim["top5"], acc["images"]],
        ["float32, same images", 100 * flt["top1"], 100 * flt["top5"], acc["images"]],
    ], digits=2))
    print()
    print(f"{perf['frame_ms']:.3f} ms per frame, {perf['fps']:.1f} fps, {perf['gops']:.2f} GOP/s"
          f" overall (CONV {perf['conv_gops']:.2f}, FC {perf['fc_gops']:.2f}; peak"
          f" {perf['peak_gops']:.1f}) — timing simulator")
    print()
    print(table(
        ["layer", "kind", "tiling Tr×Tc×Ti×To", "latency ms", "GOP/s", "bound", "util %", "bytes",
         "bit-exact"],
        [[r["name"], r["kind"], r["tiling"], r["latency_ms"], r["gops"], r["bound"],
          100 * r["utilisation"], int(r["bytes"]),
          "-" if r["bit_exact"] is None else ("yes" if r["bit_exact"] else
                                              f"NO ({r['mismatches']:,})")]
         for r in s["layers"]],
    ))
    if s["host_layers"]:
        print(f"host layers (on the CPU): {', '.join(s['host_layers'])}")
    print()
    verdict = ("bit-exact" if exact["ok"] else f"NOT bit-exact: {exact['mismatches']:,}"
               " mismatching values")
    print(f"functional simulator vs reference executor: {exact['values_compared']:,} values,"
          f" {verdict}")
    for k in ("report", "summary"):
        if k in files:
            print(f"{k}: {files[k]}")


def _mismatch_message(s: dict[str, Any]) -> str:
    bad = [c for c in s["bit_exact"]["layers"] if c["mismatches"]]
    parts = []
    for c in bad:
        f = c["first_mismatch"]
        where = (f" (first: image {f['image']} at {f['index']}: simulated {f['simulated']},"
                 f" reference {f['reference']})") if f else ""
        parts.append(f"{c['layer']}: {c['mismatches']:,} of {c['values']:,}{where}")
    return ("functional simulator differs from the reference executor in"
            f" {s['bit_exact']['mismatches']:,} values — " + "; ".join(parts))


def run(args: argparse.Namespace) -> int:
    from deepfpga import pipeline as flow

    if not args.model:
        raise InputError("MODEL must not be empty")
    from deepfpga.fileio import check_output

    check_output(args.out, "--out", directory=True)  # before the flow, not after it
    if args.calib_size > flow.DEFAULT_CALIB:  # a request the machine cannot hold fails now
        from deepfpga.cli.quantize import check_calibration_memory
        from deepfpga.models import load_model

        check_calibration_memory(load_model(args.model), args.calib_size, args.calib_size)
    # The command as an equivalent explicit invocation (every default spelled out).
    argv = ["deepfpga", "run", args.model, "--target", args.target, "--data", args.data,
            "--images", str(args.images), "--bits", args.bits, "--calib-size",
            str(args.calib_size), "--out", args.out, "--space-to-depth", args.space_to_depth]
    run_cfg = flow.RunConfig(
        model=args.model, target=args.target, data=args.data, images=args.images,
        bits=args.bits, calib_size=args.calib_size, batch_size=args.batch_size,
        out=Path(args.out), progress=not args.json, command=shlex.join(argv),
        space_to_depth=args.space_to_depth)

    def on_step(rec: flow.StepRecord) -> None:
        _say(args, f"[{rec.name:>8}] {rec.seconds:7.2f} s  {rec.note}")

    _say(args, f"deepfpga run: {run_cfg.model} on {run_cfg.target}, {run_cfg.images}"
               f" {run_cfg.data} test images, {run_cfg.bits}-bit")
    steps = flow.STEPS
    if args.rtl:
        from deepfpga.rtl.accel.flowstep import with_rtl

        steps = with_rtl(steps, args.rtl_images)
        run_cfg = dataclasses.replace(run_cfg, command=shlex.join(
            [*argv, "--rtl", "--rtl-images", str(args.rtl_images)]))
    st = flow.run_flow(run_cfg, steps=steps, on_step=on_step)
    s = st.summary
    assert s is not None
    if args.json:
        print_json({**s, "files": {k: str(v) for k, v in st.files.items()}})
    else:
        _human(s, dict(st.files))
    if not s["bit_exact"]["ok"]:
        print(f"deepfpga run: error: {_mismatch_message(s)}", file=sys.stderr)
        return 1
    if "rtl" in s and not s["rtl"]["ok"]:
        print("deepfpga run: error: the RTL differs from the reference executor or the"
              f" functional simulator ({s['rtl']['mismatches']:,} values; saturation counts"
              f" {'equal' if s['rtl']['saturations_equal'] else 'differ'})", file=sys.stderr)
        return 1
    return 0
