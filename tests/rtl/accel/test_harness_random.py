"""Random whole-ISA programs on the full accelerator RTL (Verilator, the real Datapath) against
the functional simulator, group by group (`random_programs.py`: random LOAD geometries and
element widths with the FC role swap, CONV and FC CALCs with every field at random, SAVEs with
random pitches, the compiler's Builder for the tokens).

Per program: each group's saved DDR area as the RTL left it at the group's last SAVE against the
simulator's at the group's end, in program order, so a failure names the first bad group and
lists its instructions; each group's saturation count; no byte written outside the groups'
areas; the error register clear, the run ended at the END with SAT_COUNT equal to the traced
counts, and every instruction traced (start ≤ end). A second property mutates one instruction
into an out-of-range one (or makes the first LOAD pop a token never pushed): the RTL's error
code and index are the simulator's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.rtl.accel.random_programs import RandomProgram, random_program

from deepfpga.compiler.artifact import Compiled
from deepfpga.hw.config import AcceleratorConfig, load_config
from deepfpga.hw.isa import Calc, End, Load, Program, Save
from deepfpga.rtl.accel.spec import ErrorCode
from deepfpga.sim.functional import SimulationError, simulate_program

TINY = load_config("tiny")
# 8-bit data, 16-bit weights, 32-bit biases on a 64-bit bus: every element width differs, so
# the FC role swap and the LOAD's width conversion show; small buffers; every ISA stride 1..7
MIXED = TINY.replace(name="mixed", input_buffer_bytes=1024, weight_buffer_bytes=512,
                     bias_buffer_bytes=64, output_buffer_bytes=1536, fc_buffer_bytes=512,
                     axi_data_bits=64, data_bits=8, weight_bits=16, bias_bits=32, acc_bits=40,
                     max_burst_bytes=4096, max_stride=7)     # max_stride: not in the hash
CONFIGS = {"tiny": TINY, "mixed": MIXED}

# (kind, seed, END after it): mostly small CONV and FC groups, some big and deep ones
GROUPS = st.lists(st.tuples(st.sampled_from(["conv", "conv", "conv", "fc", "fc", "big", "deep",
                                             "conv1"]),
                            st.integers(0, 2**32 - 1), st.sampled_from([False, False, True])),
                  min_size=1, max_size=6)
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EXAMPLES = 100


def _run(accel_build, compiled: Compiled, x: np.ndarray):
    from deepfpga.rtl.accel.driver import RtlRunner

    with RtlRunner(compiled, accel_build(compiled.config)) as r:
        return r.run(x)


def check_program(accel_build, cfg: AcceleratorConfig, groups: list[tuple[str, int, bool]]
                  ) -> int:
    prog = random_program(cfg, groups)
    x = prog.random_input(np.random.default_rng(groups[0][1]))
    want = simulate_program(prog.program_bytes(), prog.ddr_image, prog.manifest, cfg, x)
    res = _run(accel_build, prog.compiled(), x)
    assert res.ok, f"{res.error_message}\n{prog.listing(prog.groups[-1])}"
    for g in prog.groups:                   # program order: the first bad group is named
        got, ref = res.layers[g.name][0], want.layers[g.name][0]
        if not np.array_equal(got, ref):
            k = int(np.flatnonzero(got != ref)[0])
            pytest.fail(f"group {g.name} ({g.kind}): saved element {k} is {got[k]}, the"
                        f" simulator's {ref[k]}\n{prog.listing(g)}")
        assert res.saturations[g.name] == want.saturations[g.name], \
            f"group {g.name} saturations\n{prog.listing(g)}"
    # nothing written outside the groups' areas
    ddr = res.ddr[0]
    keep = np.ones(len(ddr), dtype=bool)
    for g in prog.groups:
        keep[g.area[0]:g.area[1]] = False
    inp = prog.manifest.tensors[prog.manifest.input]
    keep[inp.address:inp.address + inp.shape[0] * cfg.data_bytes] = False
    image = np.frombuffer(prog.ddr_image, dtype=np.uint8)
    assert np.array_equal(ddr[keep], image[keep]), "the RTL wrote DDR outside every SAVE"
    n = len(prog.instructions)
    assert [(s.first, s.end, s.error) for s in res.segments] == \
        [(a.instructions[0], a.instructions[1] - 1, ErrorCode.NONE)
         for a in prog.manifest.segments]
    assert sum(s.sat_count for s in res.segments) == int(res.trace["sat"].sum()) \
        == sum(want.saturations.values())
    body = np.array([not isinstance(i, End) for i in prog.instructions])
    st_, en = res.trace["start"][body], res.trace["end"][body]
    assert (st_ >= 0).all() and (en >= st_).all(), "an instruction without its trace"
    return n


def _mutate(prog: RandomProgram, seed: int) -> tuple[Program, int, ErrorCode]:
    """One LOAD, CALC or SAVE made to reach past its buffer, or the first LOAD made to wait
    for a token no CALC gave yet; the rest unchanged."""
    cfg = prog.cfg
    rng = np.random.default_rng(seed)
    ins = list(prog.instructions)
    if rng.random() < 0.2:
        k = next(k for k, i in enumerate(ins) if isinstance(i, Load))
        assert not ins[k].pop_next
        ins[k] = dataclasses.replace(ins[k], pop_next=1)
        return Program(cfg.hash(), tuple(ins)), k, ErrorCode.TOKEN_UNDERFLOW
    cands = [k for k, i in enumerate(ins) if isinstance(i, Load | Save)
             or (isinstance(i, Calc) and i.to and i.ti)]
    k = int(rng.choice(cands))
    i = ins[k]

    def past(cap: int, n: int) -> int:     # a start with start + n in [cap + 1, cap + n]
        return cap - n + 1 + int(rng.integers(0, n))

    if isinstance(i, Load):
        cap = {0: cfg.input_buffer_entries, 1: cfg.weight_buffer_entries,
               2: cfg.bias_buffer_entries}[i.buffer]
        if i.fc_weights and i.buffer == 0:
            cap = min(cfg.fc_buffer_entries, cap)
        ins[k] = dataclasses.replace(i, buf_addr=past(cap, i.length * i.n1 * i.n2))
        code = ErrorCode.LOAD_RANGE
    elif isinstance(i, Save):
        n = i.length * i.n1 * i.n2
        ins[k] = dataclasses.replace(i, ob_addr=past(cfg.output_buffer_entries, n))
        code = ErrorCode.SAVE_RANGE
    else:
        n = i.to * i.out_rows * i.out_cols
        ins[k] = dataclasses.replace(i, ob_addr=past(cfg.output_buffer_entries, n))
        code = ErrorCode.CALC_RANGE
    return Program(cfg.hash(), tuple(ins)), k, code


def check_error(accel_build, cfg: AcceleratorConfig, groups: list[tuple[str, int, bool]],
                seed: int) -> None:
    prog = random_program(cfg, groups)
    program, k, code = _mutate(prog, seed)
    x = prog.random_input(np.random.default_rng(seed))
    with pytest.raises(SimulationError) as e:
        simulate_program(program, prog.ddr_image, prog.manifest, cfg, x)
    assert e.value.index == k
    res = _run(accel_build, dataclasses.replace(prog.compiled(), program=program), x)
    assert not res.ok
    assert (res.error, res.error_index) == (code, k), res.error_message


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "mixed"])
def test_random_programs_match_functional(accel_build, name):
    cfg = CONFIGS[name]
    accel_build(cfg)
    counts: list[int] = []

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(groups=GROUPS)
    def prop(groups):
        counts.append(check_program(accel_build, cfg, groups))

    prop()
    print(f"{name}: {len(counts)} random programs, {sum(counts)} instructions")   # pytest -s
    assert len(counts) >= EXAMPLES // 2 and sum(counts) > 10 * len(counts)


# programs of 1×1 CONV1 groups (ti terms, dense (to, ti) weights) among CONV and FC groups
GROUPS_1X1 = st.lists(st.tuples(st.sampled_from(["conv1", "conv1", "conv1", "conv", "fc"]),
                                st.integers(0, 2**32 - 1), st.sampled_from([False, True])),
                      min_size=1, max_size=4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "zedboard"])
def test_random_conv1_programs_match_functional(accel_build, name):
    cfg = load_config("zedboard") if name == "zedboard" else TINY
    accel_build(cfg)
    counts: list[int] = []

    @settings(max_examples=12, **SETTINGS)
    @given(groups=GROUPS_1X1)
    def prop(groups):
        counts.append(check_program(accel_build, cfg, groups))

    prop()
    assert len(counts) >= 6


# 8-bit weight elements on `tiny`: half of the weight LOADs packed (4-bit, two per byte), with
# random lengths (odd segments), strides and offsets
TINY8 = TINY.replace(name="tiny-w8", weight_bits=8)


@pytest.mark.slow
def test_random_packed_programs_match_functional(accel_build):
    accel_build(TINY8)
    packed: list[int] = []

    @settings(max_examples=20, **SETTINGS)
    @given(groups=GROUPS)
    def prop(groups):
        check_program(accel_build, TINY8, groups)
        prog = random_program(TINY8, groups)
        packed.append(sum(isinstance(i, Load) and i.packed4 and i.length % 2
                          for i in prog.instructions))

    prop()
    assert len(packed) >= 10 and sum(packed) > len(packed)


@pytest.mark.slow
def test_random_program_errors_match_functional(accel_build):
    accel_build(TINY)

    @settings(max_examples=30, **SETTINGS)
    @given(groups=GROUPS, seed=st.integers(0, 2**32 - 1))
    def prop(groups, seed):
        check_error(accel_build, TINY, groups, seed)

    prop()
