"""A residual network (batch norms, residual adds, a 1×1/2 projection shortcut, average
pooling) through the whole flow: ONNX import, quantization, compilation, the functional
simulator and the accelerator RTL, every tensor bit-exact against the reference executor."""

import json

import numpy as np
import pytest
import torch

from deepfpga.cli import main
from deepfpga.zoo.fmnist_resnet import FmnistResNet


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("residual")
    torch.manual_seed(3)
    m = FmnistResNet(widths=(4, 8, 8)).eval()
    with torch.no_grad():   # batch norms that do something, so folding is exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    torch.onnx.export(m, torch.rand(1, 1, 28, 28), str(d / "rn.onnx"), dynamo=False,
                      input_names=["x"], output_names=["y"])
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.random((8, 1, 28, 28), dtype=np.float32),
             y=rng.integers(0, 10, 8))
    return d


@pytest.mark.slow
def test_residual_network_bit_exact_on_functional_simulator_and_rtl(files, capsys):
    code = main(["run", str(files / "rn.onnx"), "--target", "tiny", "--data",
                 str(files / "data.npz"), "--images", "4", "--calib-size", "8", "--rtl",
                 "--rtl-images", "1", "--out", str(files / "out"), "--json"])
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    hosts = set(s["host_layers"])
    assert sum("Add" in h for h in hosts) == 3       # the adds run on the host (integer rule)
    assert s["bit_exact"]["ok"] is True and s["bit_exact"]["values_compared"] > 0
    assert s["rtl"]["ok"] and s["rtl"]["bit_exact"] and s["rtl"]["saturations_equal"]
    written = {c["written_by"] for c in s["rtl"]["checks"]}
    assert sum("Conv" in w for w in written) == 9    # stem, 3×2 block convs, 2 projections
