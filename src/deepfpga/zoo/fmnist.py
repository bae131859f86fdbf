"""The trained Fashion-MNIST reference models (input 1x28x28, pixels in [0, 1]).

`fmnist-vgg` and `fmnist-alex` are chains of Conv2d, ReLU, MaxPool2d(2, 2), Flatten, Linear and
Dropout. `fmnist-resnet` is a DAG with batch norms (folded before quantization), residual adds
and average pooling.
Weights live next to this file in `weights/<name>.npz` (float32, keyed by state_dict names) with
their training record in `weights/<name>.json`; `scripts/train_fmnist.py` produces both.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfpga.errors import InputError

if TYPE_CHECKING:
    import torch

    from deepfpga.ir import Graph

INPUT_SHAPE = (1, 28, 28)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def fmnist_vgg() -> torch.nn.Module:
    """VGG-style: two blocks of two 3x3 convs (24, 48 channels) + 2x2 max-pool, then FC 256-256-10.

    Channel counts are multiples of 8 and kept small so training fits the CPU budget; fc6
    (2352x256) holds most of the weights and is the layer SVD compression acts on.
    """
    from torch import nn

    return nn.Sequential(OrderedDict([
        ("conv1_1", nn.Conv2d(1, 24, 3, padding=1)), ("relu1_1", nn.ReLU()),
        ("conv1_2", nn.Conv2d(24, 24, 3, padding=1)), ("relu1_2", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2, 2)),                                   # 24x14x14
        ("conv2_1", nn.Conv2d(24, 48, 3, padding=1)), ("relu2_1", nn.ReLU()),
        ("conv2_2", nn.Conv2d(48, 48, 3, padding=1)), ("relu2_2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2, 2)),                                   # 48x7x7
        ("flatten", nn.Flatten()),
        ("drop6", nn.Dropout(0.25)),
        ("fc6", nn.Linear(48 * 7 * 7, 256)), ("relu6", nn.ReLU()),
        ("drop7", nn.Dropout(0.25)),
        ("fc7", nn.Linear(256, 256)), ("relu7", nn.ReLU()),
        ("fc8", nn.Linear(256, 10)),
    ]))


def fmnist_alex() -> torch.nn.Module:
    """AlexNet-style: a large strided first conv (7x7 s2 p1), then 3x3 convs, FC 256-256-10.

    7x7 s2 p1 maps 28 -> 12 (every input pixel is covered) so both 2x2 pools see even sizes
    (12 -> 6 -> 3) and never drop a row.
    """
    from torch import nn

    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 48, 7, stride=2, padding=1)), ("relu1", nn.ReLU()),  # 48x12x12
        ("conv2", nn.Conv2d(48, 64, 3, padding=1)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2, 2)),                                              # 64x6x6
        ("conv3", nn.Conv2d(64, 96, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(96, 96, 3, padding=1)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(96, 64, 3, padding=1)), ("relu5", nn.ReLU()),
        ("pool5", nn.MaxPool2d(2, 2)),                                              # 64x3x3
        ("flatten", nn.Flatten()),
        ("drop6", nn.Dropout(0.25)),
        ("fc6", nn.Linear(64 * 3 * 3, 256)), ("relu6", nn.ReLU()),
        ("drop7", nn.Dropout(0.25)),
        ("fc7", nn.Linear(256, 256)), ("relu7", nn.ReLU()),
        ("fc8", nn.Linear(256, 10)),
    ]))


def fmnist_resnet() -> torch.nn.Module:
    """A small residual network (deepfpga.zoo.fmnist_resnet): three stages of one basic block
    (16, 32, 64 channels; batch norm, residual adds, 1×1/2 projection shortcuts), 7×7 average
    pooling, FC 64→10."""
    from deepfpga.zoo.fmnist_resnet import FmnistResNet

    return FmnistResNet()


BUILDERS: dict[str, Callable[[], Any]] = {"fmnist-vgg": fmnist_vgg, "fmnist-alex": fmnist_alex,
                                          "fmnist-resnet": fmnist_resnet}
NAMES = tuple(BUILDERS)


def _check_name(name: str) -> None:
    if name not in BUILDERS:
        raise InputError(f"unknown Fashion-MNIST model {name!r} (known: {', '.join(NAMES)})")


def build(name: str) -> torch.nn.Module:
    """The untrained torch module of `name`."""
    _check_name(name)
    return BUILDERS[name]()


def weights_path(name: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    _check_name(name)
    return weights_dir / f"{name}.npz"


def info_path(name: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    _check_name(name)
    return weights_dir / f"{name}.json"


def load_state(path: Path, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Read a weights npz and check its keys and shapes against `module`'s state_dict."""
    import torch

    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zip/format errors of a damaged file
        raise InputError(f"{path}: unreadable weights npz ({e})") from None
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise InputError(f"{path}: state_dict keys differ: missing {missing}, unexpected {extra}")
    for k, shape in expected.items():
        a = arrays[k]
        if tuple(a.shape) != shape:
            raise InputError(f"{path}: {k!r} has shape {tuple(a.shape)}, the model needs {shape}")
        if a.dtype != np.float32:
            raise InputError(f"{path}: {k!r} has dtype {a.dtype}, expected float32")
        if not np.isfinite(a).all():
            raise InputError(f"{path}: {k!r} has non-finite values")
    return {k: torch.from_numpy(np.array(arrays[k])) for k in expected}


def load_module(name: str, weights_dir: Path = WEIGHTS_DIR) -> torch.nn.Module:
    """The trained torch module of `name`, weights loaded, in eval mode."""
    module = build(name)
    module.load_state_dict(load_state(weights_path(name, weights_dir), module))
    return module.eval()


def load_graph(name: str, weights_dir: Path = WEIGHTS_DIR) -> Graph:
    """The trained model as a graph IR (with weights), via the torch importer."""
    from deepfpga.frontends.torch_import import import_torch

    return import_torch(load_module(name, weights_dir), INPUT_SHAPE, name)


def model_info(name: str, weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The training record of the shipped weights (accuracy, seed, epochs, time, versions)."""
    path = info_path(name, weights_dir)
    if not path.is_file():
        raise InputError(f"model record not found: {path}")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(info, dict):
        raise InputError(f"{path}: expected a JSON object")
    return info
