"""The shipped Fashion-MNIST reference models: architecture rules, weights, accuracy, import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepfpga.data import load_dataset
from deepfpga.errors import InputError
from deepfpga.zoo import fmnist

# on the first 2,000 test images
MIN_ACC = {"fmnist-vgg": 0.90, "fmnist-alex": 0.88, "fmnist-resnet": 0.91}
ALLOWED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear, nn.Dropout)
CHAINS = ("fmnist-vgg", "fmnist-alex")
SHIPPED = (*CHAINS, "fmnist-resnet")  # the models whose weights ship in deepfpga/zoo/weights


@pytest.fixture(scope="module")
def test_head():
    return load_dataset("fashion-mnist", "test", limit=2000)


def test_names() -> None:
    assert fmnist.NAMES == ("fmnist-vgg", "fmnist-alex", "fmnist-resnet")


def test_resnet_architecture_imports_as_a_dag_and_folds() -> None:
    from deepfpga.frontends.torch_import import import_torch
    from deepfpga.ir.passes import prepare_for_quantization

    m = fmnist.build("fmnist-resnet").eval()
    g = import_torch(m, fmnist.INPUT_SHAPE)
    kinds = [layer.kind for layer in g.layers]
    assert not g.is_chain() and kinds.count("add") == 3 and kinds.count("batchnorm") == 9
    assert kinds.count("conv") == 9 and kinds[-1] == "fc" and "avgpool" in kinds
    folded = prepare_for_quantization(g)
    assert "batchnorm" not in [layer.kind for layer in folded.layers]
    shapes = g.shapes()
    assert shapes[g.outputs[0]] == (10,)
    assert m(torch.zeros(2, *fmnist.INPUT_SHAPE)).shape == (2, 10)


@pytest.mark.parametrize("name", CHAINS)
def test_architecture_rules(name: str) -> None:
    m = fmnist.build(name)
    leaves = [c for c in m.modules() if not list(c.children())]
    assert all(isinstance(c, ALLOWED) for c in leaves), [type(c).__name__ for c in leaves]
    for pool in (c for c in leaves if isinstance(c, nn.MaxPool2d)):
        assert pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2))
    convs = [c for c in leaves if isinstance(c, nn.Conv2d)]
    fcs = [c for c in leaves if isinstance(c, nn.Linear)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert fcs[-1].out_features == 10
    assert all(f.out_features >= 256 for f in fcs[:-1]) and len(fcs) == 3
    if name == "fmnist-vgg":
        assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    else:
        assert convs[0].kernel_size[0] >= 5 and convs[0].stride == (2, 2)
        assert all(c.kernel_size == (3, 3) for c in convs[1:])
    assert m(torch.zeros(2, *fmnist.INPUT_SHAPE)).shape == (2, 10)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_and_record(name: str) -> None:
    path = fmnist.weights_path(name)
    assert path.stat().st_size <= 5 * 1024 * 1024
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype == np.float32 for k in z.files)
        assert set(z.files) == set(fmnist.build(name).state_dict())
    info = fmnist.model_info(name)
    assert info["architecture"] == name
    for key in ("seed", "epochs", "test_top1", "train_time_s", "torch_version"):
        assert key in info
    target = 0.92 if name == "fmnist-vgg" else 0.90
    assert info["test_top1"] >= target


@pytest.mark.parametrize("name", SHIPPED)
def test_module_accuracy(name: str, test_head) -> None:
    m = fmnist.load_module(name)
    assert not m.training
    with torch.no_grad():
        pred = m(torch.from_numpy(np.array(test_head.x))).argmax(1).numpy()
    acc = float((pred == test_head.y).mean())
    assert acc > MIN_ACC[name], acc


@pytest.mark.parametrize("name", SHIPPED)
def test_graph_agrees_with_module(name: str, test_head) -> None:
    from deepfpga.ir.float_exec import run_float
    from deepfpga.zoo import get

    graph = fmnist.load_graph(name)
    assert graph.name == name and graph.input_shape == fmnist.INPUT_SHAPE
    assert graph.is_chain() == (name in CHAINS) and graph.has_weights
    x = np.array(test_head.x[:256])
    with torch.no_grad():
        ref = fmnist.load_module(name)(torch.from_numpy(x)).numpy()
    out = run_float(graph, x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert (out.argmax(1) == ref.argmax(1)).all()
    via_zoo = get(name)
    assert [layer.kind for layer in via_zoo.layers] == [layer.kind for layer in graph.layers]


def _save(path: Path, arrays: dict) -> None:
    np.savez_compressed(path, **arrays)


def test_load_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown Fashion-MNIST model"):
        fmnist.load_module("fmnist-unknown")
    with pytest.raises(InputError, match="not found"):
        fmnist.load_module("fmnist-alex", tmp_path)
    with pytest.raises(InputError, match="record not found"):
        fmnist.model_info("fmnist-alex", tmp_path)
    good = {k: v.numpy() for k, v in fmnist.build("fmnist-alex").state_dict().items()}
    path = tmp_path / "fmnist-alex.npz"

    bad = dict(good)
    del bad["conv1.weight"]
    bad["extra"] = np.zeros(1, np.float32)
    _save(path, bad)
    with pytest.raises(InputError, match=r"missing \['conv1.weight'\], unexpected \['extra'\]"):
        fmnist.load_module("fmnist-alex", tmp_path)

    bad = dict(good, **{"conv1.bias": np.zeros(3, np.float32)})
    _save(path, bad)
    with pytest.raises(InputError, match=r"'conv1.bias' has shape \(3,\), the model needs \(48,\)"):
        fmnist.load_module("fmnist-alex", tmp_path)

    bad = dict(good, **{"conv1.bias": good["conv1.bias"].astype(np.float64)})
    _save(path, bad)
    with pytest.raises(InputError, match="float64"):
        fmnist.load_module("fmnist-alex", tmp_path)

    bad = dict(good, **{"conv1.bias": np.full(48, np.nan, np.float32)})
    _save(path, bad)
    with pytest.raises(InputError, match="non-finite"):
        fmnist.load_module("fmnist-alex", tmp_path)

    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable"):
        fmnist.load_module("fmnist-alex", tmp_path)

    _save(path, good)
    m = fmnist.load_module("fmnist-alex", tmp_path)
    assert torch.equal(m.state_dict()["conv1.weight"], torch.from_numpy(good["conv1.weight"]))

    (tmp_path / "fmnist-alex.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        fmnist.model_info("fmnist-alex", tmp_path)
    (tmp_path / "fmnist-alex.json").write_text(json.dumps({"seed": 3}))
    assert fmnist.model_info("fmnist-alex", tmp_path) == {"seed": 3}
