"""`deepfpga evaluate MODEL --data DATA`: bad data sets and options."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("args,match", [
    (["--limit", "0"], "--limit"), (["--limit=-3"], "--limit"),
    (["--batch-size", "0"], "--batch-size"), (["--split", "val"], "invalid choice"),
    (["--limit", "many"], "invalid int"),
])
def test_bad_options(args, match, files, refused):
    refused(["evaluate", files.qmodel, "--data", files.data, *args], match)


@pytest.mark.parametrize("spec", ["mnist", "none.npz", "x.csv"])
def test_unknown_data(spec, files, work, refused, monkeypatch):
    monkeypatch.chdir(work)
    (work / "x.csv").write_text("1,2")
    refused(["evaluate", files.qmodel, "--data", spec], spec)


def test_data_of_another_shape(files, work, refused):
    np.savez(work / "d.npz", x=np.zeros((3, 3, 32, 32), np.uint8), y=np.zeros(3, int))
    refused(["evaluate", files.qmodel, "--data", work / "d.npz"], "channel")


def test_labels_beyond_the_model_outputs(files, work, refused):
    np.savez(work / "d.npz", x=np.zeros((3, 1, 8, 8), np.uint8), y=np.array([0, 1, 7]))
    refused(["evaluate", files.qmodel, "--data", work / "d.npz"], "label")


@pytest.mark.parametrize("model,match", [("missing.npz", "no such"), ("vgg16", "weights")])
def test_bad_model(model, match, files, work, refused, monkeypatch):
    monkeypatch.chdir(work)
    np.savez(work / "big.npz", x=np.zeros((1, 3, 224, 224), np.uint8), y=np.zeros(1, int))
    refused(["evaluate", model, "--data", work / "big.npz"], match)
