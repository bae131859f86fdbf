"""Each PE component alone, cycle-accurate in amaranth.sim, against the reference arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.rtl.adder_tree import AdderTree, PartialSumAdd
from deepfpga.rtl.convolver import Convolver
from deepfpga.rtl.maxpool import MaxPool
from deepfpga.rtl.padder import Padder
from deepfpga.rtl.params import PEParams
from deepfpga.rtl.shift import DataShift, Relu
from deepfpga.rtl.tiles import layer_formats


def _weight_loader(dut, wt):
    flat = [int(v) for v in np.asarray(wt).reshape(-1)]

    async def load(ctx):
        for k, v in enumerate(flat):
            ctx.set(dut.w_we, 1)
            ctx.set(dut.w_addr, k)
            ctx.set(dut.w_data, v)
            await ctx.tick()
        ctx.set(dut.w_we, 0)

    return load


@pytest.mark.parametrize("seed,stride", [(0, 1), (1, 2), (2, 1), (3, 2)])
def test_convolver_valid_windows(stream, ref, seed, stride):
    rng = np.random.default_rng(seed)
    lanes, d, wb, maxw = 3, 8, 6, 11
    h, w = int(rng.integers(3, 8)), int(rng.integers(3, maxw + 1))
    x = rng.integers(-(1 << (d - 1)), 1 << (d - 1), size=(lanes, h, w))
    wt = rng.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=(lanes, 3, 3))
    x[0, :2, :] = -(1 << (d - 1))                    # most negative × most negative
    wt[0, :, :] = -(1 << (wb - 1))
    dut = Convolver(lanes, d, wb, maxw)
    items = [[int(v) for v in x[:, r, c]] for r in range(h) for c in range(w)]
    want = np.stack([ref.conv_acc(x[None, k:k + 1], wt[None, k:k + 1], stride, 0)[0, 0]
                     for k in range(lanes)])
    n_out = want[0].size
    # Two frames back to back: the counters wrap and the line buffers are reused.
    got = stream(dut, items + items, 2 * n_out,
                 config={"width": w, "height": h, "stride2": int(stride == 2)}, seed=seed,
                 prelude=_weight_loader(dut, wt), read=lambda p: [int(v) for v in p])
    assert len(got) == 2 * n_out
    got = np.array(got).T.reshape((lanes, 2) + want[0].shape)
    assert np.array_equal(got[:, 0], want)
    assert np.array_equal(got[:, 1], want)


def test_convolver_latency_and_rate():
    """One result per cycle once the window is full, `latency` cycles after its pixel."""
    from amaranth.sim import Simulator

    h, w = 5, 6
    dut = Convolver(1, 8, 8, 8)
    seen: list[int] = []

    async def bench(ctx):
        ctx.set(dut.width, w)
        ctx.set(dut.height, h)
        for k in range(9):
            ctx.set(dut.w_we, 1)
            ctx.set(dut.w_addr, k)
            ctx.set(dut.w_data, 1)
            await ctx.tick()
        ctx.set(dut.w_we, 0)
        for cycle in range(h * w + 20):
            ctx.set(dut.i.valid, cycle < h * w)
            ctx.set(dut.i.payload, [1])
            if ctx.get(dut.o.valid):
                seen.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # Pixel (r, c) with r, c >= 2 enters at cycle r·w + c and leaves `latency` cycles later.
    want = [r * w + c + dut.latency for r in range(2, h) for c in range(2, w)]
    assert seen == want


@pytest.mark.parametrize("seed", range(3))
def test_padder_inserts_zeros(stream, seed):
    rng = np.random.default_rng(seed)
    lanes, d, maxw, maxpad = 2, 6, 7, 2
    h, w = int(rng.integers(1, 5)), int(rng.integers(1, maxw + 1))
    pads = [int(v) for v in rng.integers(0, maxpad + 1, size=4)]
    x = rng.integers(-(1 << (d - 1)), 1 << (d - 1), size=(lanes, h, w))
    want = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    dut = Padder(lanes, d, maxw, maxpad)
    items = [[int(v) for v in x[:, r, c]] for r in range(h) for c in range(w)]
    cfg = {"width": w, "height": h, "pad_top": pads[0], "pad_bottom": pads[1],
           "pad_left": pads[2], "pad_right": pads[3]}
    async def clear(ctx):                  # a tile starts with `clear`
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)

    got = stream(dut, items + items, 2 * want[0].size, config=cfg, seed=seed, prelude=clear,
                 read=lambda p: [int(v) for v in p])
    assert len(got) == 2 * want[0].size   # and nothing more: no padding for a third frame
    got = np.array(got).T.reshape((lanes, 2) + want.shape[1:])
    assert np.array_equal(got[:, 0], want)
    assert np.array_equal(got[:, 1], want)


def test_adder_tree_sums_lanes(stream):
    rng = np.random.default_rng(4)
    lanes, bits = 5, 10
    xs = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(40, lanes))
    xs[0] = -(1 << (bits - 1))
    dut = AdderTree(lanes, bits)
    got = stream(dut, [[int(v) for v in row] for row in xs], len(xs), seed=4)
    assert got == [int(v) for v in xs.sum(axis=1)]


@pytest.mark.parametrize("add_psum,add_bias", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_partial_sum_add(ref, add_psum, add_bias):
    from amaranth.sim import Simulator

    rng = np.random.default_rng(add_psum * 2 + add_bias)
    in_bits, acc, bb = 12, 24, 10
    n = 30
    xs = [int(v) for v in rng.integers(-(1 << (in_bits - 1)), 1 << (in_bits - 1), size=n)]
    ps = [int(v) for v in rng.integers(-(1 << 20), 1 << 20, size=n)]
    bias, bshift = -(1 << (bb - 1)), 7
    dut = PartialSumAdd(in_bits, acc, bb)
    got: list[int] = []

    async def bench(ctx):
        for k, v in {"add_psum": add_psum, "add_bias": add_bias, "bias": bias,
                     "bias_shift": bshift}.items():
            ctx.set(getattr(dut, k), v)
        await ctx.tick().repeat(2)
        i = j = 0
        for _ in range(2000):
            iv = i < n and rng.random() < 0.7
            pv = add_psum and j < n and rng.random() < 0.3     # partial sums come late
            r = rng.random() < 0.7
            ctx.set(dut.i.valid, iv)
            ctx.set(dut.i.payload, xs[min(i, n - 1)])
            ctx.set(dut.psum.valid, pv)
            ctx.set(dut.psum.payload, ps[min(j, n - 1)])
            ctx.set(dut.o.ready, r)
            if iv and ctx.get(dut.i.ready):
                i += 1
            if pv and ctx.get(dut.psum.ready):
                j += 1
            if r and ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = np.array(xs, dtype=np.int64)
    if add_psum:
        want = want + np.array(ps)
    if add_bias:
        want = want + (bias << bshift)
    assert got == [int(v) for v in want]


def test_relu(stream):
    xs = [-5, 0, 7, -(1 << 15), (1 << 15) - 1]
    on = stream(Relu(16), xs, len(xs), config={"enable": 1})
    off = stream(Relu(16), xs, len(xs), config={"enable": 0})
    assert on == [max(v, 0) for v in xs]
    assert off == xs


def _accs(rng, a, n):
    lim = 1 << (a - 1)
    v = list(rng.integers(-lim, lim, size=n))
    v += [-lim, lim - 1, 0, 1, -1]
    for k in range(1, a - 1, 3):                     # exact halves: the rounding ties
        v += [(1 << k) + (1 << (k - 1)), -(1 << k) - (1 << (k - 1))]
    return [int(x) for x in v]


@pytest.mark.parametrize("acc_bits,data_bits", [(24, 8), (48, 16)])
def test_data_shift_matches_reference(ref, acc_bits, data_bits):
    """Every shift direction, clamped extremes and ties, against reference.finish."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(acc_bits)
    p = PEParams(convolvers=1, data_bits=data_bits, weight_bits=data_bits, bias_bits=16,
                 acc_bits=acc_bits, max_row_width=32, max_pad=1)
    shifts = sorted({-128, -(data_bits + 3), -data_bits, -3, -1, 0, 1, 2, 5, data_bits,
                     acc_bits - 1, acc_bits, acc_bits + 2, 127})
    accs = _accs(rng, acc_bits, 30)
    dut = DataShift(acc_bits, data_bits)
    got: dict[int, list[tuple[int, int]]] = {}

    async def bench(ctx):
        for bypass in (0, 1):
            for s in shifts:
                ctx.set(dut.shift, s)
                ctx.set(dut.bypass, bypass)
                await ctx.tick().repeat(2)
                out: list[tuple[int, int]] = []
                i = 0
                while len(out) < len(accs):
                    ctx.set(dut.i.valid, i < len(accs))
                    ctx.set(dut.i.payload, accs[min(i, len(accs) - 1)])
                    ctx.set(dut.o.ready, 1)
                    if i < len(accs) and ctx.get(dut.i.ready):
                        i += 1
                    if ctx.get(dut.o.valid):
                        pl = ctx.get(dut.o.payload)
                        out.append((int(pl.value), int(pl.sat)))
                    await ctx.tick()
                ctx.set(dut.i.valid, 0)
                await ctx.tick().repeat(6)
                got[(bypass, s)] = out

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    acc = np.array(accs, dtype=np.int64).reshape(1, 1, 1, -1)
    for s in shifts:
        y, nsat = ref.finish(acc, None, layer_formats(p, 0, s), False)
        vals = [v for v, _ in got[(0, s)]]
        assert vals == [int(v) for v in y.reshape(-1)], f"shift {s}"
        assert sum(f for _, f in got[(0, s)]) == nsat, f"shift {s}"
        assert got[(1, s)] == [(v, 0) for v in accs]


@pytest.mark.parametrize("seed", range(3))
def test_maxpool_matches_reference(stream, ref, seed):
    rng = np.random.default_rng(seed)
    d, maxw = 8, 12
    h, w = int(rng.integers(2, 7)), int(rng.integers(2, maxw + 1))
    y = rng.integers(-(1 << (d - 1)), 1 << (d - 1), size=(h, w))
    want = ref.maxpool_int(y[None, None], 2, 2, 0, False)[0, 0]
    dut = MaxPool(20, d, maxw)
    items = [int(v) for v in y.reshape(-1)]
    cfg = {"width": w, "height": h, "enable": 1}
    got = stream(dut, items + items, 2 * want.size, config=cfg, seed=seed)
    assert got == [int(v) for v in want.reshape(-1)] * 2
    through = stream(MaxPool(20, d, maxw), items, len(items),
                     config={**cfg, "enable": 0}, seed=seed)
    assert through == items
