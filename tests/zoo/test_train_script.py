"""scripts/train_fmnist.py: a tiny deterministic run writes a loadable npz and its JSON record."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from deepfpga.zoo import fmnist

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_fmnist.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_fmnist", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow  # two short training runs: ~10 s on an idle machine
def test_tiny_training_run_is_deterministic(tmp_path: Path) -> None:
    train = _script()
    args = ["--model", "fmnist-alex", "--epochs", "1", "--limit", "256", "--batch", "64",
            "--threads", "1", "--seed", "3", "--crop-pad", "2"]
    assert train.main([*args, "--out", str(tmp_path / "a" / "fmnist-alex.npz")]) == 0
    assert train.main([*args, "--out", str(tmp_path / "b" / "fmnist-alex.npz")]) == 0
    info = json.loads((tmp_path / "a" / "fmnist-alex.json").read_text())
    assert info["architecture"] == "fmnist-alex" and info["seed"] == 3 and info["epochs"] == 1
    assert info["test_samples"] == 256 and 0.0 <= info["test_top1"] <= 1.0
    assert info["torch_version"] and info["train_time_s"] >= 0
    with np.load(tmp_path / "a" / "fmnist-alex.npz", allow_pickle=False) as za, \
            np.load(tmp_path / "b" / "fmnist-alex.npz", allow_pickle=False) as zb:
        assert za.files == zb.files
        for k in za.files:
            assert za[k].dtype == np.float32
            np.testing.assert_array_equal(za[k], zb[k])  # same seed, same weights
    m = fmnist.load_module("fmnist-alex", tmp_path / "a")  # keys and shapes validate
    assert not m.training


def test_augment_shapes_and_content() -> None:
    import torch

    train = _script()
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    y = train.augment(x, gen, flip=False, crop_pad=1)
    assert y.shape == x.shape
    for i in range(2):  # every crop is a shifted window of the zero-padded image
        padded = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        windows = [padded[:, r:r + 4, c:c + 4] for r in range(3) for c in range(3)]
        assert any(torch.equal(y[i], w) for w in windows)
    f = train.augment(x, torch.Generator().manual_seed(1), flip=True, crop_pad=0)
    for i in range(2):
        assert torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(2))
