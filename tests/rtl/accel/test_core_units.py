"""Unit pieces of the accelerator core in amaranth.sim: the burst splitter (4 KiB, 256 beats,
max_burst_bytes, merged runs), the AXI4-Lite registers, the token unit, the Verilog export."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from amaranth.sim import Simulator
from tests.rtl.accel import core_bench as cb

from deepfpga.hw.config import load_config
from deepfpga.hw.engines import burst_limit_bytes
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.axi import AxiLiteRegs
from deepfpga.rtl.accel.engine import DmaFront
from deepfpga.rtl.accel.tokens import TokenUnit


def _bursts(cfg, addr, n2, s2, n1, s1, seg):
    """Run one transfer through a DmaFront; return its bursts and per-beat byte ranges."""
    dut = DmaFront(cfg)
    bursts, beats = [], []

    async def bench(ctx):
        ctx.set(dut.addr, addr)
        for k, v in (("n2", n2), ("s2", s2), ("n1", n1), ("s1", s1), ("seg", seg),
                     ("row", (n1 - 1) * s1 + seg)):
            ctx.set(getattr(dut, k), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.a_ready, 1)
        for _ in range(3000):
            if ctx.get(dut.a_valid):
                bursts.append((ctx.get(dut.a_addr), ctx.get(dut.a_len) + 1))
            beat = ctx.get(dut.cur)
            ctx.set(dut.beat, beat)
            if beat:
                beats.append((ctx.get(dut.lo), ctx.get(dut.nb), ctx.get(dut.last)))
            await ctx.tick()
            if ctx.get(dut.idle) and not ctx.get(dut.a_valid):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return bursts, beats


@pytest.mark.parametrize("dw,mbb", [(32, 64), (64, 4096), (256, 1000)])
def test_burst_splitter_rules_and_coverage(dw, mbb):
    cfg = load_config("tiny").replace(axi_data_bits=dw, max_burst_bytes=mbb)
    bb = dw // 8
    rng = np.random.default_rng(dw)
    for _ in range(4):
        seg = int(rng.integers(1, 700))
        n1, n2 = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        s1 = int(rng.choice([seg, seg + rng.integers(1, 50)]))
        s2 = int(rng.choice([n1 * s1, (n1 - 1) * s1 + seg + rng.integers(0, 300)]))
        if rng.random() < 0.5:
            s1, s2 = seg, n1 * seg
        addr = int(rng.integers(4096 - 600, 4096 + 100))
        bursts, beats = _bursts(cfg, addr, n2, s2, n1, s1, seg)
        # every byte of the transfer exactly once, in order
        want = [addr + j * s2 + i * s1 + b for j in range(n2) for i in range(n1)
                for b in range(seg)]
        got, it = [], iter(beats)
        for a, n in bursts:
            cb.check_burst(cfg, "read", a, n, (bb).bit_length() - 1, 1)
            for k in range(n):
                lo, nb, last = next(it)
                assert last == (k == n - 1)
                got += [a + k * bb + lo + x for x in range(nb)]
        assert got == want
        if s1 == seg and s2 == n1 * s1:           # one contiguous run: fewest bursts
            assert len(bursts) == _greedy(cfg, addr, n2 * n1 * seg)


def _greedy(cfg, a, nbytes):
    bb, lim, n = cfg.axi_data_bits // 8, burst_limit_bytes(cfg), 0
    end = a + nbytes
    while a < end:
        a0 = a - a % bb
        a = min(end, a0 + lim, (a0 // 4096 + 1) * 4096)
        n += 1
    return n


def test_burst_limits_long_run():
    cfg = load_config("tiny").replace(axi_data_bits=64, max_burst_bytes=4096)
    bursts, _ = _bursts(cfg, 4096 - 24, 1, 0, 1, 0, 6000)
    assert bursts[0] == (4096 - 24, 3)                       # up to the 4 KiB boundary
    assert bursts[1] == (4096, 256)                          # 256 beats of 8 bytes
    assert sum(n for _, n in bursts) * 8 == 6000 and len(bursts) == 4


def test_axil_registers():
    dut = AxiLiteRegs(spec.ID_VALUE, 0x12345678)
    got = {}

    async def bench(ctx):
        ctx.set(dut.status, 5)
        ctx.set(dut.cycles, (7 << 32) | 9)
        await cb.axil_write(ctx, dut, spec.Reg.PROG_ADDR, 0xAABBCCDD)
        await cb.axil_write(ctx, dut, spec.Reg.PROG_ADDR, 0x00001100, strb=0b0010)
        await cb.axil_write(ctx, dut, spec.Reg.PROG_COUNT, 77)
        for r in (spec.Reg.PROG_ADDR, spec.Reg.PROG_COUNT, spec.Reg.ID, spec.Reg.CONFIG_HASH,
                  spec.Reg.STATUS, spec.Reg.CYCLES_LO, spec.Reg.CYCLES_HI):
            got[r] = await cb.axil_read(ctx, dut, r)
        got["unmapped"] = await cb.axil_read(ctx, dut, 0xFFC)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got[spec.Reg.PROG_ADDR] == 0xAABB11DD            # byte strobes honoured
    assert got[spec.Reg.PROG_COUNT] == 77 and got[spec.Reg.ID] == spec.ID_VALUE
    assert got[spec.Reg.CONFIG_HASH] == 0x12345678 and got[spec.Reg.STATUS] == 5
    assert (got[spec.Reg.CYCLES_LO], got[spec.Reg.CYCLES_HI]) == (9, 7)
    assert got["unmapped"] == 0


def test_token_unit_counts_and_grants():
    dut = TokenUnit()
    seen = []

    async def bench(ctx):
        # CALC waits on LOAD→CALC: not granted until LOAD pushed twice, then twice
        ctx.set(dut.e1_pop_prev, 1)
        ctx.set(dut.e1_want, 1)
        seen.append(ctx.get(dut.e1_ok))
        ctx.set(dut.e0_push_next, 1)
        ctx.set(dut.e0_push, 1)
        await ctx.tick().repeat(2)
        ctx.set(dut.e0_push, 0)
        seen.append(ctx.get(dut.count0))
        for _ in range(3):
            seen.append(ctx.get(dut.e1_ok))
            ctx.set(dut.e1_take, ctx.get(dut.e1_ok))
            await ctx.tick()
        seen.append(ctx.get(dut.count0))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 2, 1, 1, 0, 0]


def _lint(cfg, tmp_path):
    from deepfpga.rtl.accel.top import write_verilog

    path = write_verilog(cfg, tmp_path)
    return subprocess.run(
        ["verilator", "--lint-only", "-Wall", "-Wno-UNUSEDSIGNAL", "-Wno-WIDTH",
         "-Wno-CASEINCOMPLETE", "-Wno-DECLFILENAME", "--top-module", spec.TOP_NAME,
         str(path)], capture_output=True, text=True, timeout=600), path.read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
def test_verilog_export_lints_clean(tmp_path):
    proc, text = _lint(load_config("tiny"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, _, _ in spec.AXI_MASTER_PORTS + spec.AXIL_SLAVE_PORTS + spec.TRACE_PORTS:
        assert name in text.split(");")[0], name
