"""Zoo registry and the ImageNet architectures (shapes from the literature)."""

import sys
import types

import pytest

from deepfpga import zoo
from deepfpga.errors import InputError
from deepfpga.ir import Graph


def test_names():
    assert zoo.names() == ["alexnet", "zf", "vgg11", "vgg13", "vgg16", "vgg19", "vgg16-svd",
                           "resnet18", "fmnist-vgg", "fmnist-alex", "fmnist-resnet"]


@pytest.mark.parametrize("name", ["alexnet", "zf", "vgg11", "vgg13", "vgg16", "vgg19",
                                  "vgg16-svd"])
def test_imagenet_graphs_are_chains_without_weights(name):
    g = zoo.get(name)
    assert g.name == name and g.is_chain() and not g.params
    shapes = g.shapes()
    assert shapes[g.outputs[0]] == (1000,)
    assert g.layers[-1].kind == "softmax" and g.layers[-1].host_only
    assert g.input_shape == ((3, 227, 227) if name == "alexnet" else (3, 224, 224))
    assert zoo.get(name) is not g  # a fresh graph each time


def _conv_shapes(g):
    s = g.shapes()
    return [s[layer.name] for layer in g.layers if layer.kind in ("conv", "maxpool")]


def test_alexnet_has_caffenet_shapes():
    g = zoo.get("alexnet")
    assert _conv_shapes(g) == [(96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13),
                               (384, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6)]
    kinds = [layer.kind for layer in g.layers][:5]
    assert kinds == ["conv", "relu", "maxpool", "lrn", "conv"]  # CaffeNet: pool before norm
    assert g.layer("conv1").kernel == (11, 11) and g.layer("conv1").stride == (4, 4)
    assert g.layer("fc6").in_features == 9216


def test_zf_has_the_paper_shapes():
    g = zoo.get("zf")
    assert _conv_shapes(g) == [(96, 110, 110), (96, 55, 55), (256, 26, 26), (256, 13, 13),
                               (384, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6)]
    assert g.layer("conv1").kernel == (7, 7) and g.layer("conv1").stride == (2, 2)


@pytest.mark.parametrize("name,convs", [("vgg11", 8), ("vgg13", 10), ("vgg16", 13),
                                        ("vgg19", 16)])
def test_vgg_depths(name, convs):
    g = zoo.get(name)
    assert sum(layer.kind == "conv" for layer in g.layers) == convs
    assert sum(layer.kind == "fc" for layer in g.layers) == 3
    assert g.shapes()["pool5"] == (512, 7, 7)


def test_vgg16_svd_factors_fc6_at_rank_500():
    g = zoo.get("vgg16-svd")
    a, b = g.layer("fc6a"), g.layer("fc6b")
    assert (a.in_features, a.out_features, a.bias) == (25088, 500, False)
    assert (b.in_features, b.out_features, b.bias) == (500, 4096, True)
    assert "fc6" not in g and g.layer("relu6").inputs == ("fc6b",)


def test_fmnist_is_delegated(monkeypatch):
    built = Graph.from_dict({"name": "fmnist-vgg", "input_shape": [4], "outputs": ["r"],
                             "layers": [{"kind": "relu", "name": "r", "inputs": ["input"]}]})
    fake = types.ModuleType("deepfpga.zoo.fmnist")
    fake.load_graph = lambda name: built if name == "fmnist-vgg" else None
    monkeypatch.setitem(sys.modules, "deepfpga.zoo.fmnist", fake)
    assert zoo.get("fmnist-vgg") is built


def test_fmnist_absent_says_weights_not_built(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepfpga.zoo.fmnist", None)  # import fails
    with pytest.raises(InputError, match="weights are not built"):
        zoo.get("fmnist-alex")


def test_unknown_name():
    with pytest.raises(InputError, match="known: alexnet, zf"):
        zoo.get("googlenet")


def _torch_resnet18():
    """torchvision's ResNet-18 written out (torchvision is not installed here)."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else None)

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(y + (x if self.down is None else self.down(x)))

    blocks, cin = [], 64
    for i, cout in enumerate((64, 128, 256, 512)):
        blocks += [Block(cin, cout, 2 if i else 1), Block(cout, cout, 1)]
        cin = cout
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.MaxPool2d(3, 2, 1), *blocks, nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(512, 1000), nn.Softmax(dim=1))


def test_resnet18_matches_torch_and_the_literature():
    from deepfpga.analysis.complexity import analyze
    from deepfpga.frontends.torch_import import import_torch

    g = zoo.get("resnet18")
    assert not g.is_chain() and not g.params and g.input_shape == (3, 224, 224)
    kinds = [layer.kind for layer in g.layers]
    assert kinds.count("add") == 8 and kinds.count("conv") == 20
    shapes = g.shapes()
    assert shapes["maxpool"] == (64, 56, 56) and shapes["layer4_1_add"] == (512, 7, 7)
    assert shapes["layer2_0_down"] == (128, 28, 28)
    # torchvision's figures: 1,814,073,344 multiply-accumulates, 11,689,512 learned parameters
    # (batch norm's running statistics are measured, not learned)
    c = analyze(g)
    assert c.total().macs == 1_814_073_344
    assert c.total().params == 11_689_512
    t = import_torch(_torch_resnet18().eval(), (3, 224, 224))
    ct = analyze(t)
    assert ct.total().macs == c.total().macs
    assert ct.total().params == c.total().params
    assert sorted(layer.kind for layer in t.layers) == sorted(kinds)


def test_resnet18_compiles_and_times_with_host_adds():
    from deepfpga.compiler.compile import compile_architecture
    from deepfpga.hw.config import load_config
    from deepfpga.sim.timing import simulate_timing

    compiled = compile_architecture(zoo.get("resnet18"), load_config("zedboard"))
    host = {h.layer for h in compiled.manifest.host_steps}
    assert {f"layer{s}_{b}_add" for s in range(1, 5) for b in range(2)} <= host
    t = simulate_timing(compiled)
    assert t.fps and t.fps > 0 and len(t.layers) == 21
