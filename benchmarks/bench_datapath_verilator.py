"""Verilator speed of the Datapath alone: one CALC repeated, simulated cycles per CPU second.

    .venv/bin/python benchmarks/bench_datapath_verilator.py [--target zedboard] [--calcs 5]
                                                            [--size 28] [--ti 24]

Exports `Datapath(cfg)` to Verilog (zero memory initialisation lines dropped: they only cost
build time, Verilator zeroes memories anyway), builds it with Verilator -O3 and a small C++ loop
that hands over the same CONV CALC (by default conv1_2 of fmnist-vgg on `zedboard`: ti 24,
to 4, 28×28, pad 1, finalize with pool; `tiny` needs e.g. --size 14 --ti 8) `--calcs` times,
and prints the cycles per CALC (against `timing.calc_cycles` + 1 handshake cycle) and the
simulated cycles per CPU second of the run.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import tempfile
from pathlib import Path

from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Calc, encode_instruction
from deepfpga.rtl.accel.timing import calc_cycles

MAIN = r"""
#include "Vdp.h"
#include "verilated.h"
#include <cstdio>
#include <cstdlib>
static const unsigned WORD[8] = {%s};
int main(int argc, char** argv) {
  int n = atoi(argv[1]);
  Vdp* d = new Vdp;
  d->rst = 1; d->clk = 0; d->eval(); d->clk = 1; d->eval(); d->rst = 0;
  for (int k = 0; k < 8; k++) d->calc_word[k] = WORD[k];
  long cycles = 0, last = 0;
  for (int done = 0; done < n;) {
    d->calc_valid = 1;
    d->clk = 0; d->eval(); d->clk = 1; d->eval(); cycles++;
    if (d->calc_done) {
      done++; printf("calc %%ld %%d\n", cycles - last, d->calc_error); last = cycles;
    }
  }
  printf("cycles %%ld\n", cycles);
  return 0;
}
"""


def main() -> None:
    from amaranth.back import verilog

    from deepfpga.rtl.accel.datapath import Datapath

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="zedboard")
    ap.add_argument("--calcs", type=int, default=5)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--ti", type=int, default=24)
    args = ap.parse_args()
    cfg = load_config(args.target)
    n = args.size
    ins = Calc(ti=args.ti, to=4, in_rows=n, in_cols=n, out_rows=n, out_cols=n, pad_top=1,
               pad_left=1, finalize=1, has_bias=1, relu=1, data_shift=6,
               out_bits=cfg.data_bits, pool=1, out_addr=4 * n * n)
    w = int.from_bytes(encode_instruction(ins), "little")
    words = ",".join(hex((w >> (32 * k)) & 0xFFFFFFFF) for k in range(8))
    text = verilog.convert(Datapath(cfg), name="deepfpga_datapath", emit_src=False)
    text = "\n".join(ln for ln in text.split("\n")
                     if not re.match(r"^\s+[\w$\\.]+\[\d+\] = \d+'[hd]0+;$", ln))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "dp.v").write_text(text)
        (d / "main.cpp").write_text(MAIN % words)
        subprocess.run(["verilator", "--cc", "--exe", "--build", "-O3", "-Wno-fatal",
                        "-Wno-WIDTH", "-Wno-CASEINCOMPLETE", "--top-module", "deepfpga_datapath",
                        "--prefix", "Vdp", "-CFLAGS", "-O2", "dp.v", "main.cpp", "-o", "vdp"],
                       cwd=d, check=True, capture_output=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        out = subprocess.run([str(d / "obj_dir" / "vdp"), str(args.calcs)], check=True,
                             capture_output=True, text=True).stdout
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
    done = [ln.split() for ln in out.splitlines() if ln.startswith("calc ")]
    if any(int(e) for _, _, e in done):
        raise SystemExit(f"the CALC ended with error {done[0][2]}: choose --size/--ti that fit")
    per = [int(c) for _, c, _ in done]
    cycles = int(out.splitlines()[-1].split()[1])
    print(f"{args.target}: cycles per CALC {per[1:]} (formula {calc_cycles(cfg, ins) + 1})")
    print(f"{cycles:,} cycles in {cpu:.3f} CPU s: {cycles / cpu:,.0f} cycles per CPU second")


if __name__ == "__main__":
    main()
