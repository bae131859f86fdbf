"""`deepfpga run` and the flow behind it, end to end on a tiny random-weight model."""

import base64
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from deepfpga import pipeline as flow
from deepfpga.cli import main
from deepfpga.frontends.float_model import save_float_model
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.bits import bit_plan, check_bits_fit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_graph(seed: int = 0):
    """conv-relu-pool ×2, fc-relu, fc: 1×12×12 → 10 classes, He-initialised random weights."""
    rng = np.random.default_rng(seed)
    layers = [Conv2d("c1", (), 1, 4, 3, 1, 1), ReLU("r1", ()), MaxPool2d("p1", ()),
              Conv2d("c2", (), 4, 8, 3, 1, 1), ReLU("r2", ()), MaxPool2d("p2", ()),
              Flatten("flat", ()), Linear("fc1", (), 72, 16), ReLU("r3", ()),
              Linear("fc2", (), 16, 10)]

    def he(shape, fan):
        return (rng.standard_normal(shape) * np.sqrt(2 / fan)).astype(np.float32)

    params = {"c1": {"weight": he((4, 1, 3, 3), 9), "bias": np.full(4, 0.05, np.float32)},
              "c2": {"weight": he((8, 4, 3, 3), 36), "bias": he((8,), 36) * 0.1},
              "fc1": {"weight": he((16, 72), 72), "bias": he((16,), 72) * 0.1},
              "fc2": {"weight": he((10, 16), 16), "bias": np.zeros(10, np.float32)}}
    return chain("tiny-run", (1, 12, 12), layers, params)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(1)
    save_float_model(tiny_graph(), d / "tiny.npz")
    np.savez(d / "data.npz", x=rng.random((12, 1, 12, 12), dtype=np.float32),
             y=rng.integers(0, 10, 12))
    return d


def _args(files: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(files / "tiny.npz"), "--target", "tiny", "--data",
            str(files / "data.npz"), "--images", "10", "--calib-size", "8", "--batch-size", "4",
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def state(files):
    cfg = flow.RunConfig(model=str(files / "tiny.npz"), target="tiny",
                         data=str(files / "data.npz"), images=10, calib_size=8, batch_size=4,
                         out=files / "api-out")
    return flow.run_flow(cfg)


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                                                    html)]


def test_flow_records_every_step(state):
    assert [r.name for r in state.steps] == [name for name, _ in flow.STEPS]
    assert all(r.seconds >= 0 for r in state.steps)


def test_flow_is_bit_exact_and_checks_every_stage(state):
    sim = state.sim
    assert sim.bit_exact and sim.mismatches == 0
    stages = state.compiled.manifest.layers
    checked = {c.tensor for c in sim.checks}
    assert {d.output for d in stages} <= checked
    # every value of every image was compared: sizes follow from the shapes
    shapes = state.qmodel.graph.shapes()
    for c in sim.checks:
        assert c.values == 10 * int(np.prod(shapes[c.tensor]))


def test_simulated_accuracy_equals_the_reference_executor(state):
    from deepfpga.quant.evaluate import evaluate

    ref = evaluate(state.qmodel, state.test.x, state.test.y)
    assert (state.sim.correct1, state.sim.correct5) == (ref.correct1, ref.correct5)
    flt = evaluate(state.graph, state.test.x, state.test.y)
    s = state.summary
    assert s["accuracy"]["float"]["correct1"] == flt.correct1
    assert s["accuracy"]["simulated"]["top1"] == pytest.approx(ref.top1)


def test_summary_layer_rows_are_consistent(state):
    s = state.summary
    t = state.timing
    assert [r["name"] for r in s["layers"]] == [lt.name for lt in t.layers]
    for r in s["layers"]:
        parts = sum(r["split_ms"].values())
        assert parts == pytest.approx(r["latency_ms"], rel=1e-9, abs=1e-12)
        assert r["bit_exact"] is True
        assert r["tiling"]
        assert 0 <= r["utilisation"] <= 1
        assert 0 < r["slot_utilisation"] <= 1
        assert r["slot_utilisation"] + sum(r["lost_causes"].values()) == pytest.approx(1.0)
        assert r["why_not_100"]
    assert sum(r["latency_ms"] for r in s["layers"]) <= s["performance"]["frame_ms"] + 1e-9
    assert s["performance"]["fps"] == pytest.approx(1e3 / s["performance"]["frame_ms"])


