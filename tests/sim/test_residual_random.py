"""Random residual networks (basic blocks with identity or 1×1 strided projection shortcuts, the
residual Add and its ReLU, sometimes average pooling) on the functional simulator, bit-exact
against the reference executor on every preset — the DAG counterpart of test_functional's
random chains."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler import compile_model
from deepfpga.hw.config import PRESETS, load_config
from deepfpga.ir import INPUT, Add, AvgPool2d, Conv2d, Flatten, Graph, Linear, ReLU
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import execute
from deepfpga.sim.functional import simulate


def random_residual(rng: np.random.Generator) -> Graph:
    """stem conv → 1–3 random basic blocks (stride 1 or 2; identity shortcut when the shape
    stays, else a 1×1 projection of that stride; sometimes a shortcut across a second add) →
    maybe a global average pool → flatten → FC."""
    c, h = int(rng.integers(1, 4)), int(rng.integers(6, 15))
    shape = (c, h, h)
    n = int(rng.integers(2, 9))
    layers: list = [Conv2d("stem", (INPUT,), in_channels=c, out_channels=n, kernel=(3, 3),
                           padding=(1, 1), bias=bool(rng.random() < 0.5)),
                    ReLU("stem_relu", ("stem",))]
    x, c = "stem_relu", n
    for b in range(int(rng.integers(1, 4))):
        s = 2 if h >= 4 and rng.random() < 0.4 else 1
        cout = int(rng.integers(2, 9)) if s == 2 or rng.random() < 0.3 else c
        p = f"b{b}_"
        layers += [Conv2d(p + "c1", (x,), in_channels=c, out_channels=cout, kernel=(3, 3),
                          stride=(s, s), padding=(1, 1), bias=bool(rng.random() < 0.7)),
                   ReLU(p + "r1", (p + "c1",)),
                   Conv2d(p + "c2", (p + "r1",), in_channels=cout, out_channels=cout,
                          kernel=(3, 3), padding=(1, 1), bias=bool(rng.random() < 0.7))]
        short = x
        if s != 1 or cout != c:
            layers.append(Conv2d(p + "down", (x,), in_channels=c, out_channels=cout,
                                 kernel=(1, 1), stride=(s, s), bias=bool(rng.random() < 0.5)))
            short = p + "down"
        layers.append(Add(p + "add", (p + "c2", short)))
        x = p + "add"
        if rng.random() < 0.8:
            layers.append(ReLU(p + "relu", (x,)))
            x = p + "relu"
        c, h = cout, (h - 1) // s + 1
    if rng.random() < 0.5:
        layers.append(AvgPool2d("gap", (x,), kernel=(h, h), stride=(h, h)))
        x, h = "gap", 1
    classes = int(rng.integers(2, 11))
    layers += [Flatten("flat", (x,)),
               Linear("fc", ("flat",), in_features=c * h * h, out_features=classes)]
    return Graph("resrand", shape, layers, ("fc",))


CASES = [(preset, seed) for preset in PRESETS for seed in range(3)]


@pytest.mark.parametrize(("preset", "seed"), CASES)
def test_random_residual_networks_bit_exact(preset: str, seed: int) -> None:
    cfg = load_config(preset)
    rng = np.random.default_rng(5000 + 10 * PRESETS.index(preset) + seed)
    g = random_residual(rng)
    assert any(layer.kind == "add" for layer in g.layers) and not g.is_chain()
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits, jitter=1)
    compiled = compile_model(q, cfg)
    fmt = q.input_format
    x = rng.integers(fmt.qmin, fmt.qmax, size=g.input_shape, endpoint=True)
    ref = execute(q, x[None], keep="all")
    sim = simulate(compiled, x)
    adds = [layer.name for layer in g.layers if layer.kind == "add"]
    assert all(a in sim.layers for a in adds), "the residual adds were not compared"
    for name, got in sim.layers.items():
        assert np.array_equal(np.asarray(got), ref.layers[name][0]), f"layer {name} differs"
    for name, got in sim.outputs.items():
        np.testing.assert_array_equal(got, ref.outputs[name][0], err_msg=name)
    for st in compiled.manifest.layers:
        assert sim.saturations[st.name] == ref.saturations[st.name], st.name
