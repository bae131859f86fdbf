"""Cycles of one contiguous LOAD and one SAVE through the accelerator top level (amaranth.sim,
Datapath stand-in, always-ready DDR with 3 cycles latency). Run from the repository root:

    .venv/bin/python benchmarks/bench_rtl_core_dma.py
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.rtl.accel import core_bench as cb  # noqa: E402
from tests.rtl.accel.datapath_double import DatapathDouble  # noqa: E402
from tests.rtl.accel.test_core_top import ARENA, CONFIGS, DDR_BYTES, PROG  # noqa: E402

from deepfpga.hw.isa import End, Load, Save  # noqa: E402
from deepfpga.rtl.accel.top import Accelerator  # noqa: E402


def main() -> None:
    for name, cfg in CONFIGS.items():
        for ins in (Load(buffer=0, length=500, ddr_addr=64),
                    Save(length=160, ddr_addr=ARENA[0] + 64)):
            ddr = bytearray(DDR_BYTES)
            cb.place_program(ddr, PROG, [ins, End()])
            out = [1] * cfg.output_buffer_entries
            dut = Accelerator(cfg, partial(DatapathDouble, output_init=out))
            t = time.time()
            res = cb.run(dut, cfg, ddr, PROG, 2, p_ready=1.0, latency=3)
            wall = time.time() - t
            tr = {(e, edge): c for e, edge, _, c in res.trace}
            eng = type(ins).__name__.lower()
            span = tr[eng, "end"] - tr[eng, "start"]
            bursts = [b for b in res.bursts if b[1] < PROG]
            print(f"{name:11s} {eng}: {ins.length} elements in {span} engine cycles"
                  f" ({span / ins.length:.2f}/element), {len(bursts)} bursts, START->irq"
                  f" {res.cycles} cycles; amaranth.sim {res.cycles / wall:.0f} cycles/s")

        # the same LOAD into a Datapath with a wide LOAD port (one beat's elements per cycle)
        lanes = cfg.axi_data_bits // 8 // cfg.data_bytes
        ddr = bytearray(DDR_BYTES)
        ins = Load(buffer=0, length=500, ddr_addr=64)
        cb.place_program(ddr, PROG, [ins, End()])
        dut = Accelerator(cfg, partial(DatapathDouble, output_init=[0], lanes=lanes))
        res = cb.run(dut, cfg, ddr, PROG, 2, p_ready=1.0, latency=3)
        tr = {(e, edge): c for e, edge, _, c in res.trace}
        span = tr["load", "end"] - tr["load", "start"]
        print(f"{name:11s} load into a {lanes}-lane LOAD port: 500 elements in {span} engine"
              f" cycles ({500 / span:.2f} elements/cycle)")
        # eight short LOADs back to back, DDR latency 10 cycles (instruction fetch shares the
        # in-order R channel: 8 beats per word on a 32-bit bus); the
        # next one's bursts overlap the previous one's data
        prog = [Load(buffer=1, length=30, ddr_addr=64 * k, buf_addr=30 * k) for k in range(8)]
        ddr = bytearray(DDR_BYTES)
        cb.place_program(ddr, PROG, [*prog, End()])
        dut = Accelerator(cfg, partial(DatapathDouble, output_init=[0]))
        res = cb.run(dut, cfg, ddr, PROG, 9, p_ready=1.0, latency=10)
        tr = {(e, edge, i): c for e, edge, i, c in res.trace}
        span = tr["load", "end", 7] - tr["load", "start", 0]
        print(f"{name:11s} 8 LOADs of 30 elements, latency 10: {span} cycles from the first"
              f" start to the last end ({span / 8:.1f} per LOAD)")


if __name__ == "__main__":
    main()
