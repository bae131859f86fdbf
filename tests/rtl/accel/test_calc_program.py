"""The CALCs of compiled programs (`tiny`) on the Datapath, each on the buffer state the
functional simulator reaches before it, bit-exact after it: conv 3×3 + ReLU + pool and FC with
forced tiles; a 7×7 stride-2 conv (decomposed, koff), a 1×1 conv and a 5×5 conv on an odd map
with the compiler's own tiles."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler import Tiling, compile_model
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.rtl.accel import calc_check as cc


@pytest.mark.slow
def test_compiled_program_calcs_bit_exact():
    cfg = load_config("tiny")
    rng = np.random.default_rng(5)
    layers = [Conv2d("conv", (), in_channels=3, out_channels=6, kernel=(3, 3), padding=(1, 1)),
              ReLU("relu", ()), MaxPool2d("pool", ()), Flatten("flat", ()),
              Linear("fc", (), in_features=6 * 5 * 5, out_features=7)]
    q = random_qmodel(chain("p", (3, 10, 10), layers), rng, bw_d=16, bw_w=16)
    comp = compile_model(q, cfg, force={"conv": Tiling(4, 10, 2, 4, "spatial", 0)})
    x = rng.integers(-500, 500, size=(3, 10, 10))
    calcs = cc.program_calcs(comp, x)
    kinds = {c.kind for _, c, _ in calcs}
    assert kinds == {0, 1} and any(c.pool and c.finalize for _, c, _ in calcs)
    got = cc.simulate(cfg, [(s, c) for s, c, _ in calcs])
    for (_, ins, want), r in zip(calcs, got, strict=True):
        assert r.error == 0, ins
        assert np.array_equal(r.out, want.out), ins
        assert r.sat == want.sat, ins


@pytest.mark.slow
def test_compiled_decomposed_kernels_bit_exact():
    cfg = load_config("tiny")
    rng = np.random.default_rng(4)
    g = chain("k", (2, 15, 15), [
        Conv2d("c7", (), in_channels=2, out_channels=3, kernel=(7, 7), stride=(2, 2),
               padding=(1, 1)),
        ReLU("r", ()),
        Conv2d("c1", (), in_channels=3, out_channels=4, kernel=(1, 1)),
        Conv2d("c5", (), in_channels=4, out_channels=2, kernel=(5, 5), padding=(2, 2)),
        Flatten("f", ()), Linear("l", (), in_features=2 * 6 * 6, out_features=3)])
    q = random_qmodel(g, rng, bw_d=16, bw_w=16)
    comp = compile_model(q, cfg, space_to_depth="off")   # the 3×3 sub-kernels, stride 2
    x = rng.integers(-500, 500, size=(2, 15, 15))
    calcs = cc.program_calcs(comp, x)
    assert any(c.koff_x for _, c, _ in calcs) and any(c.stride == 2 for _, c, _ in calcs)
    got = cc.simulate(cfg, [(s, c) for s, c, _ in calcs])
    for (_, ins, want), r in zip(calcs, got, strict=True):
        assert r.error == 0, ins
        assert np.array_equal(r.out, want.out), ins
        assert r.sat == want.sat, ins
