"""`deepfpga rtl build` and `deepfpga rtl run`: the whole accelerator under Verilator."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepfpga.cli.output import print_json, table
from deepfpga.errors import InputError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Manifest


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr, flush=True)


def run_build(args: argparse.Namespace) -> int:
    from deepfpga.fileio import atomic_write_bytes, atomic_write_text
    from deepfpga.hw.config import load_config
    from deepfpga.rtl.accel.driver import build_accelerator
    from deepfpga.rtl.accel.verilator import HarnessError

    cfg = load_config(args.target)
    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not out.is_dir():
        raise InputError(f"-o {out}: exists and is not a directory")
    _say(args, f"building the {cfg.name} accelerator (Verilog + Verilator model) ...")
    t0 = time.perf_counter()
    try:
        from deepfpga.rtl.accel.top import verilog_text

        verilog = verilog_text(cfg)
        t_verilog = time.perf_counter() - t0
        b = build_accelerator(cfg, verilog)
    except HarnessError as e:
        print(f"deepfpga rtl build: error: {e}", file=sys.stderr)
        return 1
    files = {"library": str(b.library)}
    if out is not None:
        files["verilog"] = str(atomic_write_text(out / "deepfpga_accel.v", verilog))
        files["library_copy"] = str(atomic_write_bytes(out / b.library.name,
                                                       b.library.read_bytes()))
    info = {"target": cfg.name, "key": b.key, "cached": b.cached,
            "verilog_seconds": t_verilog, "build_seconds": b.seconds,
            "verilog_lines": verilog.count("\n"), "axi_data_bits": cfg.axi_data_bits,
            "verilator": _verilator_version(), "files": files}
    if args.json:
        print_json(info)
        return 0
    how = "cached build reused" if b.cached else f"built in {b.seconds:.1f} s"
    print(f"{cfg.name}: Verilog {info['verilog_lines']:,} lines ({t_verilog:.1f} s), Verilator"
          f" model {how}")
    for k, v in files.items():
        print(f"{k}: {v}")
    return 0


def _verilator_version() -> str:
    from deepfpga.rtl.accel.verilator import verilator_version

    return verilator_version()


def _input(args: argparse.Namespace, manifest: Manifest) -> np.ndarray:
    t = manifest.tensors[manifest.input]
    if args.input is None:
        rng = np.random.default_rng(0)
        return rng.integers(t.format.qmin, t.format.qmax + 1, size=t.shape, dtype=np.int64)
    p = Path(args.input)
    if not p.is_file():
        raise InputError(f"no such input file: {p}")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"input {p}: not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        raise InputError(f"input {p}: an .npz archive; give one .npy array")
    return x


def run_program(args: argparse.Namespace) -> int:
    from deepfpga.compiler.artifact import load_compiled, read_manifest
    from deepfpga.fileio import atomic_save_npy, atomic_save_npz
    from deepfpga.hw.config import load_config
    from deepfpga.rtl.accel.driver import RtlRunner, build_accelerator
    from deepfpga.rtl.accel.verilator import HarnessError

    manifest = read_manifest(args.build_dir)
    target = args.target or manifest.config.name
    if not target:
        raise InputError(f"{args.build_dir}: the manifest names no target; pass --target")
    cfg = load_config(target)
    if cfg.hash().hex() != manifest.config.hash:
        raise InputError(f"{args.build_dir} was compiled for another configuration than"
                         f" {cfg.name!r}; pass the --target it was compiled for")
    compiled = load_compiled(args.build_dir, cfg, manifest)
    outs = manifest.outputs
    out_path = Path(args.output) if args.output else \
        Path(args.build_dir) / ("rtl_output.npy" if len(outs) == 1 else "rtl_output.npz")
    want = ".npy" if len(outs) == 1 else ".npz"
    if out_path.suffix != want:
        raise InputError(f"--output must end in {want} (the model has {len(outs)} output(s))")
    x = _input(args, manifest)
    _say(args, f"building/loading the {cfg.name} Verilator model ...")
    try:
        build = build_accelerator(cfg)
        t0 = time.perf_counter()
        with RtlRunner(compiled, build) as runner:
            res = runner.run(x)
        wall = time.perf_counter() - t0
    except HarnessError as e:
        print(f"deepfpga rtl run: error: {e}", file=sys.stderr)
        return 1
    if not res.ok:
        print(f"deepfpga rtl run: error: the accelerator stopped: {res.error_message}",
              file=sys.stderr)
        return 1
    if len(outs) == 1:
        written = atomic_save_npy(out_path, next(iter(res.outputs.values())))
    else:
        written = atomic_save_npz(out_path, dict(res.outputs))
    hz = cfg.clock_mhz * 1e6
    total = sum(res.cycles)
    info = {
        "target": cfg.name, "images": len(res.cycles), "cycles_per_image": list(res.cycles),
        "ms_per_image_at_clock": [1e3 * c / hz for c in res.cycles],
        "layers": [{"name": k, "cycles": v, "saturated": res.saturations.get(k, 0)}
                   for k, v in res.layer_cycles.items()],
        "segments": [{"segment": s.segment, "first": s.first, "end": s.end, "cycles": s.cycles,
                      "sat_count": s.sat_count} for s in res.segments],
        "wall_seconds": wall, "simulated_cycles_per_second": total / wall if wall else None,
        "build_seconds": build.seconds, "build_cached": build.cached,
        "output_file": str(written),
    }
    if args.json:
        print_json(info)
        return 0
    print(table(["layer", "RTL cycles", "ms at clock", "saturated"],
                [[r["name"], r["cycles"], 1e3 * r["cycles"] / hz, r["saturated"]]
                 for r in info["layers"]]))
    print(f"{info['images']} image(s): {res.cycles[0]:,} cycles per image"
          f" ({1e3 * res.cycles[0] / hz:.3f} ms at {cfg.clock_mhz:g} MHz); simulated in"
          f" {wall:.2f} s ({info['simulated_cycles_per_second'] or 0:,.0f} cycles/s)")
    print(f"outputs written to {written}")
    return 0


__all__ = ["run_build", "run_program"]
