"""`deepfpga compile QMODEL --target T -o OUTDIR`: program.bin, ddr.bin, manifest.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfpga.cli.output import add_json_flag, print_json, table
from deepfpga.errors import InputError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled
    from deepfpga.compiler.compile import SpaceToDepth
    from deepfpga.hw.accelerator import AcceleratorConfig


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compile", help="compile a quantized model (or an architecture) for an accelerator",
        description="Map, tile, allocate and generate the instruction stream. QMODEL is a"
                    " quantized-model .npz, or an architecture (zoo name, .onnx, float .npz)"
                    " compiled with zero weights at the target's widths (for timing).",
    )
    p.add_argument("model", metavar="QMODEL", help="quantized model file or zoo name")
    p.add_argument("--target", required=True, metavar="PRESET_OR_TOML",
                   help="accelerator preset (zc706-paper, zc706, zc706-8, zedboard, tiny)"
                   " or a TOML file")
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR",
                   help="directory for program.bin, ddr.bin and manifest.json")
    p.add_argument("--explain", action="store_true",
                   help="show the tiling candidates of every stage and why the chosen one won")
    add_space_to_depth_flag(p)
    add_json_flag(p)
    return p


def add_space_to_depth_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space-to-depth", choices=("auto", "off", "on"), default="auto",
                   dest="space_to_depth",
                   help="run a strided or large-kernel first layer as a stride-1 layer on an"
                        " input the host rearranges (docs/compiler.md): when the cost model"
                        " says it is faster (auto, the default), never (off), or always (on)")


def compile_spec(spec: str, cfg: AcceleratorConfig, bits: str | None = None,
                 space_to_depth: SpaceToDepth = "auto") -> tuple[Compiled, str]:
    """Compile QMODEL `spec` (file or architecture) for `cfg`: (Compiled, what it was).
    `bits` (a bit preset's name) sets an architecture's weight widths; a quantized model has
    its own, so it is refused there."""
    from deepfpga.compiler import compile_architecture, compile_model
    from deepfpga.quant.bits import PRESETS
    from deepfpga.quant.qfile import is_qmodel_file, load_qmodel

    if bits is not None and bits not in PRESETS:
        raise InputError(f"--bits {bits!r}: expected one of {', '.join(PRESETS)}")
    path = Path(spec)
    if is_qmodel_file(path) or (pre := _prequantized(path)) is not None:
        if bits is not None:
            raise InputError(f"--bits applies to an architecture; {spec} is a quantized model"
                             " with its own widths")
        if is_qmodel_file(path):
            return (compile_model(load_qmodel(path), cfg, space_to_depth=space_to_depth),
                    "quantized model")
        return (compile_model(pre.qmodel, cfg, space_to_depth=space_to_depth),
                f"quantized model ({pre.kind})")
    from deepfpga.models import load_model

    preset = PRESETS[bits] if bits is not None else None
    what = "architecture (zero weights" + (f", {bits} weights)" if bits else ")")
    return (compile_architecture(load_model(spec), cfg, bits=preset,
                                 space_to_depth=space_to_depth), what)


def _prequantized(path: Path) -> Any:
    from deepfpga.interchange.onnx_quant import load_prequantized

    return load_prequantized(path)


def _explain(compiled: Compiled) -> list[str]:
    out = []
    for ch in compiled.choices:
        out.append("")
        out.append(f"{ch.stage}: {ch.reason}")
        rows = []
        for k, (t, c) in enumerate(ch.top):
            rows.append(["*" if k == 0 else "", t.tr, t.tc, t.ti, t.to, t.order, t.group,
                         c["seconds"] * 1e3, c["compute_cycles"], c["dma_cycles"],
                         c["transactions"], c["calcs"]])
        out.append(table(["", "tr", "tc", "ti", "to", "order", "group", "ms", "compute cyc",
                          "DMA cyc", "DMA tx", "CALCs"], rows))
    return out


def summary_rows(compiled: Compiled) -> list[list[Any]]:
    """One row per stage for human output."""
    rows = []
    for s in compiled.manifest.layers:
        t = s.tiling
        a, b = s.instructions
        rows.append([s.index, s.name, "+".join(s.fused), s.kind,
                     f"{t.tr}x{t.tc}x{t.ti}x{t.to}", t.order, t.group, b - a, s.estimate_s * 1e3])
    return rows


def run(args: argparse.Namespace) -> int:
    from deepfpga.fileio import check_output
    from deepfpga.hw.config import load_config

    check_output(args.outdir, "--outdir", directory=True)
    cfg = load_config(args.target)
    compiled, what = compile_spec(args.model, cfg, space_to_depth=args.space_to_depth)
    files = compiled.write(args.outdir)
    m = compiled.manifest
    estimate_s = sum(d.estimate_s for d in m.layers)
    if args.json:
        out: dict[str, Any] = {
            "model": m.model, "compiled": what, "target": cfg.name,
            "files": {k: str(v) for k, v in files.items()}, "program": m.program.to_dict(),
            "ddr_size": m.ddr_size, "partition": m.partition.to_dict(),
            "layers": [{"index": d.index, "name": d.name, "kind": d.kind,
                        "fused": list(d.fused), "tiling": d.tiling.to_dict(),
                        "instructions": list(d.instructions), "estimate_s": d.estimate_s}
                       for d in m.layers],
            "estimate_s": estimate_s,
            "host_transforms": [t.to_dict() for t in m.host_transforms],
        }
        if args.explain:
            out["explain"] = [{"stage": ch.stage, "reason": ch.reason,
                               "considered": ch.considered, "feasible": ch.feasible,
                               "candidates": [{"tiling": t.to_dict(), "cost": c}
                                              for t, c in ch.top]} for ch in compiled.choices]
        print_json(out)
        return 0
    p = m.program
    print(f"{m.model} ({what}) for {cfg.name}: {p.instructions} instructions"
          f" ({p.load} LOAD, {p.calc} CALC, {p.save} SAVE, {p.end} END),"
          f" DDR image {m.ddr_size:,} bytes")
    print()
    print(table(["#", "stage", "fused", "kind", "tiling tr×tc×ti×to", "order", "group",
                 "instrs", "model ms"], summary_rows(compiled)))
    part = m.partition
    print()
    print(f"host layers: {', '.join(part.host) or 'none'}; folded: "
          f"{', '.join(part.folded) or 'none'}")
    stage_of = {d.input: d for d in m.layers}
    for tr in m.host_transforms:
        d = stage_of[tr.tensor]
        print(f"{d.name} runs {d.kernel[0]}x{d.kernel[1]} at stride 1 on {tr.reads!r} as the host"
              f" writes it: {tr.shape[0]} channels of {tr.shape[1]}x{tr.shape[2]}"
              f" ({tr.offsets[0]}x{tr.offsets[1]} samples at stride {tr.stride}, {tr.kind};"
              " --space-to-depth off: as it is)")
    print(f"modelled accelerator time {estimate_s * 1e3:.3f} ms"
          " (closed-form cost model; `deepfpga simulate` for the timing simulator)")
    if args.explain:
        print("\n".join(_explain(compiled)))
    print()
    print("wrote " + ", ".join(str(v) for v in files.values()))
    return 0
