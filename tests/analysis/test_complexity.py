"""Complexity analysis: the paper's VGG16 figures, per-layer formulas, and the CLI."""

import json
import textwrap

import pytest

from deepfpga import zoo
from deepfpga.analysis.complexity import analyze
from deepfpga.cli import main
from deepfpga.errors import InputError
from deepfpga.ir import Conv2d, Linear, MaxPool2d, ReLU, chain


def test_vgg16_matches_the_paper():
    rep = analyze(zoo.get("vgg16"))
    conv, fc, total = rep.total("conv"), rep.total("fc"), rep.total()
    assert round(conv.gop, 2) == 30.69
    assert round(fc.gop, 3) == 0.247
    assert round(total.gop, 2) == 30.94
    assert round(total.mparams, 2) == 138.36
    assert round(conv.mparams, 2) == 14.71 and round(fc.mparams, 2) == 123.64
    # CONV ~99% of the operations, FC ~89% of the weights (paper §4)
    assert round(conv.ops_share, 3) == 0.992 and round(fc.params_share, 3) == 0.894
    assert conv.layers == 13 and fc.layers == 3 and total.ops == 2 * total.macs


def test_vgg16_svd_matches_the_paper():
    rep = analyze(zoo.get("vgg16-svd"))
    assert round(rep.total().gop, 2) == 30.76
    assert round(rep.total("fc").gop, 4) == 0.0709
    fc6 = analyze(zoo.get("vgg16")).row("fc6")
    a, b = rep.row("fc6a"), rep.row("fc6b")
    weights_after = a.params + b.params - 4096  # fc6b's bias is fc6's bias
    assert round(100 * (1 - weights_after / (fc6.params - 4096)), 1) == 85.8


def test_per_layer_formulas_and_bytes():
    g = chain("t", (3, 10, 10), [
        Conv2d("c", (), in_channels=3, out_channels=4, kernel=(3, 3), padding=(1, 1)),
        ReLU("r", ()),
        MaxPool2d("p", (), kernel=(2, 2), stride=(2, 2)),
        Conv2d("c2", (), in_channels=4, out_channels=2, kernel=(1, 1), bias=False),
    ])
    rep = analyze(g, bits=8)
    c = rep.row("c")
    assert c.macs == 3 * 3 * 3 * 4 * 10 * 10 and c.ops == 2 * c.macs
    assert c.params == 4 * 3 * 9 + 4 and c.weight_bytes == c.params
    assert c.input_bytes == 300 and c.output_bytes == 400 and c.output_shape == (4, 10, 10)
    p = rep.row("p")
    assert p.macs == 0 and p.category == "other" and p.output_bytes == 100
    assert rep.row("c2").params == 8
    rep16 = analyze(g, bits=16)
    assert rep16.row("c").weight_bytes == 2 * c.weight_bytes
    assert rep.total("other").layers == 2 and rep.total().layers == 4


def test_fc_rows():
    g = chain("f", (10,), [Linear("fc", (), in_features=10, out_features=3)])
    row = analyze(g, bits=4).row("fc")
    assert row.macs == 30 and row.params == 33 and row.weight_bytes == 16.5


def test_bad_bits():
    for bits in (0, 65, 2.5, True):
        with pytest.raises(InputError, match="bits"):
            analyze(zoo.get("vgg11"), bits=bits)


def test_report_dict_is_json():
    d = analyze(zoo.get("alexnet")).to_dict()
    assert json.loads(json.dumps(d))["totals"]["total"]["layers"] == len(d["layers"])


def test_cli_table(capsys):
    assert main(["analyze", "vgg16"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("conv1_1 ") for line in lines)
    conv = next(line for line in lines if line.startswith("CONV"))
    assert "30.6933" in conv and "99.2" in conv
    total = next(line for line in lines if line.startswith("total"))
    assert "30.9405" in total and "138.358" in total
    # aligned: every row of the layer table has the header's width or less
    header = next(line for line in lines if line.startswith("layer"))
    assert header.index("kind") == lines[lines.index(header) + 2].index("conv ")


def test_cli_json(capsys):
    assert main(["analyze", "vgg16-svd", "--bits", "8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)  # nothing but JSON on stdout
    assert d["bits"] == 8 and d["model"] == "vgg16-svd"
    assert round(d["totals"]["total"]["ops"] / 1e9, 2) == 30.76


UNSUPPORTED = """
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(torch.sigmoid(x))

def make():
    return Net()
"""


def test_cli_unsupported_model_exits_2_naming_nodes(tmp_path, monkeypatch, capsys):
    (tmp_path / "h1_unsup_mod.py").write_text(textwrap.dedent(UNSUPPORTED))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["analyze", "h1_unsup_mod:make", "--input-shape", "3,8,8"]) == 2
    err = capsys.readouterr().err
    assert "sigmoid (sigmoid)" in err and "act (GELU)" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_bad_input_exits_2(capsys):
    assert main(["analyze", "nosuchnet"]) == 2
    assert "known" not in capsys.readouterr().out
    assert main(["analyze", "vgg16", "--bits", "0"]) == 2
    assert "bits" in capsys.readouterr().err
