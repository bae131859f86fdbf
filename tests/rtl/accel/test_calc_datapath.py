"""Datapath CALC against the functional simulator, bit for bit (amaranth.sim, small configs)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from deepfpga.hw.config import load_config
from deepfpga.hw.engines import packs_pairs, pool_width, staging_depth
from deepfpga.hw.isa import Calc, CalcKind
from deepfpga.rtl.accel import calc_check as cc
from deepfpga.rtl.accel.spec import ErrorCode


def small(bits: int, acc: int, **kw):
    base = load_config("tiny")
    eb = (bits + 7) // 8
    d = dict(name=f"calc{bits}", num_pe=2, convolvers_per_pe=2, data_bits=bits,
             weight_bits=bits, bias_bits=bits, acc_bits=acc, max_row_width=8,
             input_buffer_bytes=200 * eb, weight_buffer_bytes=120 * eb,
             bias_buffer_bytes=12 * eb, output_buffer_bytes=160 * ((acc + 7) // 8),
             fc_buffer_bytes=100 * eb)
    d.update(kw)
    return base.replace(**d)


CFG8 = small(8, 24)
CFG16 = small(16, 48)
CFG8B8 = small(8, 20, convolvers_per_pe=16, output_buffer_bytes=240 * 3)  # 8 banks, 4×8 grid
# on a DSP48E1 the grid packs two channels' products per multiplier (engines.packs_pairs):
# 4 channels × 8 lanes in pairs, and 3 channels × 2 lanes (a pair and the last one alone)
CFG8B8X = CFG8B8.replace(name="calc8x", device="XC7Z020")
CFG8X3 = small(8, 24, name="calc8x3", num_pe=1, convolvers_per_pe=6, device="XC7Z020")


def check(cfg, cases):
    got = cc.simulate(cfg, cases)
    for (state, ins), r in zip(cases, got, strict=True):
        want = cc.oracle(cfg, state, ins)
        assert r.error == want.error, ins
        if want.error:
            continue
        bad = np.flatnonzero(r.out != want.out)
        assert not len(bad), (ins, bad[:8], r.out[bad[:8]], want.out[bad[:8]])
        assert r.sat == want.sat, ins
    return got


@pytest.mark.slow
@pytest.mark.parametrize("cfg,seed", [(CFG8, 1), (CFG16, 2), (CFG8B8, 3), (CFG8B8X, 4),
                                      (CFG8X3, 5)])
def test_random_calcs_match_functional_simulator(cfg, seed):
    rng = np.random.default_rng(seed)
    cases = [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg)) for _ in range(60)]
    # CONVs too deep for the output-channel-parallel MAC's staging run on the one-product loop
    deep = staging_depth(cfg) // 9 + 1
    cases += [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg, kind=0, ti=deep, to=1,
                                                         in_rows=r, in_cols=4))
              for r in (2, 3)]
    got = check(cfg, cases)
    assert got[-1].error == got[-2].error == 0
    if cfg.device == "XC7Z020":
        assert packs_pairs(cfg)
    calcs = [ins for _, ins in cases]
    conv = [c for c in calcs if c.kind == CalcKind.CONV]
    # the draw covered every field
    assert any(c.kind == CalcKind.FC for c in calcs)
    assert {1, 2}.issubset({c.stride for c in conv}) and max(c.stride for c in conv) >= 4
    assert any(c.pad_top for c in conv) and any(c.pad_left for c in conv)
    assert any(c.koff_y for c in conv) and any(c.koff_x for c in conv)
    fin = [c for c in calcs if c.finalize]
    assert any(c.accumulate for c in calcs) and any(not c.accumulate for c in calcs)
    assert any(c.has_bias and c.bias_shift for c in fin) and any(c.relu for c in fin)
    assert any(c.data_shift > 0 for c in fin) and any(c.data_shift < 0 for c in fin)
    assert any(c.out_bits < cfg.data_bits for c in fin)
    assert any(c.pool for c in fin) and any(c.out_pitch for c in fin)
    sats = [cc.oracle(cfg, s, i).sat for s, i in cases]
    assert sum(sats) > 0


@pytest.mark.slow
@pytest.mark.parametrize("cfg,seed", [(CFG8, 11), (CFG8B8, 12)])
def test_random_conv1_calcs_match_functional_simulator(cfg, seed):
    """1×1 CALCs (CONV1: ti terms, weights dense (to, ti)) on the grid, strides 1..7 with
    window offsets, on the one-product loop when ti exceeds the staging depth, and at the end
    of the weight buffer (to·ti weights fit, one more does not)."""
    rng = np.random.default_rng(seed)
    k1 = int(CalcKind.CONV1)
    cases = [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg, kind=k1,
                                                         ti=int(rng.integers(1, 5))))
             for _ in range(24)]
    deep = staging_depth(cfg) + 1
    cases += [(cc.random_state(rng, cfg), cc.random_calc(rng, cfg, kind=k1, ti=deep, to=1,
                                                         in_rows=2, in_cols=3))]
    we = cfg.weight_buffer_entries
    edge = dict(kind=k1, ti=3, to=2, in_rows=2, in_cols=4, out_rows=2, out_cols=2, stride=2)
    cases += [(cc.random_state(rng, cfg), Calc(wb_addr=we - 6, finalize=1, out_bits=8, out_addr=100,
                                               **edge)),
              (cc.random_state(rng, cfg), Calc(wb_addr=we - 5, **edge))]
    got = check(cfg, cases)
    assert [r.error for r in got[-3:]] == [0, 0, int(ErrorCode.CALC_RANGE)]
    calcs = [ins for _, ins in cases[:24]]
    assert {1, 2}.issubset({c.stride for c in calcs})
    assert any(c.pad_top or c.koff_y for c in calcs) and any(c.pool for c in calcs)
    assert sum(r.error == 0 for r in got) >= 20


def test_bounds_at_the_edges():
    """Tiles at the very ends of the buffers, out_bits 2, extreme shifts, FC at the FC limit."""
    cfg = CFG8
    rng = np.random.default_rng(5)
    ie, we, oe = cfg.input_buffer_entries, cfg.weight_buffer_entries, cfg.output_buffer_entries
    fc_e = min(cfg.fc_buffer_entries, ie)
    calcs = [
        Calc(ti=2, to=2, in_rows=3, in_cols=8, out_rows=2, out_cols=4, stride=2,
             ib_addr=ie - 48, wb_addr=we - 36, ob_addr=0, finalize=1, out_bits=2,
             data_shift=-128, out_addr=oe - 16),
        Calc(ti=1, to=1, in_rows=4, in_cols=4, out_rows=3, out_cols=3, stride=7, pad_top=7,
             pad_left=7, koff_y=15, koff_x=15, finalize=1, data_shift=127, out_addr=100),
        Calc(kind=CalcKind.FC, ti=20, to=3, ib_addr=fc_e - 60, wb_addr=we - 20, ob_addr=10,
             accumulate=1, finalize=1, has_bias=1, bb_addr=cfg.bias_buffer_entries - 3,
             bias_shift=15, relu=1, data_shift=3, out_bits=cfg.data_bits, out_addr=oe - 3),
        Calc(ti=1, to=2, in_rows=2, in_cols=2, out_rows=5, out_cols=pool_width(cfg) // 2,
             pool=1, finalize=1, data_shift=1, out_addr=120),
    ]
    check(cfg, [(cc.random_state(rng, cfg), c) for c in calcs])


def test_errors_and_nops():
    cfg = CFG8
    rng = np.random.default_rng(7)
    state = cc.random_state(rng, cfg)
    ie, we, oe = cfg.input_buffer_entries, cfg.weight_buffer_entries, cfg.output_buffer_entries
    big = state.out.copy()
    big[:4] = (1 << (cfg.acc_bits - 1)) - 1
    ovf_state = cc.BufferState(state.inp, state.wgt, state.bias, big)
    ok = dict(ti=1, to=1, in_rows=3, in_cols=3)
    cases = [
        (Calc(to=0, kind=3), ErrorCode.NONE),                  # no-ops before any check
        (Calc(ti=0, stride=0), ErrorCode.NONE),
        (Calc(kind=3, **ok), ErrorCode.BAD_FIELD),
        (Calc(stride=0, **ok), ErrorCode.BAD_FIELD),
        (Calc(kind=CalcKind.FC, pool=1, finalize=1), ErrorCode.BAD_FIELD),
        (Calc(kind=CalcKind.FC, in_cols=2), ErrorCode.BAD_FIELD),
        (Calc(kind=CalcKind.FC, ti=5, wb_addr=we - 4), ErrorCode.CALC_RANGE),
        (Calc(kind=CalcKind.FC, ti=5, to=2, ib_addr=min(cfg.fc_buffer_entries, ie) - 9),
         ErrorCode.CALC_RANGE),
        (Calc(ti=1, to=1, in_rows=1, in_cols=cfg.max_row_width + 1), ErrorCode.BAD_FIELD),
        (Calc(ti=2, to=1, in_rows=3, in_cols=3, ib_addr=ie - 17), ErrorCode.CALC_RANGE),
        (Calc(ti=2, to=2, in_rows=3, in_cols=3, wb_addr=we - 35), ErrorCode.CALC_RANGE),
        (Calc(out_rows=4, out_cols=4, ob_addr=oe - 15, **ok), ErrorCode.CALC_RANGE),
        (Calc(finalize=1, out_bits=1, out_addr=100, **ok), ErrorCode.BAD_FIELD),
        (Calc(finalize=1, out_bits=cfg.data_bits + 1, out_addr=100, **ok),
         ErrorCode.BAD_FIELD),
        (Calc(ti=1, to=2, in_rows=3, in_cols=3, finalize=1, out_bits=8, has_bias=1,
              bb_addr=cfg.bias_buffer_entries - 1, out_addr=100), ErrorCode.CALC_RANGE),
        (Calc(ti=1, to=2, in_rows=3, in_cols=3, finalize=1, out_bits=8, out_pitch=30,
              out_addr=oe - 30), ErrorCode.CALC_RANGE),
    ]
    run = [(state, c) for c, _ in cases] + [
        (ovf_state, Calc(accumulate=1, ob_addr=0, **ok))]
    want = [int(e) for _, e in cases] + [int(ErrorCode.ACC_OVERFLOW)]
    got = check(cfg, run)
    assert [r.error for r in got] == want
    assert all(r.cycles <= 3 for r in got[:2])         # no-ops complete at once
    assert all(np.array_equal(r.out, state.out) for r in got[2:-1])   # refused: nothing written


def test_pool_wider_than_its_line_buffer_is_refused():
    """A hardware limit the compiler respects (the functional simulator has no such limit)."""
    cfg = CFG8
    state = cc.random_state(np.random.default_rng(3), cfg)
    ins = Calc(ti=1, to=1, in_rows=2, in_cols=2, out_rows=2, out_cols=pool_width(cfg) + 2,
               pool=1, finalize=1, out_bits=8, out_addr=100)
    (r,) = cc.simulate(cfg, [(state, ins)])
    assert r.error == ErrorCode.BAD_FIELD


def test_load_and_save_ports_while_a_calc_runs():
    from amaranth.sim import Simulator

    from deepfpga.hw.isa import Buffer, encode_instruction
    from deepfpga.rtl.accel.datapath import Datapath

    cfg = CFG8
    dut = Datapath(cfg)
    rng = np.random.default_rng(11)
    state = cc.random_state(rng, cfg)
    ins = Calc(ti=2, to=2, in_rows=4, in_cols=4, out_rows=2, out_cols=2, ob_addr=0,
               finalize=1, out_bits=8, data_shift=2, out_addr=100)
    want = cc.oracle(cfg, state, ins)
    loads = [(Buffer.INPUT, 150, -5), (Buffer.WEIGHT, 100, 7), (Buffer.BIAS, 11, -128),
             (Buffer.INPUT, 199, 127)]
    saved = list(range(60, 70))
    got_rsp: list[int] = []

    async def bench(ctx):
        for buf, vals in (("inp", state.inp), ("wgt", state.wgt), ("bias", state.bias),
                          ("out", state.out)):
            for k, v in enumerate(vals.tolist()):
                ctx.set(dut.cell(buf, k), v)
        ctx.set(dut.calc_word, int.from_bytes(encode_instruction(ins), "little"))
        ctx.set(dut.calc_valid, 1)
        await ctx.tick()
        ctx.set(dut.calc_valid, 0)
        for buf, addr, val in loads:
            ctx.set(dut.ld_valid, 1)
            ctx.set(dut.ld_buf, buf)
            ctx.set(dut.ld_addr, addr)
            ctx.set(dut.ld_data, val)
            assert ctx.get(dut.ld_ready)
            await ctx.tick()
        ctx.set(dut.ld_valid, 0)
        reqs = list(saved)
        cycles = 0
        while len(got_rsp) < len(saved) or not ctx.get(dut.calc_done):
            ready = bool(rng.random() < 0.5)
            ctx.set(dut.sv_rsp_ready, ready)
            ctx.set(dut.sv_req_valid, bool(reqs))
            if reqs:
                ctx.set(dut.sv_req_addr, reqs[0])
            if reqs and ctx.get(dut.sv_req_ready):
                reqs.pop(0)
            if ready and ctx.get(dut.sv_rsp_valid):
                got_rsp.append(ctx.get(dut.sv_rsp_data))
                assert ctx.get(dut.sv_rsp_lanes) & ((1 << cfg.data_bits) - 1) == \
                    got_rsp[-1] & ((1 << cfg.data_bits) - 1)
            if ctx.get(dut.calc_done):
                assert ctx.get(dut.calc_error) == 0
            await ctx.tick()
            cycles += 1
            assert cycles < 5000
        ctx.set(dut.sv_req_valid, 0)
        await ctx.tick()
        for buf, addr, val in loads:
            name = {Buffer.INPUT: "inp", Buffer.WEIGHT: "wgt", Buffer.BIAS: "bias"}[buf]
            assert ctx.get(dut.cell(name, addr)) == val
        out = np.array([ctx.get(dut.cell("out", k)) for k in range(len(state.out))])
        assert np.array_equal(out, want.out)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    lo = -(1 << (cfg.data_bits - 1))
    expect = [((int(v) - lo) % (1 << cfg.data_bits)) + lo for v in state.out[saved]]
    assert got_rsp == expect


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator not installed")
@pytest.mark.parametrize("cfg", [pytest.param(CFG16, id="1bank"),
                                 pytest.param(CFG8B8, id="8banks", marks=pytest.mark.slow)])
def test_verilator_lint(tmp_path, cfg):
    from amaranth.back import verilog

    from deepfpga.rtl.accel.datapath import Datapath

    path = tmp_path / "datapath.v"
    path.write_text(verilog.convert(Datapath(cfg), name="deepfpga_datapath", emit_src=False))
    # WIDTH and CASEINCOMPLETE are style warnings endemic to Amaranth's generated Verilog
    r = subprocess.run(["verilator", "--lint-only", "-Wno-WIDTH", "-Wno-CASEINCOMPLETE",
                        "--top-module", "deepfpga_datapath", str(path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_wide_load_port():
    """ldw_*: up to B consecutive entries per cycle from any start, lanes masked; it wins over
    ld_* in the same cycle (ld_ready low), and single loads still work around it. And the B-wide
    SAVE response sv_rsp_lanes."""
    from amaranth.sim import Simulator

    from deepfpga.hw.engines import bank_count
    from deepfpga.hw.isa import Buffer
    from deepfpga.rtl.accel.buffers import element_bits
    from deepfpga.rtl.accel.datapath import Datapath

    cfg = CFG8B8
    b, ew = bank_count(cfg), element_bits(cfg)
    assert b == 8
    dut = Datapath(cfg)
    rng = np.random.default_rng(13)
    names = {Buffer.INPUT: "inp", Buffer.WEIGHT: "wgt", Buffer.BIAS: "bias"}
    sizes = {Buffer.INPUT: cfg.input_buffer_entries, Buffer.WEIGHT: cfg.weight_buffer_entries,
             Buffer.BIAS: cfg.bias_buffer_entries}
    want = {buf: np.zeros(n, dtype=np.int64) for buf, n in sizes.items()}
    ops = []
    for _ in range(40):
        buf = Buffer(int(rng.integers(0, 3)))
        start = int(rng.integers(0, sizes[buf] - b + 1))
        vals = rng.integers(-128, 128, b)
        mask = int(rng.integers(1, 1 << b))
        single = (Buffer(int(rng.integers(0, 3))), None, int(rng.integers(-128, 128)))
        single = (single[0], int(rng.integers(0, sizes[single[0]])), single[2])
        ops.append((buf, start, vals, mask, single))

    async def bench(ctx):
        for buf, start, vals, mask, (sbuf, saddr, sval) in ops:
            ctx.set(dut.ldw_valid, 1)
            ctx.set(dut.ldw_buf, buf)
            ctx.set(dut.ldw_addr, start)
            ctx.set(dut.ldw_mask, mask)
            ctx.set(dut.ldw_data, sum((int(v) & ((1 << ew) - 1)) << (k * ew)
                                      for k, v in enumerate(vals)))
            ctx.set(dut.ld_valid, 1)               # offered at the same time: must wait
            ctx.set(dut.ld_buf, sbuf)
            ctx.set(dut.ld_addr, saddr)
            ctx.set(dut.ld_data, sval)
            assert ctx.get(dut.ldw_ready) and not ctx.get(dut.ld_ready)
            await ctx.tick()
            for k in range(b):
                if mask >> k & 1:
                    want[buf][start + k] = vals[k]
            ctx.set(dut.ldw_valid, 0)
            assert ctx.get(dut.ld_ready)
            await ctx.tick()
            want[sbuf][saddr] = sval
        ctx.set(dut.ld_valid, 0)
        await ctx.tick()
        for buf, arr in want.items():
            got = [ctx.get(dut.cell(names[buf], e)) for e in range(len(arr))]
            assert got == arr.tolist(), names[buf]
        # a wide SAVE response: B consecutive OUTPUT entries from an unaligned address
        outv = rng.integers(-128, 128, 16)
        for k, v in enumerate(outv.tolist()):
            ctx.set(dut.cell("out", 3 + k), v)
        ctx.set(dut.sv_rsp_ready, 1)
        ctx.set(dut.sv_req_valid, 1)
        ctx.set(dut.sv_req_addr, 5)
        await ctx.tick()
        ctx.set(dut.sv_req_valid, 0)
        assert ctx.get(dut.sv_rsp_valid)
        lanes = ctx.get(dut.sv_rsp_lanes)
        mask = (1 << cfg.data_bits) - 1
        assert [(lanes >> (k * cfg.data_bits)) & mask for k in range(b)] == \
            [int(v) & mask for v in outv[2:2 + b]]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _finalizing(rng, cfg, pool: int, **fixed):
    """A random finalizing CONV of the given shape, pooled or not (drawn until it is)."""
    while True:
        ins = cc.random_calc(rng, cfg, kind=0, **fixed)
        if ins.finalize and ins.pool == pool:
            return ins


@pytest.mark.slow
@pytest.mark.parametrize("cfg,seed", [(CFG8B8, 21), (CFG8, 22)])
def test_finalize_chunks_match_functional_simulator(cfg, seed):
    """The B-wide finalize (finalize.py) on the shapes its chunking cuts differently: a
    channel's last chunk partial, rows of 1, B − 1, B, B + 1 columns (pooled: odd columns and
    odd rows dropped, a single column), several channels, and saturation (8 banks; 1 bank
    pairs two chunks)."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 3), (1, 9), (2, 8), (3, 7), (4, 9), (5, 3), (2, 1), (1, 1)]
    cases = [(cc.random_state(rng, cfg), _finalizing(rng, cfg, pool, out_rows=r, out_cols=c,
                                                     to=int(rng.integers(1, 3))))
             for r, c in shapes for pool in (0, 1)]
    # saturating: a large left shift clips nearly every value (counted before pooling)
    for pool in (0, 1):
        ins = _finalizing(rng, cfg, pool, out_rows=3, out_cols=5, to=2)
        cases.append((cc.random_state(rng, cfg), replace(ins, data_shift=-4, relu=0)))
    got = check(cfg, cases)
    assert not any(r.error for r in got)
    assert all(cc.oracle(cfg, s, i).sat > 0 for s, i in cases[-2:])
