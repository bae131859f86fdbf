"""Small quantized models and ONNX files shared by the interchange tests."""

import numpy as np
import pytest
import torch
from torch import nn

from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel


def tiny_graph():
    layers = [Conv2d("c1", (), 1, 4, 3, 1, 1), ReLU("r1", ()), MaxPool2d("p1", ()),
              Conv2d("c2", (), 4, 8, 3, 2, 1), ReLU("r2", ()),
              Flatten("flat", ()), Linear("fc1", (), 8 * 3 * 3, 16), ReLU("r3", ()),
              Linear("fc2", (), 16, 10)]
    return chain("tiny-q", (1, 12, 12), layers)


@pytest.fixture(scope="session")
def qmodel():
    return random_qmodel(tiny_graph(), np.random.default_rng(0))


@pytest.fixture(scope="session")
def make_qmodel():
    """bw -> a random QuantizedModel of the tiny graph with bw-bit data and weights."""
    return lambda bw: random_qmodel(tiny_graph(), np.random.default_rng(bw), bw_d=bw, bw_w=bw)


@pytest.fixture(scope="session")
def images():
    return np.random.default_rng(1).random((64, 1, 12, 12), dtype=np.float32)


def fq(x, fl, lo=-128, hi=127):
    """torch's fake quantization at scale 2^-fl (exports as QuantizeLinear/DequantizeLinear)."""
    return torch.fake_quantize_per_tensor_affine(x, 2.0 ** -fl, 0, lo, hi)


class TorchQDQ(nn.Module):
    """A torch network fake-quantized at power-of-two scales: 1×12×12 → 10. Its biases are
    multiples of the accumulator step, so QDQ states them exactly in float."""

    def __init__(self, seed=0, act_scale=2.0 ** -4):
        super().__init__()
        self.act_scale = act_scale
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 10)
        with torch.no_grad():
            for m, fl_w in ((self.conv, 6), (self.fc, 7)):
                m.weight.copy_(fq(torch.randn(m.weight.shape, generator=g) * 0.3, fl_w))
                step = 2.0 ** -(5 + fl_w if m is self.conv else 4 + fl_w)
                m.bias.copy_(torch.round(torch.randn(m.bias.shape, generator=g) * 0.1 / step)
                             * step)

    def forward(self, x):
        x = fq(x, 5)
        x = nn.functional.conv2d(x, fq(self.conv.weight, 6), self.conv.bias, padding=1)
        x = torch.fake_quantize_per_tensor_affine(torch.relu(x), self.act_scale, 0, -128, 127)
        x = torch.flatten(nn.functional.max_pool2d(x, 2), 1)
        return fq(nn.functional.linear(x, fq(self.fc.weight, 7), self.fc.bias), 3)


def export_torch(net, path):
    torch.onnx.export(net, torch.zeros(1, 1, 12, 12), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"], opset_version=13,
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return path


@pytest.fixture(scope="session")
def torch_qdq_file(tmp_path_factory):
    net = TorchQDQ().eval()
    return export_torch(net, tmp_path_factory.mktemp("qdq") / "torch-qdq.onnx"), net


@pytest.fixture(scope="session")
def make_torch_qdq():
    """(act_scale, path) -> path of a TorchQDQ exported with that activation scale."""
    return lambda act_scale, path: export_torch(TorchQDQ(act_scale=act_scale).eval(), path)
