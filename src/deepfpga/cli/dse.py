"""`deepfpga dse MODEL --device D`: the best accelerator for a network on a chip.

Explores PE count, convolvers per PE, buffer sizes and their split, and port widths (the default
space, or `--space FILE.toml`) under the device's resources as the resource model counts them,
with a margin kept for the shell. Every point that fits is compiled and timed by the timing
simulator. Output directory: `points.jsonl` (every evaluated point, written as it goes;
`--resume` continues it), `summary.json`, `dse.html` (the Pareto front plotted) and `best.toml`
(the fastest point, a target for `compile`, `run` and `rtl synth`). See docs/dse.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deepfpga.cli.output import add_json_flag, print_json, progress, table


def add_ray_flags(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("scale-out (optional extra: pip install 'deepfpga[ray]')")
    g.add_argument("--ray", action="store_true",
                   help=f"{what} on a local Ray started on this machine's cores")
    g.add_argument("--ray-address", metavar="HOST:PORT",
                   help="join an existing Ray cluster instead (its nodes need deepfpga)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="Ray workers (default: every CPU of the cluster)")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from deepfpga.dse.build import BITS, DEFAULT_MARGIN
    from deepfpga.dse.explore import STRATEGIES
    from deepfpga.hw.devices import device_names

    p = sub.add_parser("dse", help="design-space exploration: the best accelerator for a"
                       " network and a device", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL",
                   help="zoo name (vgg16-svd), .onnx, float-model .npz or quantized model")
    p.add_argument("--device", required=True, type=str.lower, choices=device_names(),
                   help="the FPGA")
    p.add_argument("--bits", type=int, default=8, choices=BITS,
                   help="data, weight and bias width (default 8)")
    p.add_argument("--clock", type=float, default=150.0, metavar="MHZ",
                   help="accelerator clock (default 150)")
    p.add_argument("--space", metavar="SPACE.toml",
                   help="the space to explore ([axes] and [fixed]; default: docs/dse.md)")
    p.add_argument("--budget", type=int, default=500, metavar="N",
                   help="points to compile and time (default 500)")
    p.add_argument("--search", default="auto", choices=STRATEGIES,
                   help="auto (default): exhaustive when the space is within the budget,"
                        " else genetic")
    p.add_argument("--seed", type=int, default=0, help="genetic search seed (default 0)")
    p.add_argument("--population", type=int, default=24, metavar="N",
                   help="genetic search population (default 24)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, metavar="F",
                   help="share of block RAM, LUT and FF kept for the shell"
                        f" (default {DEFAULT_MARGIN})")
    p.add_argument("--base", metavar="PRESET_OR_TOML",
                   help="board figures (DDR bandwidth, bursts, row width) from this target"
                        " (default: the device's preset)")
    p.add_argument("--ddr-gbps", type=float, metavar="GB/S", help="DDR bandwidth override")
    p.add_argument("-o", "--out", default="dse-out", metavar="DIR",
                   help="output directory (default dse-out/)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out, skipping the points it holds")
    add_ray_flags(p, "evaluate points")
    add_json_flag(p)
    return p


def _paper(model: str) -> dict[str, Any] | None:
    from deepfpga.cli.simulate import PAPER

    return PAPER if Path(model).name == PAPER["model"] else None


def run(args: argparse.Namespace) -> int:
    from deepfpga.dse.flow import Request
    from deepfpga.dse.flow import run as run_dse
    from deepfpga.parallel import make_executor

    req = Request(model=args.model, device=args.device, bits=args.bits, clock_mhz=args.clock,
                  space=args.space, budget=args.budget, search=args.search, seed=args.seed,
                  population=args.population, margin=args.margin, base=args.base,
                  ddr_gbps=args.ddr_gbps, out=Path(args.out), resume=args.resume,
                  paper=_paper(args.model), argv=tuple(sys.argv[1:]))
    if args.workers is not None and not (args.ray or args.ray_address):
        make_executor(workers=args.workers)         # refuses --workers without Ray
    bar = progress(total=args.budget, desc="dse (points)", quiet=args.json)

    def on_record(record: dict[str, Any], from_file: bool) -> None:
        bar.update(1)
        m = record.get("metrics") or {}
        if m:
            bar.set_postfix_str(f"last {m['fps']:.2f} fps", refresh=False)

    try:
        summary, files = run_dse(
            req, lambda: make_executor(args.ray, args.ray_address, args.workers), on_record)
    finally:
        bar.close()
    if args.json:
        print_json(summary)
        return 0
    _print(summary, files)
    return 0


def _print(s: dict[str, Any], files: dict[str, Path]) -> None:
    from deepfpga.report.dse import POINT_HEADERS, point_rows

    c = s["counts"]
    sr = s["search"]
    print(f"{s['model']} on {s['device']}, {s['bits']}-bit, {s['clock_mhz']:g} MHz:"
          f" {sr['strategy']} search over {s['space']['size']:,} points, {c['evaluated']}"
          f" evaluated ({c['from_file']} from the results file) in {s['seconds']:.1f} s on"
          f" {s['executor']['kind']} ({s['executor']['workers']} worker(s))")
    print(f"ok {c['ok']}, did not compile {c['no-compile']}, timing error"
          f" {c['timing-error']}; refused before compiling: invalid {c['invalid']},"
          f" over the device or margin {c['no-fit']}")
    if sr["exhausted"]:
        print("the search ran out of new points that fit before the budget")
    print()
    shown = s["front"][:15]
    print(f"Pareto front ({len(s['front'])} points{', first 15' if len(s['front']) > 15 else ''};"
          " fps up, DSP/BRAM/LUT share down):")
    print(table(POINT_HEADERS, point_rows(shown)))
    presets = [p for p in s["presets"] if p.get("fps") is not None]
    if presets:
        print()
        print("hand-made presets, same evaluation:")
        print(table(POINT_HEADERS, point_rows(presets)))
    for p in s["presets"]:
        if p.get("fps") is None:
            print(f"{p['name']}: not evaluated: {p['reason']}")
    if s.get("paper"):
        print(f"paper: {s['paper']['fps']} fps ({s['paper']['source']})")
    print()
    print("wrote " + ", ".join(str(v) for v in (Path(s["files"]["points"]), *files.values())))
