"""`deepfpga svd MODEL --layer L --rank R --out F.npz`: bad layer specs and outputs."""

from __future__ import annotations

import pytest

FILE_KINDS = ("file/", "ro", "empty", "long", "isdir")


@pytest.mark.parametrize("args,match", [
    (["--layer", "ghost", "--rank", "2"], "ghost"),
    (["--layer", "conv1", "--rank", "2"], "conv1"),
    (["--layer", "fc", "--rank", "0"], "rank"),
    (["--layer", "fc", "--rank=-1"], "rank"),
    (["--layer", "fc", "--energy", "1.5"], "energy"),
    (["--layer", "fc", "--reduction", "0"], "reduction"),
    (["--layer", "fc"], "has no --rank"),
    (["--rank", "2"], "--layer"),
    (["--layer", "fc", "--rank", "2", "--energy", "0.9"], "more than one"),
    (["--layer", "fc", "--rank", "2", "--layer", "fc", "--rank", "3"], "given twice"),
    (["--layer", "fc", "--rank", "two"], "invalid int"),
])
def test_bad_layer_spec(args, match, files, refused):
    refused(["svd", files.float_model, *args], match)


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_bad_out(kind, files, work, bad_location, refused):
    path, match = bad_location(kind, ".npz")
    if kind == "empty":
        match = ".npz"
    refused(["svd", files.float_model, "--layer", "fc", "--rank", "2", f"--out={path}"], match,
            keep=[work / "existing.npz"])


def test_out_not_npz(files, work, refused):
    refused(["svd", files.float_model, "--layer", "fc", "--rank", "2", "--out", work / "m.onnx"],
            ".npz")


def test_out_equal_to_the_model(files, work, refused):
    m = work / "m.npz"
    m.write_bytes(files.float_model.read_bytes())
    refused(["svd", m, "--layer", "fc", "--rank", "2", "--out", m], "is also an input", keep=[m])
