"""The accelerator top level in amaranth.sim against the functional simulator: random legal
LOAD/SAVE/no-op CALC programs with tokens through the AXI ports (DDR image and buffers after
the program), every error the core detects, the registers."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from tests.rtl.accel import core_bench as cb
from tests.rtl.accel.datapath_double import DatapathDouble

from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Buffer, Calc, End, Load, Save, encode_instruction
from deepfpga.rtl.accel import spec
from deepfpga.rtl.accel.load import element_bytes
from deepfpga.rtl.accel.top import Accelerator

E = spec.ErrorCode
DDR_BYTES, ARENA, PROG = 16384, (8192, 12288), 12288


def small(**kw):
    base = dict(input_buffer_bytes=1024, weight_buffer_bytes=512, bias_buffer_bytes=64,
                output_buffer_bytes=1536, fc_buffer_bytes=512, max_burst_bytes=64)
    return load_config("tiny").replace(**{**base, **kw})


CONFIGS = {
    "dw32": small(),
    "dw64-mixed": small(axi_data_bits=64, data_bits=8, weight_bits=16, bias_bits=32,
                        acc_bits=40, max_burst_bytes=4096),
}


def caps(cfg, buffer, fc):
    if buffer == Buffer.INPUT:
        return min(cfg.fc_buffer_entries, cfg.input_buffer_entries) if fc \
            else cfg.input_buffer_entries
    return cfg.weight_buffer_entries if buffer == Buffer.WEIGHT else cfg.bias_buffer_entries


def random_program(rng, cfg, n_ins=6):
    """Legal LOAD/SAVE/no-op CALC instructions with random geometry and token flags."""
    po = [0, 0, 0, 0]          # L→C, C→L, C→S, S→C
    out = []
    for _ in range(n_ins):
        kind = rng.choice(["load", "load", "save", "calc"])
        if kind == "load":
            buf = int(rng.integers(0, 3))
            fc = int(buf != 2 and rng.random() < 0.4)
            eb = element_bytes(cfg, Buffer(buf), bool(fc))
            cap = caps(cfg, buf, fc)
            length, n1, n2 = (int(x) for x in rng.integers(1, [12, 4, 3]))
            length = max(1, min(length, cap // (n1 * n2)))
            n1, n2 = (n1, n2) if length * n1 * n2 <= cap else (1, 1)
            n = length * n1 * n2
            s1 = int(rng.choice([length * eb, rng.integers(0, 60)]))
            s2 = int(rng.choice([n1 * s1, rng.integers(0, 300)]))
            span = (n2 - 1) * s2 + (n1 - 1) * s1 + length * eb
            pop = int(po[1] > 0 and rng.random() < 0.5)
            push = int(rng.random() < 0.5)
            po[1] -= pop
            po[0] += push
            out.append(Load(buffer=buf, fc_weights=fc, buf_addr=int(rng.integers(0, cap - n + 1)),
                            ddr_addr=int(rng.integers(0, ARENA[0] - span)), length=length,
                            n1=n1, stride1=s1, n2=n2, stride2=s2, pop_next=pop,
                            push_next=push))
        elif kind == "save":
            db = cfg.data_bytes
            length, n1, n2 = (int(x) for x in rng.integers(1, [12, 4, 3]))
            n = length * n1 * n2
            s1 = length * db + int(rng.choice([0, rng.integers(0, 9)]))
            row = (n1 - 1) * s1 + length * db
            s2 = row + int(rng.choice([0, rng.integers(0, 40)]))
            span = (n2 - 1) * s2 + row
            pop = int(po[2] > 0 and rng.random() < 0.6)
            push = int(rng.random() < 0.5)
            po[2] -= pop
            po[3] += push
            out.append(Save(ob_addr=int(rng.integers(0, cfg.output_buffer_entries - n + 1)),
                            ddr_addr=int(rng.integers(ARENA[0], ARENA[1] - span)),
                            length=length, n1=n1, stride1=s1, n2=n2, stride2=s2,
                            pop_prev=pop, push_prev=push))
        else:
            flags = {"pop_prev": int(po[0] > 0 and rng.random() < 0.7),
                     "pop_next": int(po[3] > 0 and rng.random() < 0.7),
                     "push_prev": int(rng.random() < 0.5), "push_next": int(rng.random() < 0.5)}
            po[0] -= flags["pop_prev"]
            po[3] -= flags["pop_next"]
            po[1] += flags["push_prev"]
            po[2] += flags["push_next"]
            out.append(Calc(to=0, **flags))
    # pop what is left, so END finds no token
    out += [Calc(to=0, pop_prev=1)] * po[0] + [Load(length=0, pop_next=1)] * po[1]
    out += [Save(length=0, pop_prev=1)] * po[2] + [Calc(to=0, pop_next=1)] * po[3]
    return out + [End()]


def run_program(cfg, prog, *, seed=0, words=None, stall=False, lanes=1, **kw):
    rng = np.random.default_rng(seed)
    out = rng.integers(-(1 << (cfg.data_bits - 1)), 1 << (cfg.data_bits - 1),
                       cfg.output_buffer_entries).tolist()
    ddr = bytearray(rng.integers(0, 256, DDR_BYTES, dtype=np.uint8).tobytes())
    ref = cb.functional(cfg, bytes(ddr), ARENA, prog, out)
    body = words if words is not None else [encode_instruction(i) for i in prog]
    ddr[PROG:PROG + 32 * len(body)] = b"".join(body)
    dut = Accelerator(cfg, partial(DatapathDouble, output_init=out, stall=stall, lanes=lanes))
    res = cb.run(dut, cfg, ddr, PROG, kw.pop("count", len(body)), seed=seed,
                 read_buffers=True, **kw)
    return ref, res


def check_same(ref, res):
    assert bytes(res.ddr[:PROG]) == ref.ddr[:PROG]
    for b in range(3):
        w = ref.written[b]
        got = np.array(res.buffers[b], dtype=np.int64)
        assert (got[w] == ref.buffers[b][w]).all(), f"buffer {b}"


def test_small_program_runs_to_done():
    cfg = CONFIGS["dw32"]
    prog = [Load(buffer=0, buf_addr=3, ddr_addr=5, length=7, n1=3, stride1=20, n2=2,
                 stride2=100, push_next=1),
            Calc(to=0, pop_prev=1, push_next=1),
            Save(ob_addr=2, ddr_addr=ARENA[0] + 3, length=5, n1=2, stride1=14, n2=2,
                 stride2=50, pop_prev=1),
            End()]
    ref, res = run_program(cfg, prog)
    assert res.status == spec.Status.DONE and res.error_code == 0
    assert res.end_index == 3 and res.cycles > 0
    check_same(ref, res)
    starts = [(e, i) for e, edge, i, _ in res.trace if edge == "start"]
    assert starts == [("load", 0), ("calc", 1), ("save", 2)]
    # tokens order them: each engine starts after the one it waits for ended
    t = {(e, edge): c for e, edge, _, c in res.trace}
    assert t["calc", "start"] > t["load", "end"] and t["save", "start"] > t["calc", "end"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_programs_match_functional(name):
    cfg = CONFIGS[name]
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        prog = random_program(rng, cfg)
        ref, res = run_program(cfg, prog, seed=seed, stall=seed % 2 == 1,
                               p_ready=0.6 if seed % 2 else 0.9)
        assert ref.error_index is None
        assert (res.status, res.error_code) == (spec.Status.DONE, 0), (seed, res.error_code)
        assert res.end_index == len(prog) - 1
        check_same(ref, res)


def word(ins, extra_bits=0, opcode=None):
    w = int.from_bytes(encode_instruction(ins), "little") | extra_bits
    if opcode is not None:
        w = (w & ~0xF) | opcode
    return w.to_bytes(32, "little")


ERROR_CASES = {
    "load_range": ([Load(buffer=2, buf_addr=30, length=3)], E.LOAD_RANGE),
    "fc_area": ([Load(buffer=0, fc_weights=1, buf_addr=250, length=8)], E.LOAD_RANGE),
    "load_ddr_beyond_4g": ([Load(ddr_addr=(1 << 32) - 4, length=4)], E.LOAD_RANGE),
    "buffer_3": ([Load(buffer=3)], E.BAD_FIELD),
    "fc_bias": ([Load(buffer=2, fc_weights=1)], E.BAD_FIELD),
    "load_pop_prev": ([Load(pop_prev=1)], E.BAD_FIELD),
    "save_range": ([Save(ob_addr=250, length=10)], E.SAVE_RANGE),
    "save_overlap": ([Save(ddr_addr=ARENA[0], length=4, n1=2, stride1=6)], E.BAD_FIELD),
    "save_push_next": ([Save(length=0, push_next=1)], E.BAD_FIELD),
    "underflow": ([Calc(to=0, pop_prev=1)], E.TOKEN_UNDERFLOW),
    "token_left": ([Load(length=0, push_next=1)], E.TOKEN_LEFT),
    "end_flags": ([], E.BAD_FIELD),
    "calc_not_run": ([Calc(to=1, ti=1)], E.BAD_FIELD),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_stop_at_the_failing_instruction(case):
    cfg = CONFIGS["dw32"]
    ok = [Load(buffer=1, length=4, ddr_addr=8), Save(ddr_addr=ARENA[0], length=3)]
    bad, code = ERROR_CASES[case]
    prog = ok + bad + [End(push_prev=1) if case == "end_flags" else End()]
    ref, res = run_program(cfg, prog, clear=True)
    assert (res.status, res.error_code) == (spec.Status.ERROR, code)
    assert res.after_clear == (0, 0, 0)                         # CLEAR: idle, no error, no irq
    at = len(prog) - 1 if case == "token_left" else 2          # END fails there
    assert res.error_index == at and ref.error_index == at
    check_same(ref, res)            # the instructions before it ran


@pytest.mark.parametrize("case", ["unknown_opcode", "unused_bits", "no_end", "axi_error",
                                  "fetch_axi_error", "misaligned_program"])
def test_errors_of_words_and_transport(case):
    cfg = CONFIGS["dw32"]
    good = [Load(buffer=1, length=4, ddr_addr=8), End()]
    words = [encode_instruction(i) for i in good]
    kw = {}
    want = {"unknown_opcode": (E.UNKNOWN_OPCODE, 1), "unused_bits": (E.BAD_FIELD, 1),
            "no_end": (E.FETCH_RANGE, 1), "axi_error": (E.AXI_ERROR, 0),
            "fetch_axi_error": (E.AXI_ERROR, 1), "misaligned_program": (E.FETCH_RANGE, 0)}[case]
    if case == "unknown_opcode":
        words[1] = word(End(), opcode=7)
    elif case == "unused_bits":
        words[1] = word(End(), extra_bits=1 << 200)
    elif case == "no_end":
        kw["count"] = 1
    elif case == "axi_error":
        kw["bad_ranges"] = [(0, 16)]
    elif case == "fetch_axi_error":                     # the second word's last beat
        kw["bad_ranges"] = [(PROG + 60, PROG + 64)]
    if case == "misaligned_program":
        ddr = bytearray(DDR_BYTES)
        ddr[PROG + 8:PROG + 8 + 64] = b"".join(words)
        dut = Accelerator(cfg, partial(DatapathDouble, output_init=[1, 2, 3, 4]))
        res = cb.run(dut, cfg, ddr, PROG + 8, 2)
    else:
        _, res = run_program(cfg, good, words=words, **kw)
    assert (res.status, res.error_code, res.error_index) == (spec.Status.ERROR, *want)


def test_real_datapath_conv_tile_matches_functional():
    """LOAD input/weights/bias, a finalizing CONV CALC on the calc helper's Datapath, SAVE."""
    from deepfpga.rtl.accel.datapath import Datapath

    cfg = CONFIGS["dw32"]
    rng = np.random.default_rng(5)
    ddr = bytearray(rng.integers(-200, 200, DDR_BYTES // 2).astype("<i2").tobytes())
    prog = [
        Load(buffer=0, ddr_addr=64, length=16, n1=2, stride1=40),            # 2 × 4×4 tile
        Load(buffer=1, ddr_addr=1000, length=36),                            # 2×2×3×3
        Load(buffer=2, ddr_addr=2001, length=2, push_next=1),                # odd address
        Calc(kind=0, ti=2, to=2, in_rows=4, in_cols=4, out_rows=4, out_cols=4, stride=1,
             pad_top=1, pad_left=1, finalize=1, has_bias=1, relu=1, data_shift=4,
             out_bits=12, out_addr=100, pop_prev=1, push_next=1),
        Save(ob_addr=100, ddr_addr=ARENA[0] + 6, length=16, n1=2, stride1=34, pop_prev=1),
        End(),
    ]
    ref = cb.functional(cfg, bytes(ddr), ARENA, prog, [])
    assert ref.error_index is None
    ddr[PROG:PROG + 32 * len(prog)] = b"".join(encode_instruction(i) for i in prog)
    res = cb.run(Accelerator(cfg, Datapath), cfg, ddr, PROG, len(prog), read_buffers=True)
    assert (res.status, res.error_code, res.end_index) == (spec.Status.DONE, 0, 5)
    check_same(ref, res)
    assert res.sat_count == ref.saturated > 0
    assert any(res.ddr[ARENA[0] + 6:ARENA[0] + 40])


def test_consecutive_loads_overlap():
    """The next LOAD issues its bursts while the previous one's data still arrives; each
    completes (and pushes) in order, and the buffers are as the simulator says."""
    cfg = CONFIGS["dw64-mixed"]
    prog = [Load(buffer=1, length=40, ddr_addr=8 * k + 3, buf_addr=40 * k, push_next=1)
            for k in range(3)]
    prog += [Calc(to=0, pop_prev=1)] * 3 + [End()]
    ref, res = run_program(cfg, prog, latency=12)
    assert (res.status, res.error_code) == (spec.Status.DONE, 0)
    check_same(ref, res)
    t = {(e, edge, i): c for e, edge, i, c in res.trace}
    for k in range(2):
        assert t["load", "start", k + 1] < t["load", "end", k]
        assert t["load", "end", k] < t["load", "end", k + 1]


def test_segments_restart_after_each_end():
    """Two accelerator segments: the host restarts at END_INDEX + 1; the second sees the
    first one's buffers, with no token crossing the END; CLEAR-free restart clears DONE."""
    cfg = CONFIGS["dw32"]
    prog = [Load(buffer=0, ddr_addr=10, length=9, push_next=1), Calc(to=0, pop_prev=1), End(),
            Save(ob_addr=4, ddr_addr=ARENA[0] + 1, length=7), End()]
    ref, res = run_program(cfg, prog, segments=True)
    assert (res.status, res.error_code, res.ends) == (spec.Status.DONE, 0, [2, 4])
    check_same(ref, res)


def _mutate(rng, cfg, prog):
    """One instruction of a legal program made illegal: (program, its index, expected code)."""
    from dataclasses import replace

    cands = [k for k, i in enumerate(prog) if isinstance(i, Load | Save)
             and i.length * i.n1 * i.n2 > 0]
    k = int(rng.choice(cands))
    ins = prog[k]
    n = ins.length * ins.n1 * ins.n2
    if isinstance(ins, Load):
        how = rng.choice(["range", "buffer3", "fc_bias"])
        if how == "range":
            bad = replace(ins, buf_addr=caps(cfg, ins.buffer, ins.fc_weights) - n + 1)
            code = E.LOAD_RANGE
        elif how == "buffer3":
            bad, code = replace(ins, buffer=3, fc_weights=0), E.BAD_FIELD
        else:
            bad, code = replace(ins, buffer=2, fc_weights=1), E.BAD_FIELD
    else:
        if rng.random() < 0.5:
            bad = replace(ins, ob_addr=cfg.output_buffer_entries - n + 1)
            code = E.SAVE_RANGE
        else:
            bad = replace(ins, n1=2, stride1=max(0, ins.length * cfg.data_bytes - 1))
            code = E.BAD_FIELD
    return prog[:k] + [bad] + prog[k + 1:], k, code


@pytest.mark.slow
def test_random_illegal_programs_stop_like_functional():
    cfg = CONFIGS["dw64-mixed"]
    for seed in range(4):
        rng = np.random.default_rng(300 + seed)
        prog, k, code = _mutate(rng, cfg, random_program(rng, cfg))
        ref, res = run_program(cfg, prog, seed=seed, p_ready=0.7)
        assert ref.error_index == k
        assert (res.status, res.error_code, res.error_index) == (spec.Status.ERROR, code, k)
        check_same(ref, res)


def test_consecutive_saves_overlap_and_complete_in_order():
    cfg = CONFIGS["dw32"]
    prog = [Save(ob_addr=8 * k, ddr_addr=ARENA[0] + 40 * k + 1, length=8, push_prev=1)
            for k in range(3)]
    prog += [Save(length=0, push_prev=1)] + [Calc(to=0, pop_next=1)] * 4 + [End()]
    ref, res = run_program(cfg, prog, latency=12, p_ready=0.7)
    assert (res.status, res.error_code) == (spec.Status.DONE, 0)
    check_same(ref, res)
    t = {(e, edge, i): c for e, edge, i, c in res.trace}
    for k in range(3):
        assert t["save", "start", k + 1] < t["save", "end", k] < t["save", "end", k + 1]


@pytest.mark.slow
@pytest.mark.parametrize("name,lanes", [("dw32", 2), ("dw64-mixed", 8), ("dw64-mixed", 3)])
def test_wide_load_port_matches_functional(name, lanes):
    """A Datapath whose `ldw_*` port has `lanes` lanes: up to `lanes` elements per cycle."""
    cfg = CONFIGS[name]
    for seed in range(2):
        rng = np.random.default_rng(500 + seed)
        prog = random_program(rng, cfg)
        ref, res = run_program(cfg, prog, seed=seed, stall=seed == 1, lanes=lanes,
                               p_ready=0.8)
        assert (res.status, res.error_code) == (spec.Status.DONE, 0), (seed, res.error_code)
        check_same(ref, res)


@pytest.mark.slow
@pytest.mark.parametrize("dw", [128, 256])
def test_wide_axi_buses(dw):
    """The AXI data width is a parameter: one random program on 128- and 256-bit buses."""
    cfg = small(axi_data_bits=dw, data_bits=8, weight_bits=8, bias_bits=16, acc_bits=24,
                max_burst_bytes=1024)
    rng = np.random.default_rng(dw)
    prog = random_program(rng, cfg)
    ref, res = run_program(cfg, prog, p_ready=0.8)
    assert (res.status, res.error_code) == (spec.Status.DONE, 0)
    check_same(ref, res)
