"""`deepfpga rtl`: the PE's Verilog; synthesis of the whole accelerator (default) or of the PE
(resources, Fmax on ECP5, and whether it fits the device); the whole accelerator's Verilog +
Verilator model (`build`) and a compiled program on it (`run`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deepfpga.cli.output import add_json_flag, print_json, table
from deepfpga.errors import InputError


def _add_pe_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("PE parameters (a target, optionally overridden by the flags)")
    g.add_argument("--target", metavar="PRESET_OR_TOML",
                   help="accelerator config: preset (zc706-paper, zc706, zc706-8, zedboard,"
                   " tiny) or"
                   " TOML file; default tiny")
    g.add_argument("--convolvers", type=int,
                   help="3×3 convolvers in the PE (default: the target's)")
    g.add_argument("--bits", type=int, help="data width in bits (default: the target's)")
    g.add_argument("--weight-bits", type=int,
                   help="weight width (default: --bits if given, else the target's)")
    g.add_argument("--bias-bits", type=int, help="bias width (default: the target's)")
    g.add_argument("--acc-bits", type=int, help="accumulator width (default: the target's)")
    g.add_argument("--max-row-width", type=int,
                   help="widest unpadded tile row (default: the target's)")
    g.add_argument("--max-pad", type=int, help="most zero padding per side (default: the"
                   " target's)")


def params_from_args(args: argparse.Namespace) -> Any:
    from deepfpga.rtl.params import PEParams

    given = {
        "convolvers": args.convolvers, "data_bits": args.bits, "weight_bits": args.weight_bits,
        "bias_bits": args.bias_bits, "acc_bits": args.acc_bits,
        "max_row_width": args.max_row_width, "max_pad": args.max_pad,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if "data_bits" in given:            # --weight-bits defaults to --bits (a flag's meaning)
        given.setdefault("weight_bits", given["data_bits"])
    from deepfpga.hw.config import load_config

    # the flags override a config: the --target given, else the `tiny` preset
    return PEParams.from_config(load_config(args.target or "tiny"), **given)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("rtl", help="the accelerator's RTL: Verilog, synthesis, Verilator runs",
                       description=__doc__)
    rsub = p.add_subparsers(dest="rtl_command", metavar="{pe,synth,build,run}", required=True)

    pe = rsub.add_parser("pe", help="write the PE as Verilog")
    _add_pe_args(pe)
    pe.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    add_json_flag(pe)

    sy = rsub.add_parser("synth", help="synthesize the whole accelerator (or --top pe) with Yosys"
                         " (ECP5: also nextpnr Fmax) and judge whether it fits the device")
    _add_pe_args(sy)
    from deepfpga.hw.devices import device_names

    sy.add_argument("--top", choices=("accel", "pe"), default="accel",
                    help="accel: the whole accelerator deepfpga_accel (default); pe: one PE"
                         " (the PE flags above apply only to it)")
    # any case: the presets spell their device XC7Z045, the choices are lower case
    sy.add_argument("--device", type=str.lower, choices=device_names(),
                    help="a device of deepfpga.hw.devices (default: the target's): Xilinx parts"
                         " synth_xilinx; ECP5 (ecp5-85f) synth_ecp5 + nextpnr")
    sy.add_argument("--workdir", metavar="DIR",
                    help="keep Verilog, logs and netlists here (default: a temporary directory)")
    sy.add_argument("--timeout", type=float, default=None, metavar="S",
                    help="give up on a tool after S seconds")
    sy.add_argument("--no-pnr", action="store_true", help="ECP5: synthesis only, no Fmax")
    sy.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    add_json_flag(sy)

    bd = rsub.add_parser("build", help="the accelerator's Verilog and its Verilator model")
    bd.add_argument("--target", required=True, metavar="PRESET_OR_TOML",
                    help="accelerator config: preset (zc706-paper, zc706, zc706-8, zedboard,"
                         " tiny) or TOML file")
    bd.add_argument("-o", "--output", metavar="DIR",
                    help="also write the Verilog and a copy of the model library here")
    add_json_flag(bd)

    rn = rsub.add_parser("run", help="run a compiled program on the accelerator RTL (Verilator)")
    rn.add_argument("build_dir", metavar="BUILD_DIR",
                    help="output directory of `deepfpga compile` (program.bin, ddr.bin,"
                         " manifest.json)")
    rn.add_argument("--input", metavar="X.npy",
                    help="input integers in the input format, one sample or a batch (default:"
                         " one random sample, seed 0)")
    rn.add_argument("--target", metavar="PRESET_OR_TOML",
                    help="accelerator config (default: the preset named in the manifest)")
    rn.add_argument("--output", metavar="Y.npy",
                    help="where the outputs go (.npy; .npz for several outputs; default"
                         " BUILD_DIR/rtl_output.npy or .npz)")
    add_json_flag(rn)
    return p


def _run_pe(args: argparse.Namespace) -> int:
    from deepfpga.fileio import check_output
    from deepfpga.rtl.export import TOP_NAME, write_verilog

    check_output(args.output, "--output", directory=True)
    params = params_from_args(args)
    path = write_verilog(params, Path(args.output))
    info = {"verilog": str(path), "top": TOP_NAME, "params": params.to_dict(),
            "multipliers": params.multipliers, "line_buffer_depth": params.line_depth}
    if args.json:
        print_json(info)
    else:
        rows = [[k, v] for k, v in params.to_dict().items()]
        rows += [["multipliers", params.multipliers], ["line_buffer_depth", params.line_depth]]
        print(table(["parameter", "value"], rows))
        print(f"wrote {path} (top module {TOP_NAME})")
    return 0


_PE_FLAGS = ("convolvers", "bits", "weight_bits", "bias_bits", "acc_bits", "max_row_width",
             "max_pad")


def _run_synth(args: argparse.Namespace) -> int:
    from deepfpga.fileio import check_output
    from deepfpga.hw.resources import fit_report

    if args.workdir is not None:
        check_output(args.workdir, "--workdir", directory=True)
    if args.timeout is not None and not 0 < args.timeout < float("inf"):
        raise InputError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    given = [f for f in _PE_FLAGS if getattr(args, f) is not None]
    if args.top == "accel" and given:
        raise InputError(f"--{given[0].replace('_', '-')} applies to --top pe only (the"
                         " accelerator is the target's; edit the TOML to change it)")
    from deepfpga.hw.config import load_config
    from deepfpga.hw.devices import get_device

    cfg = load_config(args.target or "tiny")
    dev = get_device(args.device or cfg.device)
    what = (f"accelerator {cfg.name}" if args.top == "accel"
            else params_from_args(args).tag())
    if not args.json:
        print(f"synthesizing {what} for {dev.name} ...", file=sys.stderr)
    try:
        if args.top == "accel":
            from deepfpga.rtl.synth import synthesize_accel

            r = synthesize_accel(cfg, dev.name, workdir=args.workdir, pnr=not args.no_pnr,
                                 timeout_s=args.timeout, seed=args.seed)
        else:
            from deepfpga.rtl.synth import synthesize

            r = synthesize(params_from_args(args), dev.name, workdir=args.workdir,
                           pnr=not args.no_pnr, timeout_s=args.timeout, seed=args.seed)
    except RuntimeError as e:             # a tool failed or timed out: not bad input
        print(f"deepfpga rtl synth: error: {e}", file=sys.stderr)
        return 1
    report = fit_report(r.used(), dev)
    fits = all(line.fits for line in report)
    if args.json:
        print_json({**r.to_dict(), "fit": [line.to_dict() for line in report], "fits": fits})
        return 0
    dsp = dev.dsp_cell
    bram = f"{dev.bram18_cell} / {dev.bram36_cell}" if dev.bram36_cell else dev.bram18_cell
    mult = ("multipliers (CALC grid)" if r.top == "accel" else "multipliers (9 per convolver)")
    rows: list[list[Any]] = [
        [mult, r.multipliers],
        [dsp, r.dsps],
        ["LUT (logic)", r.luts],
        ["LUT as memory", r.lutram_luts],
        ["FF", r.ffs],
        [bram, f"{r.bram18} / {r.bram36}" if dev.bram36_cell else r.bram18],
        ["BRAM36 equivalent", r.bram36_equivalent],
        ["Fmax (MHz, nextpnr)", r.fmax_mhz],
        ["synthesis time (s)", r.synth_seconds],
        ["place & route time (s)", r.pnr_seconds],
    ]
    print(table([f"{r.design} on {dev.name}", "value"], rows))
    print(table(["resource", "used", "device", "used %", "limit %", "fits"],
                [[x.resource, x.used, x.available, 100 * x.fraction, 100 * x.limit,
                  "yes" if x.fits else "NO"] for x in report], digits=1))
    print(f"{'fits' if fits else 'does NOT fit'} {dev.name} (limits leave room for the shell)")
    print(f"logs: {r.log_dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    from deepfpga.cli.rtl_accel import run_build, run_program

    if args.rtl_command == "pe":
        return _run_pe(args)
    if args.rtl_command == "build":
        return run_build(args)
    if args.rtl_command == "run":
        return run_program(args)
    return _run_synth(args)
