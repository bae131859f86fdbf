"""Checking the Datapath's CALC against the functional simulator, one instruction at a time.

- `BufferState`: the contents of the four buffers (one value per entry).
- `oracle(cfg, state, ins)`: what the functional simulator's machine (`sim.functional`) does with
  that CALC on that state: the OUTPUT buffer after it, the values it saturated, and the
  `ErrorCode` matching its refusal (0 if it ran).
- `random_state`, `random_calc`: random buffer contents and random legal CALCs covering every
  field (strides 1..7, pads, koff, accumulate, finalize, bias, ReLU, shifts of both signs,
  out_bits < data_bits, pool, pitch, FC; CONV1 when asked for with `kind`).
- `simulate(cfg, cases)`: runs the cases on `Datapath(cfg)` in amaranth.sim (one simulation,
  buffers set directly between CALCs) and returns the same three things plus cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.isa import CALC_TAPS, Buffer, Calc, CalcKind, encode_instruction
from deepfpga.rtl.accel.spec import ErrorCode
from deepfpga.sim import functional
from deepfpga.sim.hazards import DdrMap
from deepfpga.sim.machine import Machine

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled


@dataclass(frozen=True)
class BufferState:
    inp: np.ndarray
    wgt: np.ndarray
    bias: np.ndarray
    out: np.ndarray


@dataclass(frozen=True)
class CalcResult:
    out: np.ndarray       # OUTPUT buffer after the CALC (int64)
    sat: int
    error: int            # ErrorCode
    cycles: int = 0       # calc_valid accepted → calc_done (RTL only)


_ERRORS = (
    ("accumulator overflow", ErrorCode.ACC_OVERFLOW),
    ("finalized output reaches", ErrorCode.CALC_RANGE),
    ("outside its", ErrorCode.CALC_RANGE),
    ("is not CONV, FC or CONV1", ErrorCode.BAD_FIELD),
    ("stride 0", ErrorCode.BAD_FIELD),
    ("FC CALC must", ErrorCode.BAD_FIELD),
    ("exceeds max_row_width", ErrorCode.BAD_FIELD),
    ("out_bits", ErrorCode.BAD_FIELD),
)


def oracle(cfg: AcceleratorConfig, state: BufferState, ins: Calc) -> CalcResult:
    """One CALC through the functional simulator's machine on `state` (every entry written)."""
    no_ddr = DdrMap(arena=(0, 0), regions=(), positions={0: 0})   # layer 0, no DDR access
    mach = Machine(cfg, no_ddr, np.zeros(0, np.uint8), 1, check_races=False)
    for buf, vals in ((mach.bufs[Buffer.INPUT], state.inp), (mach.bufs[Buffer.WEIGHT], state.wgt),
                      (mach.bufs[Buffer.BIAS], state.bias), (mach.out, state.out)):
        buf.preset(vals)
    try:
        mach.step(0, ins)
        mach.flush()
    except functional.SimulationError as e:
        for text, code in _ERRORS:
            if text in str(e):
                return CalcResult(state.out.copy(), 0, int(code))
        raise
    return CalcResult(mach.out.val[0].astype(np.int64).copy(), mach.saturations.get(0, 0), 0)


def _rand(rng: np.random.Generator, bits: int, n: int, extreme: float = 0.1) -> np.ndarray:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = rng.integers(lo, hi + 1, n)
    pick = rng.random(n) < extreme
    v[pick] = rng.choice([lo, hi, 0, -1, 1], int(pick.sum()))
    return v.astype(np.int64)


def random_state(rng: np.random.Generator, cfg: AcceleratorConfig) -> BufferState:
    ob = max(cfg.data_bits, cfg.weight_bits)
    # operands at their own width (data or weights, either buffer: the FC role swap)
    inp = _rand(rng, min(cfg.data_bits, cfg.weight_bits), cfg.input_buffer_entries)
    wgt = _rand(rng, min(cfg.data_bits, cfg.weight_bits), cfg.weight_buffer_entries)
    assert ob >= 2
    bias = _rand(rng, cfg.bias_bits, cfg.bias_buffer_entries)
    # old accumulators: well inside acc_bits (sums of a few terms do not overflow) or small
    scale = rng.choice([cfg.acc_bits - 3, cfg.data_bits + cfg.weight_bits, 8])
    out = _rand(rng, int(scale), cfg.output_buffer_entries, extreme=0.0)
    return BufferState(inp, wgt, bias, out)


