"""torch importer: imported graphs compute what the module computes; refusals list every node."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from deepfpga.errors import InputError, UnsupportedModelError
from deepfpga.frontends.torch_import import import_torch
from deepfpga.ir.float_exec import run_float
from deepfpga.ir.passes import prepare_for_quantization

NAMES = ("plain", "bn", "residual", "pool", "lrn")


@pytest.mark.parametrize("name", NAMES)
def test_imported_graph_matches_module(name, torch_cases):
    from_cls, shape = torch_cases[name]
    torch.manual_seed(0)
    module = from_cls()
    _randomize(module)
    g = import_torch(module, shape, name=name)
    assert g.name == name and g.input_shape == shape and g.has_weights
    x = np.random.default_rng(1).normal(size=(5, *shape)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    got = run_float(g, x)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5
    # The prepared graph (BN folded, dropout removed) still computes the same.
    prepared = prepare_for_quantization(g)
    assert not any(layer.kind in ("batchnorm", "dropout") for layer in prepared.layers)
    np.testing.assert_allclose(run_float(prepared, x), ref, rtol=1e-4, atol=1e-5)


def _randomize(module):
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    module.eval()


def test_structure_and_weights_are_copied_exactly(torch_cases):
    cls, shape = torch_cases["plain"]
    module = cls().eval()
    g = import_torch(module, shape)
    assert [layer.kind for layer in g.layers] == [
        "conv", "relu", "maxpool", "conv", "relu", "maxpool",
        "flatten", "dropout", "fc", "relu", "fc", "softmax",
    ]
    assert g.is_chain()
    sd = module.state_dict()
    conv = g.layers[0]
    assert conv.name == "features_0" and conv.kernel == (3, 3) and conv.padding == (1, 1)
    assert np.array_equal(g.params["features_0"]["weight"], sd["features.0.weight"].numpy())
    assert g.params["features_0"]["weight"].dtype == np.float32
    assert np.array_equal(g.params["classifier_4"]["bias"], sd["classifier.4.bias"].numpy())
    assert g.layer("features_5").stride == (1, 1) and g.layer("features_5").padding == (1, 1)
    assert g.layer("classifier_1").p == pytest.approx(0.3)


def test_residual_graph_is_a_dag_with_adds(torch_cases):
    cls, shape = torch_cases["residual"]
    g = import_torch(cls().eval(), shape)
    adds = [layer for layer in g.layers if layer.kind == "add"]
    assert len(adds) == 2 and all(len(a.inputs) == 2 for a in adds)
    assert not g.is_chain()
    kinds = [layer.kind for layer in g.layers]
    assert kinds.count("avgpool") == 1  # the 2x2 → 2x2 adaptive pool is the identity
    assert g.shapes()[g.outputs[0]] == (4,)


def test_unsupported_nodes_are_all_listed_in_one_error(unsupported_net):
    with pytest.raises(UnsupportedModelError) as e:
        import_torch(unsupported_net, (3, 8, 8))
    found = dict(e.value.unsupported)
    assert set(found) == {"sigmoid", "act"}
    assert found["act"] == "GELU" and found["sigmoid"] == "sigmoid"
    assert "sigmoid (sigmoid)" in str(e.value) and "act (GELU)" in str(e.value)


class _Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 4, 3, groups=2)
        self.d = nn.Conv2d(4, 4, 3, dilation=2)
        self.e = nn.Conv2d(4, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(3)

    def forward(self, x):
        return self.d(self.c(x)).view(2, -1), self.pool(self.e(x))


def test_unsupported_parameters_are_named():
    with pytest.raises(UnsupportedModelError) as e:
        import_torch(_Grouped(), (4, 12, 12))
    found = dict(e.value.unsupported)
    assert "groups=2" in found["c"] and "dilation" in found["d"]
    assert "not divisible" in found["pool"]  # 10x10 map to 3x3
    assert "view" in found  # a reshape to (2, -1) fixes the batch size
    assert set(found) == {"c", "d", "pool", "view"}


def test_bad_arguments():
    with pytest.raises(InputError, match="torch.nn.Module"):
        import_torch(object(), (3, 4, 4))
    with pytest.raises(InputError, match="input shape"):
        import_torch(nn.ReLU(), (3, 0, 4))


class _Branches(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow cannot be traced
            return x
        return -x


class _DownstreamOfUnsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        y = torch.tanh(x)  # the only unsupported node: what follows needs its shape
        y = self.pool(y)
        return torch.softmax(y.view(y.size(0), 12), dim=-1)


def test_nodes_downstream_of_an_unsupported_one_are_not_blamed():
    with pytest.raises(UnsupportedModelError) as e:
        import_torch(_DownstreamOfUnsupported(), (3, 4, 4))
    assert e.value.unsupported == [("tanh", "tanh")]


def test_untraceable_module_is_bad_input():
    with pytest.raises(InputError, match="cannot trace"):
        import_torch(_Branches(), (3, 4, 4))
