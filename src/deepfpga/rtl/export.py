"""Verilog export of the PE (amaranth.back.verilog, which runs the bundled Yosys)."""

from __future__ import annotations

from pathlib import Path

from deepfpga.fileio import atomic_write_text
from deepfpga.rtl.params import PEParams

TOP_NAME = "deepfpga_pe"


def verilog_text(params: PEParams, name: str = TOP_NAME) -> str:
    """Verilog of one PE; ports are the PE's signature members joined with '__' plus clk, rst."""
    from amaranth.back import verilog

    from deepfpga.rtl.pe import PE

    return verilog.convert(PE(params), name=name, emit_src=False)


def write_verilog(params: PEParams, out_dir: str | Path, name: str = TOP_NAME) -> Path:
    """Write `<out_dir>/<tag>.v` atomically and return its path."""
    path = Path(out_dir) / f"{params.tag()}.v"
    header = (f"// deepfpga PE: {params.to_dict()}\n"
              f"// top module {name}; protocol in docs/rtl.md\n")
    return atomic_write_text(path, header + verilog_text(params, name))