def random_calc(rng: np.random.Generator, cfg: AcceleratorConfig, **fixed: int) -> Calc:
    """A legal CALC on small sizes; `fixed` overrides fields (after the draw)."""
    from deepfpga.hw.engines import pool_width

    kind = int(rng.random() < 0.2) if "kind" not in fixed else fixed["kind"]
    f: dict[str, int] = {"kind": kind}
    ti = int(fixed.get("ti", rng.integers(1, 4)))
    to = int(fixed.get("to", rng.integers(1, 4)))
    if kind == CalcKind.FC:
        ti = int(fixed.get("ti", rng.integers(1, 12)))
        shape = {"in_rows": 1, "in_cols": 1, "out_rows": 1, "out_cols": 1}
        pool = 0
        n_acc = to
        f.update(ib_addr=int(rng.integers(0, cfg.fc_buffer_entries - to * ti + 1)),
                 wb_addr=int(rng.integers(0, cfg.weight_buffer_entries - ti + 1)))
    else:
        stride = int(rng.choice([1, 1, 2, 2, 3, 4, 5, 7]))
        rows = int(fixed.get("in_rows", rng.integers(1, 7)))
        cols = int(fixed.get("in_cols", rng.integers(1, min(7, cfg.max_row_width) + 1)))
        orows = int(fixed.get("out_rows", rng.integers(1, 5)))
        ocols = int(fixed.get("out_cols", rng.integers(1, min(9, pool_width(cfg)) + 1)))
        ocols = min(ocols, max(1, cfg.output_buffer_entries // 2 // (to * orows)))
        shape = {"in_rows": rows, "in_cols": cols, "out_rows": orows, "out_cols": ocols}
        pool = int(rng.random() < 0.3)
        n_acc = to * orows * ocols
        f.update(ib_addr=int(rng.integers(0, cfg.input_buffer_entries - ti * rows * cols + 1)),
                 wb_addr=int(rng.integers(0, cfg.weight_buffer_entries
                                          - to * ti * CALC_TAPS[CalcKind(kind)] + 1)),
                 stride=stride, pad_top=int(rng.integers(0, 4)),
                 pad_left=int(rng.integers(0, 4)),
                 koff_y=int(rng.choice([0, 0, 3, 6, int(rng.integers(0, 16))])),
                 koff_x=int(rng.choice([0, 0, 3, 6, int(rng.integers(0, 16))])))
    f.update(shape, ti=ti, to=to, pool=pool, accumulate=int(rng.random() < 0.5))
    oe = cfg.output_buffer_entries
    half = oe // 2
    # accumulators in the lower half, finalized values in the upper half (never overlapping)
    f["ob_addr"] = int(rng.integers(0, half - n_acc + 1))
    if rng.random() < 0.7:
        r, c = shape["out_rows"], shape["out_cols"]
        if pool:
            r, c = r // 2, c // 2
        npc = r * c
        pitch = 0 if rng.random() < 0.5 else int(npc + rng.integers(0, 4))
        span = (to - 1) * (pitch or npc) + npc
        if half + span > oe:            # a pitch too wide for this buffer: dense
            pitch, span = 0, to * npc
        a, d = cfg.acc_bits, cfg.data_bits
        f.update(finalize=1, has_bias=int(rng.random() < 0.6),
                 bb_addr=int(rng.integers(0, cfg.bias_buffer_entries - to + 1)),
                 bias_shift=int(rng.integers(0, a - cfg.bias_bits - 1)),
                 relu=int(rng.random() < 0.5),
                 data_shift=int(rng.choice([int(rng.integers(-d - 2, 1)),
                                            int(rng.integers(0, a + 3)),
                                            int(rng.integers(-128, 128))])),
                 out_bits=int(rng.choice([d, d, int(rng.integers(2, d + 1))])),
                 out_addr=int(rng.integers(half, oe - span + 1)), out_pitch=pitch)
    f.update(fixed)
    return Calc(**f)


def simulate(cfg: AcceleratorConfig, cases: Sequence[tuple[BufferState, Calc]],
             max_cycles: int = 200_000, chain: bool = False) -> list[CalcResult]:
    """Run each (state, CALC) on Datapath(cfg) in amaranth.sim: set the buffers, hand over the
    CALC, wait for calc_done, read OUTPUT back. `chain`: only the first state is set; later
    CALCs run on what the earlier ones left (a sequence, e.g. a decomposed kernel)."""
    from amaranth.sim import Simulator

    from deepfpga.rtl.accel.datapath import Datapath

    dut = Datapath(cfg)
    results: list[CalcResult] = []

    async def bench(ctx):
        for n, (state, ins) in enumerate(cases):
            contents = (("inp", state.inp), ("wgt", state.wgt), ("bias", state.bias),
                        ("out", state.out))
            for buf, vals in () if chain and n else contents:
                for k, v in enumerate(vals.tolist()):
                    ctx.set(dut.cell(buf, k), v)
            word = int.from_bytes(encode_instruction(ins), "little")
            ctx.set(dut.calc_word, word)
            ctx.set(dut.calc_valid, 1)
            while not ctx.get(dut.calc_ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.calc_valid, 0)
            cycles = 1
            while not ctx.get(dut.calc_done):
                await ctx.tick()
                cycles += 1
                if cycles > max_cycles:
                    raise RuntimeError(f"CALC did not complete in {max_cycles} cycles: {ins}")
            err, sat = ctx.get(dut.calc_error), ctx.get(dut.calc_sat)
            await ctx.tick()
            out = np.array([ctx.get(dut.cell("out", k)) for k in range(len(state.out))],
                           dtype=np.int64)
            results.append(CalcResult(out, int(sat), int(err), cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def program_calcs(compiled: Compiled, x: np.ndarray
                  ) -> list[tuple[BufferState, Calc, CalcResult]]:
    """Every CALC of a one-segment compiled program, as the functional simulator meets it on
    input `x` (one sample): the buffers just before it, the CALC, and what the simulator's
    machine then holds in OUTPUT and counted as saturated."""
    m = compiled.manifest
    mach = Machine(compiled.config, DdrMap.of(m),
                   np.frombuffer(compiled.ddr_image, dtype=np.uint8), 1, check_races=True)
    for address, values in m.host_writes(m.input, np.asarray(x, dtype=np.int64)[None]):
        mach.host_write(address, values)
    out = []
    for k, ins in enumerate(compiled.program.instructions):
        if isinstance(ins, Calc) and ins.to and ins.ti:
            mach.flush()
            state = BufferState(*(b.val[0].astype(np.int64).copy() for b in (
                mach.bufs[Buffer.INPUT], mach.bufs[Buffer.WEIGHT], mach.bufs[Buffer.BIAS],
                mach.out)))
            before = sum(mach.saturations.values())
            mach.step(k, ins)
            mach.flush()
            out.append((state, ins, CalcResult(mach.out.val[0].astype(np.int64).copy(),
                                               sum(mach.saturations.values()) - before, 0)))
        else:
            mach.step(k, ins)
    return out
