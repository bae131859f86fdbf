"""Zoo registry and the ImageNet architectures (shapes from the literature)."""

import sys
import types

import pytest

from deepfpga import zoo
from deepfpga.errors import InputError
from deepfpga.ir import Graph


def test_names():
    assert zoo.names() == ["alexnet", "zf", "vgg11", "vgg13", "vgg16", "vgg19", "vgg16-svd",
                           "fmnist-vgg", "fmnist-alex"]


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
