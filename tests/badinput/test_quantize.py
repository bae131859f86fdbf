"""`deepfpga quantize MODEL --calib DATA --out Q.npz`: bad data, sizes, bit files, outputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

FILE_KINDS = ("file/", "ro", "empty", "long", "isdir")


def _npz(work, **arrays):
    path = work / "calib.npz"
    np.savez(path, **arrays)
    return path


X = np.zeros((6, 1, 8, 8), np.uint8)
Y = np.arange(6) % 3
DATA = {
    "missing-y": (dict(x=X), "missing array 'y'"),
    "missing-x": (dict(y=Y), "missing array 'x'"),
    "x-rank-2": (dict(x=np.zeros((6, 64), np.uint8), y=Y), "x must have shape"),
    "y-rank-2": (dict(x=X, y=Y[:, None]), "y must have shape"),
    "length-mismatch": (dict(x=X, y=Y[:4]), "samples but y has"),
    "empty": (dict(x=X[:0], y=Y[:0]), "no samples"),
    "labels-float": (dict(x=X, y=Y.astype(float)), "integer labels"),
    "labels-bool": (dict(x=X, y=Y > 0), "integer labels"),
    "labels-negative": (dict(x=X, y=Y - 1), "negative label"),
    "pixels-nan": (dict(x=np.full((6, 1, 8, 8), np.nan), y=Y), "NaN"),
    "pixels-inf": (dict(x=np.full((6, 1, 8, 8), np.inf), y=Y), "inf"),
    "pixels-beyond-float32": (dict(x=np.full((6, 1, 8, 8), 1e300), y=Y), "beyond float32"),
    "pixels-int-300": (dict(x=np.full((6, 1, 8, 8), 300, np.int32), y=Y), "0..255"),
    "pixels-strings": (dict(x=np.full((6, 1, 8, 8), "a"), y=Y), "numeric"),
    "pixels-bool": (dict(x=np.zeros((6, 1, 8, 8), bool), y=Y), "numeric"),
    "wrong-size": (dict(x=np.zeros((6, 1, 7, 7), np.uint8), y=Y), "the model expects 8x8"),
    "wrong-channels": (dict(x=np.zeros((6, 3, 8, 8), np.uint8), y=Y), "channel"),
    "classes-ints": (dict(x=X, y=Y, classes=np.array([1, 2, 3])), "classes must be"),
    "labels-beyond-classes": (dict(x=X, y=Y + 5, classes=np.array(["a", "b", "c"])),
                              "out of range"),
    "object-array": (dict(x=np.array([None] * 6, dtype=object), y=Y), "unreadable npz"),
    "label-2-to-the-62": (dict(x=X, y=np.full(6, 2**62)), "classes"),
}


@pytest.mark.parametrize("case", sorted(DATA))
def test_bad_calibration_npz(case, files, work, refused):
    arrays, match = DATA[case]
    out = work / "existing.npz"
    refused(["quantize", files.float_model, "--calib", _npz(work, **arrays), "--out", out],
            match, keep=[out])


def test_normalised_float_data_is_accepted(files, work, cli):
    rng = np.random.default_rng(0)
    x = (rng.random((6, 1, 8, 8)) - 0.45) / 0.22  # mean/std normalised: about -2..2.5
    rc, out, err = cli(["quantize", files.float_model, "--calib", _npz(work, x=x, y=Y),
                        "--out", work / "q.npz", "--json"])
    assert rc == 0, err
    assert (work / "q.npz").is_file()


@pytest.mark.parametrize("case", ["no-class-folders", "empty-class", "bad-image", "mixed-size",
                                  "a-plain-file"])
def test_bad_image_folder(case, files, work, refused):
    d = work / "imgs"
    d.mkdir()
    if case == "empty-class":
        (d / "cat").mkdir()
        match = "has no images"
    elif case == "bad-image":
        (d / "cat").mkdir()
        (d / "cat" / "a.png").write_bytes(b"not a png")
        match = "cannot read image"
    elif case == "mixed-size":
        (d / "cat").mkdir()
        Image.new("L", (8, 8)).save(d / "cat" / "a.png")
        Image.new("L", (5, 5)).save(d / "cat" / "b.png")
        match = None
    elif case == "a-plain-file":
        d = work / "data.txt"
        d.write_text("x")
        match = "not a folder or an .npz"
    else:
        match = "no class sub-folders"
    if match is None:  # images are resized to the model's input: accepted
        return
    refused(["quantize", files.float_model, "--calib", d, "--out", work / "q.npz"], match)
    assert not (work / "q.npz").exists()


def test_calibration_data_missing(files, work, refused):
    refused(["quantize", files.float_model, "--calib", work / "none.npz", "--out",
             work / "q.npz"], "not found")


@pytest.mark.parametrize("size,match", [("0", "--calib-size"), ("-5", "--calib-size"),
                                        ("x", "invalid int")])
def test_bad_calib_size(size, match, files, refused):
    refused(["quantize", files.float_model, "--calib", files.data, f"--calib-size={size}"],
            match)


def test_calib_size_beyond_memory(files, work, refused, monkeypatch):
    monkeypatch.setattr("deepfpga.data.memory.available_bytes", lambda: 1 << 10)
    refused(["quantize", files.float_model, "--calib", files.data, "--out", work / "q.npz"],
            ["--calib-size", "GiB"])


def test_calib_size_beyond_memory_fails_early(refused, work, monkeypatch):
    """A request this machine cannot hold fails at once, before the data are read."""
    import time

    monkeypatch.setattr("deepfpga.data.memory.available_bytes", lambda: 256 << 20)
    t0 = time.perf_counter()
    refused(["quantize", "fmnist-vgg", "--calib", "fashion-mnist", "--calib-size", "100000",
             "--out", work / "q.npz"], ["--calib-size 100000", "GiB"])
    assert time.perf_counter() - t0 < 30


def test_streamed_calibration_estimate_is_bounded():
    """Calibration streams (issue 15): 60,000 Fashion-MNIST images fit in well under 2 GB
    (measured: 691 MB peak), so the early check does not refuse what would run."""
    from deepfpga.models import load_model
    from deepfpga.quant.calibrate import calibration_bytes

    g = load_model("fmnist-vgg")
    assert calibration_bytes(g, 60000) < 2 << 30
    assert calibration_bytes(g, 60000) > calibration_bytes(g, 1000)


@pytest.mark.parametrize("bits", ["4", "32", ""])
def test_bad_bits(bits, files, refused):
    refused(["quantize", files.float_model, "--calib", files.data, f"--bits={bits}"], "bits")


@pytest.mark.parametrize("text,match", [(b"\xff\xfe", "bits"), (b"a = = 1", "bits"),
                                        (b"[nope]\ndata = 8", "nope")])
def test_bad_bits_file(text, match, files, work, refused):
    (work / "b.toml").write_bytes(text)
    refused(["quantize", files.float_model, "--calib", files.data, "--bits-file",
             work / "b.toml", "--out", work / "q.npz"], match if match != "bits" else "b.toml")


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_bad_out(kind, files, work, bad_location, refused):
    path, match = bad_location(kind, ".npz")
    if kind == "empty":
        match = ".npz"  # an empty --out is not a .npz name
    refused(["quantize", files.float_model, "--calib", files.data, f"--out={path}"], match,
            keep=[work / "existing.npz"])


def test_out_not_npz(files, work, refused):
    refused(["quantize", files.float_model, "--calib", files.data, "--out", work / "q.bin"],
            ".npz")


def test_out_equal_to_the_model(files, work, refused):
    m = work / "m.npz"
    m.write_bytes(files.float_model.read_bytes())
    refused(["quantize", m, "--calib", files.data, "--out", m], "is also an input", keep=[m])


def test_out_checked_before_the_model_is_loaded(work, bad_location, refused):
    path, match = bad_location("file/", ".npz")
    refused(["quantize", "torch.nn:Conv2d", "--calib", "nothing", f"--out={path}"], match)
