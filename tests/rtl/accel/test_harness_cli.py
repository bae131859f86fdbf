"""`deepfpga rtl build/run` argument handling and the `run --rtl` step plumbing (no RTL run)."""

from __future__ import annotations

import json

import pytest

from deepfpga.cli import main
from deepfpga.rtl.accel import flowstep


def test_rtl_run_refuses_a_non_build_dir(tmp_path, capsys):
    assert main(["rtl", "run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a compiled output directory" in err and "program.bin" in err


def test_rtl_run_refuses_bad_json_and_another_config(tmp_path, capsys):
    from deepfpga.compiler import compile_architecture
    from deepfpga.hw.config import load_config
    from deepfpga.ir import Conv2d, Flatten, Linear, chain

    g = chain("c", (1, 6, 6), [Conv2d("c", (), in_channels=1, out_channels=2, kernel=(3, 3)),
                               Flatten("f", ()), Linear("l", (), in_features=32, out_features=3)])
    compile_architecture(g, load_config("tiny")).write(tmp_path)
    good = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text("{not json")
    assert main(["rtl", "run", str(tmp_path)]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text(json.dumps({**good, "arena": [1]}))
    assert main(["rtl", "run", str(tmp_path)]) == 2
    assert "arena must be a list of 2 integers" in capsys.readouterr().err
    other = {**good, "config": {**good["config"], "hash": "00" * 32}}
    (tmp_path / "manifest.json").write_text(json.dumps(other))
    assert main(["rtl", "run", str(tmp_path)]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_with_rtl_inserts_after_summary():
    steps = (("a", None), ("summary", None), ("report", None))
    out = flowstep.with_rtl(steps, 3)
    assert [n for n, _ in out] == ["a", "summary", "rtl", "report"]
    with pytest.raises(ValueError, match="rtl-images"):
        flowstep.with_rtl(steps, 0)
    with pytest.raises(ValueError, match="summary"):
        flowstep.with_rtl((("a", None),), 1)


def test_html_section():
    assert flowstep.html_section({}) == ""
    s = {"rtl": {"images": 2, "bit_exact": False, "mismatches": 3, "values_compared": 10,
                 "saturations_equal": True, "cycles": 1500, "clock_mhz": 100.0,
                 "seconds_per_image": 0.5, "cpu_seconds_per_image": 0.25,
                 "layers": [{"name": "conv<1>", "kind": "conv", "timing_cycles": 1000,
                             "rtl_cycles": 1500, "ratio": 1.5},
                            {"name": "fc", "kind": "fc", "timing_cycles": None,
                             "rtl_cycles": 0, "ratio": None}],
                 "checks": [{"layer": "conv<1>", "written_by": "conv<1>", "values": 10,
                             "mismatches": 3}]}}
    html = flowstep.html_section(s)
    assert "NOT bit-exact (3 values)" in html and "conv&lt;1&gt;" in html
    assert "<td>1,000</td><td>1,500</td><td>1.50</td>" in html and "0.015 ms" in html
    assert "0.50 s wall (0.25 s CPU)" in html


@pytest.mark.slow
def test_rtl_build_command(tmp_path, capsys):
    pytest.importorskip("deepfpga.rtl.accel.top")
    assert main(["rtl", "build", "--target", "tiny", "-o", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["target"] == "tiny" and info["axi_data_bits"] == 32
    assert (tmp_path / "deepfpga_accel.v").read_text().count("module deepfpga_accel") == 1
    assert (tmp_path / "libdfh.so").stat().st_size > 0
    assert "Verilator 5" in info["verilator"] and info["build_seconds"] >= 0
