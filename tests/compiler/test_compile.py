"""Tiling, cost model, DDR arrangement and allocation, the compile and disasm commands."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from deepfpga.cli import main
from deepfpga.compiler import Tiling, check_no_overlap, compile_architecture, compile_model
from deepfpga.compiler.compile import architecture_model, plan
from deepfpga.compiler.layout import arrange_weights, pack, unpack
from deepfpga.compiler.tiling import check_tiling, choose
from deepfpga.errors import InputError
from deepfpga.hw.config import PRESETS, load_config
from deepfpga.hw.isa import Buffer, Calc, Load, Save
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.zoo import get, names

TINY = load_config("tiny")


def _net():
    return chain("n", (3, 14, 14), [
        Conv2d("c1", (), in_channels=3, out_channels=6, kernel=(5, 5), padding=(2, 2)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=6, out_channels=5, kernel=(3, 3), stride=(2, 2)),
        Flatten("f", ()), Linear("l1", (), in_features=45, out_features=30), ReLU("r2", ()),
        Linear("l2", (), in_features=30, out_features=7)])


def test_element_packing_round_trip() -> None:
    rng = np.random.default_rng(0)
    for nbytes in (1, 2, 3, 4):
        lo, hi = -(1 << (8 * nbytes - 1)), (1 << (8 * nbytes - 1)) - 1
        v = rng.integers(lo, hi, size=100, endpoint=True)
        v[:2] = lo, hi
        data = pack(v, nbytes)
        assert len(data) == 100 * nbytes
        assert np.array_equal(unpack(data, nbytes), v)
    assert pack(np.array([-2, 258]), 2) == b"\xfe\xff\x02\x01"     # little-endian two's compl.


@pytest.mark.parametrize("seed", range(4))
def test_cost_model_counts_match_the_program(seed: int) -> None:
    """The closed-form model and the generated code agree on bytes and CALCs, and the compute
    cycles agree with the timing simulator's per-instruction formulas."""
    from deepfpga.hw.arch import conv_calc_cycles, fc_calc_cycles

    rng = np.random.default_rng(seed)
    q = random_qmodel(_net(), rng, bw_d=16, bw_w=16)
    model = architecture_model(q.graph, TINY)
    stages = plan(model, TINY).mapping.stages
    force = {}
    for st in stages:
        for _ in range(500):
            if st.kind == "conv":
                ho, wo = st.conv_out
                t = Tiling(int(rng.integers(1, ho + 1)), int(rng.integers(1, wo + 1)),
                           int(rng.integers(1, st.in_channels + 1)),
                           int(rng.integers(1, st.out_channels + 1)),
                           str(rng.choice(["spatial", "weights"])), int(rng.integers(0, 3)))
            else:
                t = Tiling(1, 1, int(rng.integers(1, st.in_channels + 1)),
                           int(rng.integers(1, st.out_channels + 1)),
                           str(rng.choice(["out", "in"])), int(rng.integers(1, 4)))
            if not check_tiling(st, t, TINY):
                force[st.name] = t
                break
    c = compile_model(q, TINY, force=force)
    cfg = TINY
    for d in c.manifest["layers"]:
        a, b = d["instructions"]
        ins = c.program.instructions[a:b]
        fc = d["kind"] == "fc"
        got = {"load_in_bytes": 0, "load_w_bytes": 0, "save_bytes": 0, "calcs": 0,
               "compute_cycles": 0}
        for i in ins:
            if isinstance(i, Load):
                n = i.length * i.n1 * i.n2
                if i.buffer == Buffer.INPUT:
                    got["load_in_bytes"] += n * (cfg.weight_bytes if fc else cfg.data_bytes)
                else:
                    eb = cfg.bias_bytes if i.buffer == Buffer.BIAS else (
                        cfg.data_bytes if fc else cfg.weight_bytes)
                    got["load_w_bytes"] += n * eb
            elif isinstance(i, Save):
                got["save_bytes"] += i.length * i.n1 * i.n2 * cfg.data_bytes
            elif isinstance(i, Calc) and i.to:
                got["calcs"] += 1
                got["compute_cycles"] += (
                    fc_calc_cycles(cfg, i.ti, i.to) if fc else
                    conv_calc_cycles(cfg, i.ti, i.to, i.out_rows, i.out_cols, i.stride,
                                     bool(i.pool)))
        want = {k: d["cost"][k] for k in got}
        assert got == want, (d["name"], d["tiling"])


def test_forced_tiling_checked() -> None:
    q = random_qmodel(_net(), np.random.default_rng(1), bw_d=16, bw_w=16)
    with pytest.raises(InputError, match=r"forced tiling .* for layer 'c1' is infeasible: .*"
                                         r"pooled tiles must have even tr"):
        compile_model(q, TINY, force={"c1": Tiling(3, 14, 3, 6, "spatial", 0)})
    with pytest.raises(InputError, match=r"accumulators \+ 2 staging banks = 1764 > 1500"
                                         r" output-buffer entries"):
        compile_model(q, TINY.replace(output_buffer_bytes=9000),
                      force={"c1": Tiling(14, 14, 3, 6, "spatial", 0)})
    with pytest.raises(InputError, match="unknown stage"):
        compile_model(q, TINY, force={"nope": Tiling(1, 1, 1, 1, "out", 1)})


