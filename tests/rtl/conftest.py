"""A generic stream testbench for the PE's components (amaranth.sim)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest
from amaranth.hdl import Signal
from amaranth.sim import Simulator


def run_stream(dut: Any, items: Sequence[Any], n_out: int, *, config: dict[str, int] | None = None,
               seed: int = 0, valid_prob: float = 0.7, ready_prob: float = 0.7,
               settle: int = 3, read: Callable[[Any], Any] | None = None,
               prelude: Callable[[Any], Awaitable[None]] | None = None) -> list[Any]:
    """Stream `items` into dut.i (random valid), take `n_out` items from dut.o (random ready).

    Configuration inputs are set `settle` cycles before the first item. Runs until n_out items
    came out and, to catch extra outputs, 40 more cycles. `read` converts an output payload;
    `prelude(ctx)` runs after the configuration is set (e.g. loading weights).
    """
    rng = np.random.default_rng(seed)
    got: list[Any] = []
    o_ready_driven = isinstance(dut.o.ready, Signal)

    async def bench(ctx):
        for name, value in (config or {}).items():
            ctx.set(getattr(dut, name), value)
        if prelude is not None:
            await prelude(ctx)
        await ctx.tick().repeat(settle)
        idx, idle = 0, 0
        for _ in range(50 * (len(items) + n_out) + 500):
            v = idx < len(items) and rng.random() < valid_prob
            ctx.set(dut.i.valid, v)
            if idx < len(items):
                ctx.set(dut.i.payload, items[idx])
            r = rng.random() < ready_prob
            if o_ready_driven:
                ctx.set(dut.o.ready, r)
            else:
                r = True
            if v and ctx.get(dut.i.ready):
                idx += 1
            if r and ctx.get(dut.o.valid):
                p = ctx.get(dut.o.payload)
                got.append(read(p) if read else p)
            await ctx.tick()
            if len(got) >= n_out and idx >= len(items):
                idle += 1
                if idle > 40:
                    break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.fixture
def stream():
    return run_stream


@pytest.fixture
def ref():
    """The bit-exact reference (deepfpga.quant.reference) the RTL is checked against."""
    from deepfpga.quant import reference

    return reference
