"""`deepfpga rtl pe` / `deepfpga rtl synth` argument handling and output."""

from __future__ import annotations

import json

from deepfpga.cli import main


def test_rtl_pe_writes_verilog_from_a_preset(tmp_path, capsys):
    assert main(["rtl", "pe", "--target", "tiny", "-o", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"]["convolvers"] == 4 and info["multipliers"] == 36
    text = (tmp_path / info["verilog"].split("/")[-1]).read_text()
    assert "module deepfpga_pe(" in text
    assert "pix__payload" in text and "w_data" in text


def test_rtl_pe_flags_override(tmp_path, capsys):
    rc = main(["rtl", "pe", "--convolvers", "3", "--bits", "8", "--max-row-width", "20",
               "-o", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "convolvers" in out and "wrote" in out
    files = list(tmp_path.glob("pe_c3_d8_*.v"))
    assert len(files) == 1


def test_rtl_bad_input_exits_2(tmp_path, capsys):
    assert main(["rtl", "pe", "--convolvers", "0", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "convolvers" in err and "Traceback" not in err
    assert main(["rtl", "pe", "--target", "no-such-preset", "-o", str(tmp_path)]) == 2
    assert "no-such-preset" in capsys.readouterr().err


def test_rtl_synth_pe_flags_need_top_pe(capsys):
    # the whole accelerator is the default top; the PE flags apply to --top pe only
    assert main(["rtl", "synth", "--target", "tiny", "--convolvers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--convolvers applies to --top pe only" in err and "Traceback" not in err
    assert main(["rtl", "synth", "--top", "pe", "--timeout", "-1"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_synth_device_in_any_case() -> None:
    from deepfpga.cli import build_parser

    args = build_parser().parse_args(["rtl", "synth", "--target", "zc706", "--device", "XC7Z045"])
    assert args.device == "xc7z045"
