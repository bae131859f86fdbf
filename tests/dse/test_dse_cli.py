"""`deepfpga dse` end to end on a small network: the front, the best point as a target that
loads, compiles, runs bit-exact and has RTL parameters; determinism; Ctrl-C and --resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfpga.cli import main


def dse(capsys, *args) -> tuple[int, dict | None, str]:
    rc = main(["dse", "fmnist-vgg", "--device", "xc7z020", "--json", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


@pytest.mark.slow
def test_small_space_is_searched_exhaustively(small_space, tmp_path, capsys):
    from deepfpga.compiler import compile_architecture, compile_model
    from deepfpga.hw.config import load_config
    from deepfpga.models import load_model
    from deepfpga.quant.random_model import random_qmodel
    from deepfpga.rtl.params import PEParams
    from deepfpga.sim.check import check_bit_exact
    from deepfpga.sim.timing import simulate_timing

    out = tmp_path / "out"
    rc, s, err = dse(capsys, "--space", small_space, "-o", out)
    assert rc == 0, err
    c = s["counts"]
    assert s["search"]["strategy"] == "exhaustive"
    assert c["evaluated"] + c["invalid"] + c["no-fit"] == 12 and c["ok"] >= 6
    points = (out / "points.jsonl").read_text().splitlines()
    assert len(points) == 1 + c["evaluated"] + len([p for p in s["presets"] if p["fps"]])
    # the best point is the fastest, and on the front
    fastest = max(p["fps"] for p in s["points"])
    assert s["best"]["fps"] == fastest == s["front"][0]["fps"]
    assert [p["name"] for p in s["presets"]] == ["zedboard"] and s["presets"][0]["fps"] > 0
    html = (out / "dse.html").read_text()
    assert "Pareto front" in html and "data:image/png;base64," in html

    # best.toml: a target that loads back to the same config and gives the same timing
    cfg = load_config(out / "best.toml")
    assert cfg.to_dict() | {"name": "", "notes": {}} == s["best"]["config"] | {"name": "",
                                                                               "notes": {}}
    graph = load_model("fmnist-vgg")
    t = simulate_timing(compile_architecture(graph.without_weights(), cfg))
    assert t.fps == s["best"]["fps"]
    # ... compiles a quantized model that runs bit-exact on the functional simulator
    rng = np.random.default_rng(2)
    q = random_qmodel(graph, rng, 8, 8)
    x = rng.random((2, *graph.input_shape), dtype=np.float32)
    r = check_bit_exact(q, compile_model(q, cfg), x, np.zeros(2, np.int64), 2)
    assert r.bit_exact and r.values_compared > 0
    # ... and gives the PE parameters `rtl synth --target` builds
    assert PEParams.from_config(cfg).multipliers == 9 * cfg.convolvers_per_pe


def test_human_output(small_space, tmp_path, capsys):
    rc = main(["dse", "fmnist-vgg", "--device", "xc7z020", "--space", str(small_space),
               "-o", str(tmp_path / "o")])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "exhaustive search over 12 points" in out and "Pareto front" in out
    assert "zedboard" in out and "best.toml" in out


def keys(s: dict) -> list[str]:
    return [r["key"] for r in s["front"]]


@pytest.mark.slow
def test_genetic_search_is_deterministic_for_a_seed(ga_space, tmp_path, capsys):
    args = ("--space", ga_space, "--budget", 14, "--population", 6, "--search", "genetic")
    _, a, _ = dse(capsys, *args, "--seed", 1, "-o", tmp_path / "a")
    _, b, _ = dse(capsys, *args, "--seed", 1, "-o", tmp_path / "b")
    _, c, _ = dse(capsys, *args, "--seed", 2, "-o", tmp_path / "c")
    assert a["counts"]["evaluated"] == 14 and a["search"]["generations"] == 3
    assert keys(a) == keys(b) and [r["fps"] for r in a["front"]] == [r["fps"] for r in b["front"]]
    assert {p["key"] for p in a["points"]} != {p["key"] for p in c["points"]}


@pytest.mark.slow
def test_interrupted_sweep_keeps_its_points_and_resumes_to_the_same_front(ga_space, tmp_path,
                                                                          capsys, monkeypatch):
    args = ("--space", ga_space, "--budget", 14, "--population", 6, "--seed", 3)
    _, whole, _ = dse(capsys, *args, "-o", tmp_path / "whole")

    from deepfpga.dse import explore

    real, calls = explore.evaluate_config, []

    def interrupted(graph, config):
        if len(calls) == 8:
            raise KeyboardInterrupt
        calls.append(1)
        return real(graph, config)

    monkeypatch.setattr(explore, "evaluate_config", interrupted)
    out = tmp_path / "cut"
    rc, _, err = dse(capsys, *args, "-o", out)
    assert rc == 130 and err.strip() == "deepfpga dse: interrupted"
    assert len((out / "points.jsonl").read_text().splitlines()) == 1 + 8
    partial = json.loads((out / "summary.json").read_text())
    assert partial["interrupted"] and partial["counts"]["evaluated"] == 8
    assert not (out / "best.toml").exists()

    monkeypatch.setattr(explore, "evaluate_config", real)
    rc, resumed, err = dse(capsys, *args, "-o", out, "--resume")
    assert rc == 0, err
    assert resumed["counts"]["from_file"] == 8 and resumed["search"]["resumed_points"] == 8
    assert keys(resumed) == keys(whole) and resumed["best"] == whole["best"]
