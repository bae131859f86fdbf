"""Random strided and large-kernel first layers on their space-to-depth rearrangement
(deepfpga.compiler.s2d), on the functional simulator: every tensor, output and saturation count
bit-exact against the reference executor run on the original network."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.compiler import compile_model
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import execute
from deepfpga.sim.functional import simulate

PRESETS = ("tiny", "zedboard", "zc706-8")


def random_first_layer(rng: np.random.Generator, cfg):
    """K 3–11, stride 1–4, padding 0–3 (< K), 1–5 input channels, odd and even sizes, then
    sometimes ReLU, a fused pool, a second 3×3 conv; flatten and an FC layer."""
    k = int(rng.integers(3, 12))
    s = int(rng.integers(1, 5))
    p = int(rng.integers(0, min(k - 1, cfg.max_pad) + 1))
    c = int(rng.integers(1, 6))
    h, w = (int(rng.integers(max(k - 2 * p, 1), k + 20)) for _ in range(2))
    n = int(rng.integers(1, 17))
    layers = [Conv2d("c0", (), in_channels=c, out_channels=n, kernel=(k, k), stride=(s, s),
                     padding=(p, p), bias=bool(rng.random() < 0.8))]
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if rng.random() < 0.7:
        layers.append(ReLU("r0", ()))
    if ho >= 2 and wo >= 2 and rng.random() < 0.4:
        layers.append(MaxPool2d("p0", ()))
        ho, wo = ho // 2, wo // 2
    if ho >= 3 and wo >= 3 and rng.random() < 0.4:
        m = int(rng.integers(1, 9))
        layers.append(Conv2d("c1", (), in_channels=n, out_channels=m, kernel=(3, 3)))
        n, ho, wo = m, ho - 2, wo - 2
    layers += [Flatten("f", ()), Linear("l", (), in_features=n * ho * wo, out_features=5)]
    return chain("first", (c, h, w), layers)


def check(q, compiled, x):
    ref = execute(q, x, keep="all")
    sim = simulate(compiled, x)
    for name, got in sim.layers.items():
        assert np.array_equal(got, ref.layers[name]), name
    for name, got in sim.outputs.items():
        np.testing.assert_array_equal(got, ref.outputs[name], err_msg=name)
    for st in compiled.manifest.layers:
        assert sim.saturations[st.name] == ref.saturations[st.name], st.name
    return sim


@pytest.mark.parametrize(("preset", "seed"), [(p, s) for p in PRESETS for s in range(8)])
def test_random_first_layers_bit_exact(preset: str, seed: int) -> None:
    cfg = load_config(preset)
    rng = np.random.default_rng(9000 + 100 * PRESETS.index(preset) + seed)
    g = random_first_layer(rng, cfg)
    lim = 1 << (cfg.data_bits - 1)
    x = rng.integers(-lim, lim, size=(2, *g.input_shape))
    # every third case: formats calibrated on inputs 16× smaller, so the real ones saturate
    # (the saturation counts must agree too)
    saturating = seed % 3 == 0
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits, jitter=1,
                      x_calib=x // 16 if saturating else None)
    on = compile_model(q, cfg, space_to_depth="on")
    tr = on.manifest.input_transform
    conv = g.layers[0]
    assert tr is not None, conv
    assert on.manifest.layers[0].stride == 1 and on.manifest.layers[0].padding == (0, 0)
    sim = check(q, on, x)
    if saturating:
        assert sim.saturations["c0"] > 0
    off = compile_model(q, cfg, space_to_depth="off")
    assert off.manifest.input_transform is None
    assert simulate(off, x).saturations == sim.saturations
    check(q, compile_model(q, cfg), x)      # whatever the cost model picks


@pytest.mark.parametrize("seed", range(6))
def test_every_variant_bit_exact(seed: int, monkeypatch) -> None:
    """Each rearrangement the compiler may pick (phases, fewer sub-kernels, im2col), forced in
    turn, on random strided large-kernel layers (tiny: 16-bit, zedboard: 8-bit)."""
    from deepfpga.compiler import s2d
    from deepfpga.compiler.compile import architecture_model
    from deepfpga.compiler.mapping import map_network

    cfg = load_config(("tiny", "zedboard")[seed % 2])
    rng = np.random.default_rng(7100 + seed)
    k, s = int(rng.integers(5, 12)), int(rng.integers(2, 5))
    p = int(rng.integers(0, 4))
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(k, k + 14)), int(rng.integers(k, k + 14))
    g = chain("v", (c, h, w), [Conv2d("c0", (), in_channels=c, out_channels=6, kernel=(k, k),
                                      stride=(s, s), padding=(p, p)), ReLU("r0", ())])
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits, jitter=1)
    lim = 1 << (cfg.data_bits - 1)
    x = rng.integers(-lim, lim, size=(2, c, h, w))
    (st,) = s2d.candidates(map_network(architecture_model(g, cfg), cfg))
    trs = s2d.variants(st)
    assert {tr.kind for tr in trs} == {"phases", "samples"}
    for tr in trs:
        monkeypatch.setattr(s2d, "variants", lambda _st, tr=tr: [tr])
        compiled = compile_model(q, cfg, space_to_depth="on")
        assert compiled.manifest.input_transform == tr
        check(q, compiled, x)


def residual_pair(c: int, h: int, n: int, m: int):
    """stem → an identity block (its add and ReLU on the host) → a stride-2 block whose 3×3/2
    and 1×1/2 projection both read the host's ReLU."""
    from deepfpga.ir import INPUT, Add, Graph

    layers = [Conv2d("stem", (INPUT,), in_channels=c, out_channels=n, kernel=(3, 3),
                     padding=(1, 1)), ReLU("stem_r", ("stem",)),
              Conv2d("a_c1", ("stem_r",), in_channels=n, out_channels=n, kernel=(3, 3),
                     padding=(1, 1)), ReLU("a_r1", ("a_c1",)),
              Conv2d("a_c2", ("a_r1",), in_channels=n, out_channels=n, kernel=(3, 3),
                     padding=(1, 1)), Add("a_add", ("a_c2", "stem_r")), ReLU("a_relu", ("a_add",)),
              Conv2d("b_c1", ("a_relu",), in_channels=n, out_channels=m, kernel=(3, 3),
                     stride=(2, 2), padding=(1, 1)), ReLU("b_r1", ("b_c1",)),
              Conv2d("b_c2", ("b_r1",), in_channels=m, out_channels=m, kernel=(3, 3),
                     padding=(1, 1)),
              Conv2d("b_down", ("a_relu",), in_channels=n, out_channels=m, kernel=(1, 1),
                     stride=(2, 2), bias=False),
              Add("b_add", ("b_c2", "b_down")), ReLU("b_relu", ("b_add",)),
              Flatten("f", ("b_relu",)),
              Linear("l", ("f",), in_features=m * ((h - 1) // 2 + 1) ** 2, out_features=3)]
    return Graph("respair", (c, h, h), tuple(layers), ("l",))


@pytest.mark.parametrize(("preset", "seed"), [(p, s) for p in PRESETS for s in range(2)])
def test_strided_layers_on_host_maps_bit_exact(preset: str, seed: int, monkeypatch) -> None:
    """A 3×3/2 and a 1×1/2 that read the host's residual ReLU run on their own rearranged
    copies of it (every variant in turn for the 3×3/2), bit-exact against the reference."""
    from deepfpga.compiler import s2d
    from deepfpga.compiler.compile import plan
    from deepfpga.compiler.mapping import ModelInput

    cfg = load_config(preset)
    rng = np.random.default_rng(8100 + 10 * PRESETS.index(preset) + seed)
    g = residual_pair(int(rng.integers(1, 4)), int(rng.integers(5, 14)),
                      int(rng.integers(2, 9)), int(rng.integers(2, 9)))
    lim = 1 << (cfg.data_bits - 1)
    x = rng.integers(-lim, lim, size=(2, *g.input_shape))
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits, jitter=1,
                      x_calib=x // 8 if seed else None)
    compiled = compile_model(q, cfg, space_to_depth="on")
    by = {t.tensor: t for t in compiled.manifest.host_transforms}
    assert by["b_c1.s2d"].reads == by["b_down.s2d"].reads == "a_relu"
    assert by["b_down.s2d"].offsets == (1, 1)                 # the 1×1/2: a subsample
    assert not compiled.manifest.tensors["a_relu"].on_ddr
    check(q, compiled, x)
    model = ModelInput(q.graph, q.input_format, q.formats, q.weights)
    plain = plan(model, cfg, space_to_depth="off").mapping
    b_c1 = next(st for st in s2d.candidates(plain) if st.name == "b_c1")
    for tr in s2d.variants(b_c1):
        monkeypatch.setattr(s2d, "variants", lambda st, tr=tr: [tr] if st.name == "b_c1"
                            else [])
        c = compile_model(q, cfg, space_to_depth="on")
        assert [t.tensor for t in c.manifest.host_transforms] == ["b_c1.s2d"]
        assert c.manifest.tensors["a_relu"].on_ddr          # b_down still reads it as it is
        check(q, c, x)
