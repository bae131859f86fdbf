"""`deepfpga simulate MODEL --target T`: time a network on the accelerator (timing model).

MODEL is a compiled OUTDIR (program.bin + manifest.json), a quantized-model file (QMODEL), or
any architecture `load_model` accepts (a zoo name such as vgg16-svd, an .onnx file): an
architecture is compiled without weights, which is all timing needs.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfpga.cli.compile import add_space_to_depth_flag
from deepfpga.cli.output import add_json_flag, print_json, table
from deepfpga.errors import InputError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled
    from deepfpga.compiler.compile import SpaceToDepth
    from deepfpga.hw.config import AcceleratorConfig

# Qiu et al., FPGA 2016, abstract and §8: VGG16-SVD on the ZC706 at 150 MHz, 16-bit.
PAPER = {"model": "vgg16-svd", "source": "Qiu et al., FPGA 2016 (ZC706, 150 MHz, 16-bit)",
         "fps": 4.45, "frame_ms": 224.6, "conv_gops": 187.8, "gops": 137.0}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("simulate", help="time a network on the accelerator (timing model)",
                       description=__doc__)
    p.add_argument("model", metavar="MODEL",
                   help="compiled OUTDIR, QMODEL file, or architecture (zoo name, .onnx)")
    p.add_argument("--target", required=True, metavar="PRESET_OR_TOML",
                   help="accelerator config: zc706-paper, zc706, zc706-8, zedboard, tiny,"
                   " or a TOML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="change one config key for a what-if run (repeatable), e.g."
                        " --set burst_overhead_cycles=50; the result must still fit the device")
    p.add_argument("--bits", metavar="PRESET", default=None,
                   help="architecture only: weight widths of a bit preset (16, 8, 8/4: 4-bit FC"
                        " weights, stored two per byte where the config allows), capped at the"
                        " config's weight_bits; a quantized model has its own widths")
    add_space_to_depth_flag(p)
    add_json_flag(p)
    return p


def _parse_value(key: str, text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text          # a bare word: a string (only `device` and `name` take one)


def target_config(target: str, overrides: list[str]) -> AcceleratorConfig:
    """The config of `target` with KEY=VALUE overrides, validated and fit-checked like a
    preset."""
    from deepfpga.hw.config import config_from_dict, load_config
    from deepfpga.hw.resources import check_fits

    cfg = load_config(target)
    if not overrides:
        return cfg
    d = cfg.to_dict()
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        if key not in d or key == "notes":
            raise InputError(f"--set {item!r}: unknown config key {key!r}")
        d[key] = _parse_value(key, text.strip())
    d["name"] = f"{cfg.name}+" + ",".join(o.replace(" ", "") for o in overrides)
    cfg = config_from_dict(d, f"{target} with --set")
    check_fits(cfg)
    return cfg


def load_compiled_spec(spec: str, cfg: AcceleratorConfig, bits: str | None = None,
                       space_to_depth: SpaceToDepth = "auto") -> tuple[Compiled, str]:
    """(Compiled, what was compiled) for MODEL `spec` on `cfg`; `bits`: the weight widths'
    preset of an architecture (refused for anything else)."""
    from deepfpga.compiler.artifact import load_compiled

    path = Path(spec)
    if path.is_dir():
        if bits is not None:
            raise InputError(f"--bits applies to an architecture; {spec} is a compiled program")
        if space_to_depth != "auto":
            raise InputError(f"--space-to-depth applies when compiling, but {spec} is a"
                             " compiled program; pass the model instead")
        return load_compiled(path, cfg), "compiled program"
    from deepfpga.cli.compile import compile_spec

    compiled, what = compile_spec(spec, cfg, bits, space_to_depth)
    if what.startswith("architecture"):
        what = "architecture (no weights" + (f", {bits} weights)" if bits else ")")
    return compiled, what


def run(args: argparse.Namespace) -> int:
    from deepfpga.sim.host import host_costs
    from deepfpga.sim.timing import simulate_timing
    from deepfpga.sim.utilisation import host_notes, layer_utilisation

    if args.overrides and Path(args.model).is_dir():
        # a compiled program holds its config's hash: any --set makes it another config
        raise InputError(f"--set changes the accelerator configuration, but {args.model} is a"
                         " program compiled for one; pass the model (zoo name, .onnx, .npz)"
                         " instead of the compiled directory to compile it for the new one")
    cfg = target_config(args.target, args.overrides)
    compiled, what = load_compiled_spec(args.model, cfg, args.bits, args.space_to_depth)
    timing = simulate_timing(compiled)
    host = host_costs(compiled)
    util = layer_utilisation(timing, compiled.program.instructions, cfg)
    paper = PAPER if Path(args.model).name == PAPER["model"] else None
    if args.json:
        print_json({"model": args.model, "source": what, "target": cfg.name,
                    "peak_gops": cfg.peak_gops, "timing": timing.to_dict(),
                    "host_layers": [h.to_dict() for h in host], "paper": paper,
                    "utilisation": [u.to_dict() for u in util]
                    + host_notes([h.layer for h in host])})
        return 0
    print(f"{args.model} ({what}) on {cfg.name}: {cfg.clock_mhz:g} MHz, {cfg.num_pe} PE ×"
          f" {cfg.convolvers_per_pe} convolvers, peak {cfg.peak_gops:.1f} GOP/s,"
          f" DDR {cfg.ddr_bandwidth_gbps:g} GB/s")
    print()
    summary = [("frame time (ms)", timing.seconds * 1e3, "frame_ms"),
               ("fps", timing.fps, "fps"),
               ("CONV GOP/s", timing.conv_gops, "conv_gops"),
               ("overall GOP/s", timing.gops, "gops")]
    if paper:
        rows = [(name, v, paper[key], None if v is None else v / paper[key])
                for name, v, key in summary]
        print(table(["", "deepfpga", "paper", "ratio"], rows))
        print(f"paper: {paper['source']}")
    else:
        print(table(["", "deepfpga"], [(name, v) for name, v, _ in summary]))
    print()
    print(table(
        ["layer", "kind", "time ms", "GOP", "GOP/s", "util %", "MB in", "MB out", "bursts",
         "mean burst B", "limit", "§8.1 bound ms", "slots %", "why not 100 %"],
        [(lt.name, lt.kind, lt.time_s * 1e3, lt.ops / 1e9, lt.gops, 100 * lt.mult_util,
          lt.bytes_loaded / 1e6, lt.bytes_saved / 1e6, lt.transactions,
          round(lt.mean_burst_bytes),
          lt.limit, lt.bound_s * 1e3, 100 * u.utilisation, u.note())
         for lt, u in zip(timing.layers, util, strict=True)],
    ))
    print(f"slots %: useful MACs over the {util[0].products_per_cycle if util else 0} product"
          " slots per cycle × the layer's cycles; why not 100 %: the cause losing most"
          " (--json: all causes)")
    busy = timing.engine_busy_cycles
    print()
    if timing.cycles:
        # read and write are two AXI channels, each busy up to 100 % of the frame; the bytes
        # they move are what the DDR's one bandwidth has to carry
        moved = sum(lt.bytes_loaded + lt.bytes_saved for lt in timing.layers)
        print(f"{timing.cycles:,} cycles; busy: LOAD {busy['LOAD']:,}, CALC {busy['CALC']:,},"
              f" SAVE {busy['SAVE']:,} (DDR read channel {100 * busy['LOAD'] / timing.cycles:.1f}"
              f" %, write channel {100 * busy['SAVE'] / timing.cycles:.1f} % of the frame; the"
              f" bytes moved use {100 * moved / (cfg.ddr_bytes_per_cycle * timing.cycles):.1f} %"
              " of the DDR's bandwidth)")
    else:
        print("0 cycles")
    if host:
        print()
        print(table(["host layer", "op", "values in", "values out", "DDR bytes",
                     "≥ ms at DDR bandwidth"],
                    [(h.layer, h.op, h.values_in, h.values_out, h.bytes_moved,
                      h.ddr_seconds * 1e3) for h in host]))
        extra = sum(h.ddr_seconds for h in host)
        print(f"host layers run on the CPU, outside the accelerator's timing: their DDR traffic"
              f" alone adds ≥ {extra * 1e3:.3f} ms per frame (frame ≥"
              f" {(timing.seconds + extra) * 1e3:.3f} ms; the CPU's own time is not modelled)")
    if timing.ops_source != "manifest":
        print("operations counted from the instructions (every 3×3 tap, padding included)")
    return 0
