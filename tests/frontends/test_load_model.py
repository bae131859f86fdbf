"""load_model: zoo names, .onnx, float-model .npz, package.module:factory; clear refusals."""

import io
import textwrap
import warnings

import numpy as np
import pytest
import torch

from deepfpga.errors import InputError, UnsupportedModelError
from deepfpga.frontends import parse_shape
from deepfpga.frontends.float_model import FORMAT, load_float_model, save_float_model
from deepfpga.frontends.torch_import import import_torch
from deepfpga.ir.float_exec import run_float
from deepfpga.models import load_model


def test_zoo_name():
    g = load_model("vgg16")
    assert g.name == "vgg16" and g.input_shape == (3, 224, 224) and not g.params
    assert load_model("vgg16", "3,224,224").name == "vgg16"
    with pytest.raises(InputError, match="fixed input shape 3,224,224"):
        load_model("vgg16", "3,32,32")


def test_unknown_spec_lists_zoo_names():
    with pytest.raises(InputError) as e:
        load_model("resnet50")
    assert "vgg16-svd" in str(e.value) and "alexnet" in str(e.value)
    assert "fmnist-vgg" in str(e.value)


def test_onnx_path(tmp_path, torch_cases):
    cls, shape = torch_cases["plain"]
    module = cls().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.zeros(1, *shape), buf, dynamo=False)
    path = tmp_path / "net.onnx"
    path.write_bytes(buf.getvalue())
    g = load_model(str(path))
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    with torch.no_grad():
        assert np.abs(run_float(g, x) - module(torch.from_numpy(x)).numpy()).max() <= 1e-5
    with pytest.raises(InputError, match="no such file"):
        load_model(str(tmp_path / "other.onnx"))


FACTORY = """
import torch.nn as nn

def make():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))

def bad():
    class M(nn.Module):
        def forward(self, x):
            return nn.functional.gelu(x).sigmoid()
    return M()

def not_a_module():
    return 42
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "h1_factory_mod.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "h1_factory_mod"


def test_factory_spec(factory_module):
    g = load_model(f"{factory_module}:make", "1,6,6")
    assert g.name == "make" and g.input_shape == (1, 6, 6)
    assert [layer.kind for layer in g.layers] == ["conv", "relu", "flatten", "fc"]
    assert g.has_weights


def test_factory_refusals(factory_module):
    with pytest.raises(InputError, match="needs an input shape"):
        load_model(f"{factory_module}:make")
    with pytest.raises(InputError, match="bad input shape"):
        load_model(f"{factory_module}:make", "1,six,6")
    with pytest.raises(InputError, match="no callable 'nope'"):
        load_model(f"{factory_module}:nope", "1,6,6")
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        load_model(f"{factory_module}:not_a_module", "1,6,6")
    with pytest.raises(InputError, match="cannot import module"):
        load_model("no_such_pkg_h1.mod:make", "1,6,6")
    with pytest.raises(UnsupportedModelError, match="gelu.*sigmoid"):
        load_model(f"{factory_module}:bad", "1,6,6")


def test_parse_shape():
    assert parse_shape("3,224,224") == (3, 224, 224)
    assert parse_shape("3x32x32") == (3, 32, 32)
    assert parse_shape([1, 28, 28]) == (1, 28, 28)
    for bad in ("", "3,-1", "a"):
        with pytest.raises(InputError):
            parse_shape(bad)


def test_float_model_round_trip(tmp_path, torch_cases):
    cls, shape = torch_cases["residual"]
    torch.manual_seed(0)
    g = import_torch(cls().eval(), shape, name="res")
    path = tmp_path / "res.npz"
    save_float_model(g, path)
    with np.load(path, allow_pickle=False) as z:
        assert str(z["__format__"]) == FORMAT
        assert "stem/weight" in z.files and z["stem/weight"].dtype == np.float32
    back = load_model(str(path))
    assert back.to_dict() == g.to_dict()
    for lname, arrays in g.params.items():
        for key, arr in arrays.items():
            assert np.array_equal(back.params[lname][key], arr)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    assert np.array_equal(run_float(back, x), run_float(g, x))


def test_float_model_without_weights_round_trips(tmp_path):
    path = tmp_path / "arch.npz"
    save_float_model(load_model("alexnet"), path)
    back = load_float_model(path)
    assert back.to_dict() == load_model("alexnet").to_dict() and not back.params


def test_float_model_refusals(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a .npz file .not a zip archive"):
        load_float_model(p)
    np.savez(p, a=np.zeros(3))
    with pytest.raises(InputError, match="not a deepfpga float model"):
        load_float_model(p)
    np.savez(p, __format__=np.array(FORMAT), __graph__=np.array("{broken"))
    with pytest.raises(InputError, match="invalid JSON"):
        load_float_model(p)
    save_float_model(load_model("vgg11"), p)
    with np.load(p) as z:
        entries = dict(z)
    entries["fc8/weight"] = np.zeros((3, 3), np.float32)
    np.savez(p, **entries)
    with pytest.raises(InputError, match="'fc8' weight 'weight' has shape"):
        load_float_model(p)
    entries.pop("fc8/weight")
    entries["fc8"] = np.zeros(3, np.float32)
    np.savez(p, **entries)
    with pytest.raises(InputError, match="unexpected entry 'fc8'"):
        load_float_model(p)
    with pytest.raises(InputError, match="no such file"):
        load_float_model(tmp_path / "missing.npz")