def test_model_too_big_for_buffers_names_layer_and_minimum() -> None:
    g = chain("big", (4, 10, 10), [Conv2d("conv", (), in_channels=4, out_channels=4,
                                          kernel=(7, 7))])
    cfg = TINY.replace(input_buffer_bytes=64, fc_buffer_bytes=32)
    with pytest.raises(InputError, match=r"layer 'conv' does not fit tiny: it needs at least"
                                         r" 196 bytes of input buffer \(has 64\)"):
        compile_architecture(g, cfg)
    narrow = TINY.replace(max_row_width=4)
    with pytest.raises(InputError, match=r"layer 'conv' needs input rows of at least 7 values;"
                                         r" max_row_width of tiny is 4"):
        compile_architecture(g, narrow)


def test_ddr_image_holds_arranged_weights_and_biases() -> None:
    q = random_qmodel(_net(), np.random.default_rng(2), bw_d=16, bw_w=16)
    c = compile_model(q, TINY)
    regions = {r["name"]: r for r in c.manifest["regions"]}
    image = np.frombuffer(c.ddr_image, dtype=np.uint8)
    for d in c.manifest["layers"]:
        st = next(s for s in plan(architecture_model(q.graph, TINY), TINY).mapping.stages
                  if s.name == d["name"])
        r = regions[f"w:{d['name']}"]
        got = unpack(image[r["start"]:r["start"] + r["size"]], TINY.weight_bytes)
        want = arrange_weights(st, Tiling.from_dict(d["tiling"]), q.weights[d["name"]]["weight"])
        assert np.array_equal(got, want)
        r = regions[f"b:{d['name']}"]
        got = unpack(image[r["start"]:r["start"] + r["size"]], TINY.bias_bytes)
        assert np.array_equal(got, q.weights[d["name"]]["bias"])
    # FC weight blocks are one contiguous DMA run each
    for i in c.program.instructions:
        if isinstance(i, Load) and i.fc_weights and i.buffer == Buffer.INPUT:
            assert i.n2 == 1 and (i.n1 == 1 or i.stride1 == i.length * TINY.weight_bytes)


def test_check_no_overlap_detects_conflicts() -> None:
    c = compile_architecture(_net(), TINY)
    assert check_no_overlap(c.manifest) > 0
    bad = copy.deepcopy(c.manifest)
    fm = [r for r in bad["regions"] if r["kind"] == "fmap"]
    fm[1]["start"] = fm[0]["start"]
    fm[1]["live"] = [fm[0]["live"][0], fm[1]["live"][1]]
    with pytest.raises(InputError, match="overlap while both are live"):
        check_no_overlap(bad)
    bad = copy.deepcopy(c.manifest)
    bad["regions"][0]["size"] = bad["ddr_size"] + 1
    with pytest.raises(InputError, match="outside the"):
        check_no_overlap(bad)


def test_dead_feature_maps_are_reused() -> None:
    c = compile_architecture(get("vgg16"), load_config("zc706-paper"))
    fmaps = [r for r in c.manifest["regions"] if r["kind"] in ("fmap", "input", "output")]
    total = sum(r["size"] for r in fmaps)
    peak = max(sum(r["size"] for r in fmaps if r["live"][0] <= pos <= r["live"][1])
               for pos in range(-1, len(c.manifest["schedule"]) + 1))
    arena = c.manifest["arena"][1] - c.manifest["arena"][0]
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
        assert check_no_overlap(p.regions_manifest()) > 0, name


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
        assert check_no_overlap(c.manifest) > 0
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
        assert check_no_overlap(c.manifest) > 0
        assert c.manifest["partition"]["host"] == []
        x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=g.input_shape)
        sim = simulate(c.program_bytes(), c.ddr_image, c.manifest, cfg, x)
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


def test_cli_compile_qmodel_files_run_bit_exact(tmp_path, capsys) -> None:
    """QMODEL file → compile → the three files, read back (manifest through JSON) → simulate."""
    from deepfpga.hw.config import load_config as _load
    from deepfpga.quant.qfile import save_qmodel
    from deepfpga.quant.reference import execute
    from deepfpga.sim.functional import simulate

    q = random_qmodel(_net(), np.random.default_rng(6), bw_d=16, bw_w=16)
    save_qmodel(tmp_path / "q.npz", q)
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "q.npz"), "--target", "tiny", "-o", str(out)]) == 0
    assert "quantized model" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == "real" and manifest["config"]["hash"] == TINY.hash().hex()
    x = np.random.default_rng(7).integers(-300, 300, size=(2, 3, 14, 14))
    sim = simulate((out / "program.bin").read_bytes(), (out / "ddr.bin").read_bytes(),
                   manifest, _load("tiny"), x)
    assert np.array_equal(sim.outputs["l2"], execute(q, x).outputs["l2"])