def test_report_files(state):
    out = state.files["report"].parent
    html = (out / "report.html").read_text()
    assert '<table id="layers">' in html
    for name in ("c1", "c2", "fc1", "fc2"):
        assert f"<td>{name}</td>" in html
    imgs = _images(html)
    assert len(imgs) == 2 and all(i.startswith(PNG_MAGIC) for i in imgs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bit_exact"]["ok"] is True
    assert [s["name"] for s in summary["steps"]] == [n for n, _ in flow.STEPS[:-1]]


def test_cli_json(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(files, out, "--json")) == 0
    cap = capsys.readouterr()
    data = json.loads(cap.out)  # stdout holds only JSON
    assert data["bit_exact"]["ok"] is True and data["bit_exact"]["mismatches"] == 0
    assert data["bit_exact"]["values_compared"] > 0
    assert all(r["bit_exact"] for r in data["layers"])
    assert data["accuracy"]["images"] == 10
    assert {"top1", "top5"} <= set(data["accuracy"]["simulated"])
    assert data["performance"]["fps"] > 0 and data["performance"]["gops"] > 0
    assert Path(data["files"]["report"]) == out / "report.html"
    html = (out / "report.html").read_text()
    assert '<table id="layers">' in html and len(_images(html)) == 2
    assert json.loads((out / "summary.json").read_text())["layers"] == data["layers"]


def test_cli_mismatch_exits_1_and_still_reports(files, tmp_path, capsys, monkeypatch):
    import deepfpga.sim.functional as functional

    real = functional.simulate

    def faulty(*a, **k):
        res = real(*a, **k)
        layers = dict(res.layers)
        y = layers["p2"].copy()
        y[0, 1, 2, 0] += 1  # one wrong value in the second stage's output
        layers["p2"] = y
        return dataclasses.replace(res, layers=layers)

    monkeypatch.setattr(functional, "simulate", faulty)
    out = tmp_path / "bad"
    assert main(_args(files, out, "--json")) == 1
    cap = capsys.readouterr()
    data = json.loads(cap.out)
    assert data["bit_exact"]["ok"] is False
    # one value per batch of 4 images: 3 batches
    bad = {c["layer"]: c["mismatches"] for c in data["bit_exact"]["layers"]}
    assert bad["p2"] == 3 and sum(bad.values()) == 3
    assert "p2: 3 of" in cap.err and "image 0 at [1, 2, 0]" in cap.err
    assert [r["bit_exact"] for r in data["layers"]] == [True, False, True, True]
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("extra, needle", [
    (["--images", "0"], "--images"),
    (["--images", "-3"], "--images"),
    (["--calib-size", "0"], "--calib-size"),
    (["--target", "no-such-board"], "no-such-board"),
    (["--bits", "16", "--target", "zedboard"], "zedboard"),
])
def test_bad_input_exits_2(files, tmp_path, capsys, extra, needle):
    args = _args(files, tmp_path / "o")
    # later flags override earlier ones in argparse
    try:
        code = main([*args, *extra])
    except SystemExit as e:  # argparse refuses bad numbers itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_exits_2(files, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert main(_args(files, f)) == 2
    assert "not a directory" in capsys.readouterr().err


def test_unknown_model_exits_2(files, tmp_path, capsys):
    code = main(["run", "no-such-model", "--data", str(files / "data.npz"), "--out",
                 str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "fmnist-vgg" in err


def test_run_config_refuses_bad_numbers():
    with pytest.raises(flow.InputError, match="images"):
        flow.RunConfig(images=0)
    with pytest.raises(flow.InputError, match="batch-size"):
        flow.RunConfig(batch_size=-1)


@pytest.mark.slow
def test_default_run_on_fmnist_vgg(tmp_path, capsys):
    """The README's main job with very few images: fmnist-vgg, Fashion-MNIST, zedboard."""
    from deepfpga.zoo.fmnist import weights_path

    if not weights_path("fmnist-vgg").is_file():
        pytest.skip("fmnist-vgg weights are not built yet")
    out = tmp_path / "out"
    assert main(["run", "--images", "8", "--calib-size", "32", "--out", str(out),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["name"] == "fmnist-vgg" and data["target"]["name"] == "zedboard"
    assert data["bit_exact"]["ok"] is True
    assert data["accuracy"]["simulated"]["top1"] >= 0.5
    assert (out / "report.html").is_file()


def test_bit_plan_narrows_biases_to_the_target(tmp_path):
    from importlib import resources

    from deepfpga.hw.config import load_config
    from deepfpga.quant.flow import quantize

    text = resources.files("deepfpga.hw.presets").joinpath("tiny.toml").read_text()
    toml = tmp_path / "narrow.toml"
    toml.write_text(text.replace("bias_bits = 16", "bias_bits = 12"))
    hw = load_config(toml)
    g = tiny_graph()
    assert bit_plan(g, "8", hw) == {}  # 8-bit biases fit
    plan = bit_plan(g, "16", hw)
    assert plan == {name: {"bias_bits": 12} for name in ("c1", "c2", "fc1", "fc2")}
    rng = np.random.default_rng(2)
    q = quantize(g, rng.random((4, 1, 12, 12), dtype=np.float32), bits="16", overrides=plan)
    assert {q.formats[n].bias.bw for n in plan} == {12}
    with pytest.raises(flow.InputError, match="zedboard"):
        check_bits_fit("16", load_config("zedboard"))
