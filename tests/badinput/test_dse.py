"""`deepfpga dse MODEL --device D`: bad options, space files and results files."""

from __future__ import annotations

import pytest

SPACE = "[axes]\nnum_pe = [1, 2]\n"


@pytest.mark.parametrize("args,match", [
    (["--budget", "0"], "--budget"),
    (["--population", "1"], "--population"),
    (["--margin", "1.5"], "--margin"),
    (["--clock", "0"], "--clock"),
    (["--bits", "4"], "invalid choice"),
    (["--device", "xc9"], "invalid choice"),
    (["--search", "random"], "invalid choice"),
    (["--workers", "2"], "--workers needs --ray"),
    (["--ray-address", "nowhere"], "expected HOST:PORT"),
    (["--ray-address", "127.0.0.1:1"], "cannot reach a Ray cluster there"),
    (["--ddr-gbps", "nan"], "ddr_bandwidth_gbps"),
    (["--base", "nowhere.toml"], "nowhere.toml"),
])
def test_bad_options(args, match, work, refused):
    (work / "s.toml").write_text(SPACE)
    argv = ["dse", "fmnist-vgg", "--device", "xc7z020", "--space", work / "s.toml",
            "-o", work / "out", *args]
    if "--device" in args:
        argv[3] = args[args.index("--device") + 1]
    refused(argv, match)


@pytest.mark.parametrize("text,match", [
    ("[axes]\nclock_mhz = [100]\n", "set by --clock"),
    ("[axes]\nnum_pe = [0]\n", None),      # refused point by point: not an input error
    ("not toml [", "invalid TOML"),
])
def test_bad_space(text, match, work, refused, cli):
    (work / "s.toml").write_text(text)
    argv = ["dse", "fmnist-vgg", "--device", "xc7z020", "--space", work / "s.toml",
            "-o", work / "out", "--json"]
    if match:
        refused(argv, match)
        return
    rc, out, err = cli(argv)
    assert rc == 0, err
    import json

    s = json.loads(out)
    assert s["counts"]["invalid"] == 1 and "num_pe" in s["reasons"]["invalid"]
    assert s["best"] is None and s["front"] == []


def test_no_model_and_unknown_model(work, refused):
    refused(["dse", "nonet", "--device", "xc7z020", "-o", work / "out"], "unknown model")
    refused(["dse", "vgg16-svd", "--device", "xcZU9EG", "-o", work / "out"],
            "no preset targets XCZU9EG")


def test_output_that_is_a_file(work, refused):
    refused(["dse", "fmnist-vgg", "--device", "xc7z020", "-o", work / "existing.npz"],
            "not a directory")


def test_results_of_another_run_are_not_resumed(work, cli, refused):
    (work / "s.toml").write_text(SPACE)
    argv = ["dse", "fmnist-vgg", "--device", "xc7z020", "--space", work / "s.toml",
            "-o", work / "out", "--json"]
    rc, _, err = cli(argv)
    assert rc == 0, err
    keep = [work / "out" / f for f in ("points.jsonl", "summary.json")]
    refused(argv, "exists: pass --resume", keep)
    refused([*argv, "--resume", "--bits", "16"], "cannot resume", keep)
