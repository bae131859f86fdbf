"""Space-to-depth layers (deepfpga.compiler.s2d) on the accelerator RTL under Verilator: the
driver writes the input (and a host layer's result) as the manifest's transforms ask, and every
tensor, output and saturation count is bit-exact against the reference executor and the
functional simulator."""

from __future__ import annotations

import numpy as np
import pytest
from tests.rtl.accel.test_harness_programs import check_bit_exact

from deepfpga.compiler import compile_model, s2d
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel

TINY = load_config("tiny")

# (preset, C, H, W, kernel, stride, padding, variant): an AlexNet-like 11×11/4 on its phases, a
# ResNet-like 7×7/2 on 2×3 samples, a 5×5/2 as im2col (a CONV1), a 5×5/3 on odd sizes
CASES = [("tiny", 3, 27, 23, 11, 4, 0, "phases"), ("tiny", 3, 17, 19, 7, 2, 3, "samples"),
         ("tiny", 2, 13, 15, 5, 2, 1, "im2col"), ("zedboard", 2, 21, 16, 5, 3, 2, "phases")]


def _is(t: s2d.InputTransform, variant: str, k: int) -> bool:
    return t.offsets == (k, k) if variant == "im2col" else t.kind == variant


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "c", "h", "w", "k", "s", "p", "variant"), CASES)
def test_first_layer_on_its_rearranged_input(accel_build, monkeypatch, preset: str, c: int,
                                             h: int, w: int, k: int, s: int, p: int,
                                             variant: str) -> None:
    cfg = load_config(preset)
    g = chain("s2d", (c, h, w), [
        Conv2d("c1", (), in_channels=c, out_channels=5, kernel=(k, k), stride=(s, s),
               padding=(p, p)), ReLU("r1", ()), MaxPool2d("p1", ()), Flatten("f", ()),
        Linear("l", (), in_features=5 * (((h + 2 * p - k) // s + 1) // 2)
               * (((w + 2 * p - k) // s + 1) // 2), out_features=4)])
    rng = np.random.default_rng(k)
    lim = 1 << (cfg.data_bits - 1)
    x = rng.integers(-lim, lim, size=(2, c, h, w))
    # formats calibrated on smaller inputs: the real ones saturate somewhere
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits, x_calib=x // 4)
    pick = s2d.variants
    monkeypatch.setattr(s2d, "variants", lambda st: [t for t in pick(st) if _is(t, variant, k)])
    compiled = compile_model(q, cfg, space_to_depth="on")
    tr = compiled.manifest.input_transform
    assert tr is not None and _is(tr, variant, k)
    res = check_bit_exact(accel_build, q, compiled, x, cfg)
    assert res.saturations["c1"] > 0


@pytest.mark.slow
def test_strided_layers_on_a_host_map(accel_build) -> None:
    """A residual block's 3×3/2 and 1×1/2 projection reading the host's ReLU: the driver writes
    each its rearranged copy after the host step, bit-exact on the RTL (`tiny`)."""
    from tests.sim.test_s2d import residual_pair

    g = residual_pair(2, 9, 4, 5)
    rng = np.random.default_rng(31)
    x = rng.integers(-2**15, 2**15, size=(1, 2, 9, 9))
    q = random_qmodel(g, rng, bw_d=16, bw_w=16, x_calib=x // 8)
    compiled = compile_model(q, TINY, space_to_depth="on")
    assert [t.reads for t in compiled.manifest.host_transforms].count("a_relu") == 2
    check_bit_exact(accel_build, q, compiled, x)
