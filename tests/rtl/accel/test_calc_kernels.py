"""Kernels the compiler decomposes (5×5, 7×7 stride 2, 11×11 stride 4, 1×1) as sequences of
3×3 CALCs with koff, run back to back on the Datapath, against the reference executor's
convolution directly (quant.reference.conv_acc), and an FC layer in blocks against fc_acc."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Calc, CalcKind
from deepfpga.quant.reference import conv_acc, fc_acc
from deepfpga.rtl.accel import calc_check as cc

CFG = load_config("tiny").replace(
    name="kernels", num_pe=2, convolvers_per_pe=8, data_bits=8, weight_bits=8, bias_bits=8,
    acc_bits=28, max_row_width=16, input_buffer_bytes=512, weight_buffer_bytes=1024,
    bias_buffer_bytes=16, output_buffer_bytes=4 * 300, fc_buffer_bytes=512)


@pytest.mark.slow
@pytest.mark.parametrize("k,stride,pad,size", [(7, 2, 1, 11), (11, 4, 2, 15), (5, 1, 2, 9),
                                               (1, 1, 0, 6)])
def test_decomposed_kernel_matches_reference(k, stride, pad, size):
    rng = np.random.default_rng(k)
    ti, to = 2, 3
    x = rng.integers(-128, 128, (1, ti, size, size))
    w = rng.integers(-128, 128, (to, ti, k, k))
    want = conv_acc(x, w, stride, pad)[0]                       # (to, Ho, Wo)
    ho, wo = want.shape[1:]
    sb = -(-k // 3)
    w9 = np.zeros((to, ti, 3 * sb, 3 * sb), dtype=np.int64)
    w9[:, :, :k, :k] = w
    state = cc.random_state(rng, CFG)
    inp, wgt = state.inp.copy(), state.wgt.copy()
    inp[:x.size] = x.reshape(-1)
    calcs = []
    for j in range(sb * sb):
        jy, jx = divmod(j, sb)
        sub = w9[:, :, 3 * jy:3 * jy + 3, 3 * jx:3 * jx + 3].reshape(-1)
        wgt[j * sub.size:(j + 1) * sub.size] = sub
        calcs.append(Calc(ti=ti, to=to, in_rows=size, in_cols=size, out_rows=ho, out_cols=wo,
                          stride=stride, pad_top=pad, pad_left=pad, koff_y=3 * jy,
                          koff_x=3 * jx, wb_addr=j * sub.size, ob_addr=5,
                          accumulate=int(j > 0)))
    start = cc.BufferState(inp, wgt, state.bias, state.out)
    got = cc.simulate(CFG, [(start, c) for c in calcs], chain=True)
    assert all(r.error == 0 for r in got)
    acc = got[-1].out[5:5 + want.size].reshape(want.shape)
    assert np.array_equal(acc, want)


def test_fc_in_blocks_matches_reference():
    """An FC layer of 37 inputs and 5 outputs as two input blocks (accumulating) of weights
    loaded densely per block, as the compiler emits them."""
    rng = np.random.default_rng(9)
    f_in, f_out = 37, 5
    v = rng.integers(-128, 128, (1, f_in))
    w = rng.integers(-128, 128, (f_out, f_in))
    want = fc_acc(v, w)[0]
    state = cc.random_state(rng, CFG)
    inp, wgt = state.inp.copy(), state.wgt.copy()
    wgt[:f_in] = v[0]
    blocks = [(0, 20), (20, 37)]
    calcs, base = [], 0
    for n, (a, b) in enumerate(blocks):
        inp[base:base + f_out * (b - a)] = w[:, a:b].reshape(-1)
        calcs.append(Calc(kind=CalcKind.FC, ti=b - a, to=f_out, ib_addr=base, wb_addr=a,
                          ob_addr=3, accumulate=int(n > 0)))
        base += f_out * (b - a)
    got = cc.simulate(CFG, [(cc.BufferState(inp, wgt, state.bias, state.out), c)
                            for c in calcs], chain=True)
    assert np.array_equal(got[-1].out[3:3 + f_out], want)
