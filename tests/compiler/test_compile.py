"""Tiling, cost model, DDR arrangement and allocation, the compile and disasm commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfpga.cli import main
from deepfpga.compiler import check_no_overlap, compile_architecture, compile_model
from deepfpga.compiler.compile import architecture_model, plan
from deepfpga.compiler.layout import arrange_weights, unpack
from deepfpga.compiler.mapping import ModelInput
from deepfpga.compiler.tiling import choose
from deepfpga.errors import InputError
from deepfpga.hw.config import PRESETS, load_config
from deepfpga.hw.isa import Buffer, Load
from deepfpga.ir import Conv2d, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.zoo import get, names

TINY = load_config("tiny")


def test_model_too_big_for_buffers_names_layer_and_minimum() -> None:
    g = chain("big", (4, 10, 10), [Conv2d("conv", (), in_channels=4, out_channels=4,
                                          kernel=(7, 7))])
    cfg = TINY.replace(input_buffer_bytes=64, fc_buffer_bytes=32)
    with pytest.raises(InputError, match=r"layer 'conv' does not fit tiny: it needs at least"
                                         r" 196 bytes of input buffer \(has 64\)"):
        compile_architecture(g, cfg, space_to_depth="off")
    narrow = TINY.replace(max_row_width=4)
    with pytest.raises(InputError, match=r"layer 'conv' needs input rows of at least 7 values;"
                                         r" max_row_width of tiny is 4"):
        compile_architecture(g, narrow, space_to_depth="off")
    # a first layer on its host-arranged input (4·49 channels of 4×4, a 1×1 layer) fits both
    for c in (cfg, narrow):
        tr = compile_architecture(g, c).manifest.input_transform
        assert tr is not None and tr.shape == (196, 4, 4)


def test_ddr_image_holds_arranged_weights_and_biases(small_net) -> None:
    q = random_qmodel(small_net, np.random.default_rng(2), bw_d=16, bw_w=16)
    c = compile_model(q, TINY)
    regions = {r.name: r for r in c.manifest.regions}
    image = np.frombuffer(c.ddr_image, dtype=np.uint8)
    # the plan's model: the first layer's weights as its input transform rearranges them
    p = plan(ModelInput(q.graph, q.input_format, q.formats, q.weights), TINY)
    assert p.input_transform == c.manifest.input_transform
    for d in c.manifest.layers:
        st = next(s for s in p.mapping.stages if s.name == d.name)
        r = regions[f"w:{d.name}"]
        got = unpack(image[r.start:r.end], TINY.weight_bytes)
        want = arrange_weights(st, d.tiling, p.model.weights[d.name]["weight"])
        assert np.array_equal(got, want)
        r = regions[f"b:{d.name}"]
        got = unpack(image[r.start:r.end], TINY.bias_bytes)
        assert np.array_equal(got, q.weights[d.name]["bias"])
    # FC weight blocks are one contiguous DMA run each
    for i in c.program.instructions:
        if isinstance(i, Load) and i.fc_weights and i.buffer == Buffer.INPUT:
            assert i.n2 == 1 and (i.n1 == 1 or i.stride1 == i.length * TINY.weight_bytes)


def test_dead_feature_maps_are_reused() -> None:
    c = compile_architecture(get("vgg16"), load_config("zc706-paper"))
    fmaps = [r for r in c.manifest.regions if r.kind in ("fmap", "input", "output")]
    total = sum(r.size for r in fmaps)
    peak = max(sum(r.size for r in fmaps if r.first <= pos <= r.last)
               for pos in range(-1, len(c.manifest.schedule) + 1))
    arena = c.manifest.arena[1] - c.manifest.arena[0]
    assert arena < total / 2 and arena <= 1.01 * peak


@pytest.mark.parametrize("preset", PRESETS)
def test_every_zoo_architecture_allocates_without_overlap(preset: str) -> None:
    cfg = load_config(preset)
    for name in names():
        try:
            g = get(name)
        except InputError:      # trained Fashion-MNIST weights not built yet
            continue
        p = plan(architecture_model(g, cfg), cfg)
        assert check_no_overlap(tuple(p.regions.values()), p.ddr_size) > 0, name


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["zc706-paper", "zedboard"])
def test_every_zoo_architecture_compiles(preset: str) -> None:
    cfg = load_config(preset)
    for name in names():
        try:
            g = get(name)
        except InputError:
            continue
        c = compile_architecture(g, cfg)
        assert check_no_overlap(c.manifest.regions, c.manifest.ddr_size) > 0
        assert c.program.instructions[-1].OPCODE.name == "END"


@pytest.mark.parametrize("name", ["fmnist-vgg", "fmnist-alex"])
def test_fmnist_models(name: str) -> None:
    from deepfpga.quant.reference import execute
    from deepfpga.sim.functional import simulate

    try:
        g = get(name)
    except InputError as e:
        pytest.skip(f"{name} not available: {e}")
    rng = np.random.default_rng(4)
    for preset in PRESETS:
        cfg = load_config(preset)
        q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits)
        c = compile_model(q, cfg)
        assert check_no_overlap(c.manifest.regions, c.manifest.ddr_size) > 0
        assert c.manifest.partition.host == ()
        x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=g.input_shape)
        sim = simulate(c, x)
        ref = execute(q, x[None])
        for k, v in sim.outputs.items():
            assert np.array_equal(v, ref.outputs[k][0])


def test_choice_reports_candidates() -> None:
    m = plan(architecture_model(get("vgg16-svd"), load_config("zc706-paper")),
             load_config("zc706-paper")).mapping
    ch = choose(m.stages[1], load_config("zc706-paper"))
    assert ch.feasible > 10 and ch.top[0][0] == ch.tiling
    assert "lowest modelled time" in ch.reason
    assert all(t[1]["cycles"] >= ch.costs["cycles"] * 0.995 for t in ch.top)


# --- command line ---------------------------------------------------------------------------------

def test_cli_compile_and_disasm(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["compile", "vgg11", "--target", "zedboard", "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["compiled"] == "architecture (zero weights)" and info["partition"]["host"]
    for f in ("program.bin", "ddr.bin", "manifest.json"):
        assert (out / f).stat().st_size > 0
    assert main(["disasm", str(out / "program.bin")]) == 0
    text = capsys.readouterr().out
    assert "; layer 0: conv1_1 (conv1_1+relu1_1+pool1) tiling" in text and "CALC  CONV" in text
    n = info["program"]["instructions"]
    assert sum(1 for line in text.splitlines() if line[:1] != ";") == n
    assert main(["disasm", str(out), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing["instructions"]) == n and listing["checked_against"] == "manifest"
    assert main(["disasm", str(out / "program.bin"), "--target", "tiny"]) == 2
    assert "different accelerator configuration" in capsys.readouterr().err


def test_cli_compile_explain_and_errors(tmp_path, capsys) -> None:
    assert main(["compile", "vgg16-svd", "--target", "zc706-paper", "-o", str(tmp_path),
                 "--explain"]) == 0
    text = capsys.readouterr().out
    assert "conv1_2: lowest modelled time" in text and "host layers: prob" in text
    assert main(["compile", "nonexistent-model", "--target", "tiny", "-o", str(tmp_path)]) == 2
    assert main(["compile", "vgg11", "--target", "nope", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "neither a preset" in err
    bad = tmp_path / "program.bin"
    bad.write_bytes(bad.read_bytes()[:-7])
    assert main(["disasm", str(bad)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_cli_compile_qmodel_files_run_bit_exact(tmp_path, capsys, small_net) -> None:
    """QMODEL file → compile → the three files, read back (manifest through JSON) → simulate."""
    from deepfpga.compiler.artifact import load_compiled
    from deepfpga.hw.config import load_config as _load
    from deepfpga.quant.qfile import save_qmodel
    from deepfpga.quant.reference import execute
    from deepfpga.sim.functional import simulate

    q = random_qmodel(small_net, np.random.default_rng(6), bw_d=16, bw_w=16)
    save_qmodel(tmp_path / "q.npz", q)
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "q.npz"), "--target", "tiny", "-o", str(out)]) == 0
    assert "quantized model" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == "real" and manifest["config"]["hash"] == TINY.hash().hex()
    x = np.random.default_rng(7).integers(-300, 300, size=(2, 3, 14, 14))
    sim = simulate(load_compiled(out, _load("tiny")), x)
    assert np.array_equal(sim.outputs["l2"], execute(q, x).outputs["l2"])
