"""Cycle-accurate simulation of a PE running tiles, with amaranth.sim.

`simulate(params, jobs)` builds one PE and runs the jobs back to back in one simulation, following
the documented protocol (docs/rtl.md): wait for idle, set the configuration and pulse `clear`,
load the weights through the weight port, then stream pixels (and partial sums) while taking
outputs. Valid and ready toggle randomly when asked, to exercise back-pressure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError
from deepfpga.rtl.params import PEParams
from deepfpga.rtl.tiles import TileJob, validate_job, weight_words


@dataclass(frozen=True, eq=False)
class TileOutput:
    values: np.ndarray      # int64 outputs in emission order (extra outputs included)
    sat_count: int          # the PE's saturation counter after the tile
    cycles: int             # from the first offered pixel until the PE is idle again


def pack_lanes(values, bits: int) -> int:
    """Lanes packed as one integer, lane 0 in the low bits (the payload's bit order)."""
    mask = (1 << bits) - 1
    word = 0
    for k, v in enumerate(values):
        word |= (int(v) & mask) << (k * bits)
    return word


def pixel_words(job: TileJob, data_bits: int) -> list[int]:
    """The tile's pixels in stream order (row-major), all lanes of one pixel per word."""
    x = np.asarray(job.x, dtype=np.int64)
    c, h, w = x.shape
    flat = x.reshape(c, h * w).T
    return [pack_lanes(row, data_bits) for row in flat]


def config_values(job: TileJob) -> dict[str, int]:
    """The PE's configuration inputs for a job (names of the PE's ports)."""
    t, b, lft, r = job.pad
    return {
        "width": job.x.shape[2], "height": job.x.shape[1],
        "pad_top": t, "pad_bottom": b, "pad_left": lft, "pad_right": r,
        "stride2": int(job.stride == 2),
        "add_psum": int(job.psum is not None),
        "add_bias": int(job.bias is not None),
        "bias": 0 if job.bias is None else int(job.bias),
        "bias_shift": job.bias_shift,
        "finish": int(job.finish), "relu": int(job.relu), "pool": int(job.pool),
        "shift": job.shift,
    }


def simulate(params: PEParams, jobs: list[TileJob], *, seed: int = 0, valid_prob: float = 1.0,
             ready_prob: float = 1.0, max_cycles: int | None = None,
             vcd_path: str | None = None) -> list[TileOutput]:
    """Run `jobs` on one simulated PE; returns one TileOutput per job."""
    from amaranth.sim import Simulator

    from deepfpga.rtl.pe import PE

    for j in jobs:
        validate_job(j, params)
    dut = PE(params)
    rng = np.random.default_rng(seed)
    results: list[TileOutput] = []
    pix_port = dut.pix.payload.as_value()

    async def bench(ctx):
        for job in jobs:
            while ctx.get(dut.busy):
                await ctx.tick()
            for name, value in config_values(job).items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            for addr, wv in enumerate(weight_words(job)):
                ctx.set(dut.w_we, 1)
                ctx.set(dut.w_addr, addr)
                ctx.set(dut.w_data, wv)
                await ctx.tick()
            ctx.set(dut.w_we, 0)
            await ctx.tick().repeat(2)

            pixels = pixel_words(job, params.data_bits)
            psums = [] if job.psum is None else [int(v) for v in np.asarray(job.psum).reshape(-1)]
            limit = max_cycles or 50 * (len(pixels) + job.n_out + 100)
            got: list[int] = []
            pi = si = 0
            cycles = 0
            while len(got) < job.n_out or ctx.get(dut.busy) or pi < len(pixels):
                if cycles >= limit:
                    raise RuntimeError(f"PE simulation stalled: {len(got)}/{job.n_out} outputs,"
                                       f" {pi}/{len(pixels)} pixels after {cycles} cycles")
                pv = pi < len(pixels) and (valid_prob >= 1 or rng.random() < valid_prob)
                sv = si < len(psums) and (valid_prob >= 1 or rng.random() < valid_prob)
                rdy = ready_prob >= 1 or rng.random() < ready_prob
                ctx.set(dut.pix.valid, pv)
                if pv:
                    ctx.set(pix_port, pixels[pi])
                ctx.set(dut.psum.valid, sv)
                if sv:
                    ctx.set(dut.psum.payload, psums[si])
                ctx.set(dut.o.ready, rdy)
                if pv and ctx.get(dut.pix.ready):
                    pi += 1
                if sv and ctx.get(dut.psum.ready):
                    si += 1
                if rdy and ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload))
                await ctx.tick()
                cycles += 1
            ctx.set(dut.pix.valid, 0)
            ctx.set(dut.psum.valid, 0)
            if si != len(psums):
                raise RuntimeError(f"PE took {si} of {len(psums)} partial sums")
            results.append(TileOutput(np.array(got, dtype=np.int64), ctx.get(dut.sat_count),
                                      cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd_path:
        with sim.write_vcd(vcd_path):
            sim.run()
    else:
        sim.run()
    if len(results) != len(jobs):
        raise InputError("simulation ended early")
    return results
