"""Dataset loaders: real Fashion-MNIST, image folders, npz files, and every refusal."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfpga.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    Dataset,
    load_dataset,
    load_fashion_mnist,
    parse_idx,
    read_idx,
)
from deepfpga.errors import InputError

needs_fmnist = pytest.mark.skipif(
    not (FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(">u1").tobytes()


def write_fmnist(root: Path, n: int = 5, split: str = "t10k", gz: bool = True,
                 labels: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8) if labels is None else labels
    for stem, arr in ((f"{split}-images-idx3-ubyte", images), (f"{split}-labels-idx1-ubyte",
                                                               labels)):
        data = idx_bytes(arr)
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (root / stem).write_bytes(data)
    return images


# --- real Fashion-MNIST ------------------------------------------------------------------------
@needs_fmnist
@pytest.mark.parametrize(("split", "n"), [("train", 60000), ("test", 10000)])
def test_fashion_mnist_real(split: str, n: int) -> None:
    ds = load_dataset("fashion-mnist", split)
    assert len(ds) == n
    assert ds.x.shape == (n, 1, 28, 28) and ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64
    assert ds.classes == FASHION_MNIST_CLASSES and len(ds.classes) == 10
    assert set(np.unique(ds.y)) == set(range(10))
    assert np.bincount(ds.y).tolist() == [n // 10] * 10  # Fashion-MNIST is exactly balanced
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.sample_shape == (1, 28, 28)
    assert not ds.x.flags.writeable


@needs_fmnist
def test_fashion_mnist_alias_limit_and_scaling() -> None:
    ds = load_dataset("fmnist", "test", limit=7)
    assert len(ds) == 7
    raw = read_idx(FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz")[:7]
    np.testing.assert_array_equal(ds.x[:, 0], raw.astype(np.float32) / 255)
    assert ds.y[0] == 9  # first test image is an ankle boot
    assert load_dataset("FMNIST", limit=3).name == "fashion-mnist-test"


@needs_fmnist
def test_fashion_mnist_shape_mismatch_refused() -> None:
    with pytest.raises(InputError, match="3"):
        load_dataset("fmnist", limit=2, channels=3)
    with pytest.raises(InputError, match="32x32"):
        load_dataset("fmnist", limit=2, size=32)
    assert len(load_dataset("fmnist", limit=2, channels=1, size=(28, 28))) == 2


def test_fashion_mnist_from_root(tmp_path: Path) -> None:
    images = write_fmnist(tmp_path, gz=False)
    ds = load_fashion_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(ds.x[:, 0] * 255, images.astype(np.float32))


def test_unknown_split_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="split"):
        load_dataset("fmnist", "validation")
    with pytest.raises(InputError, match="missing file .*t10k-images"):
        load_fashion_mnist("test", root=tmp_path)


# --- IDX parsing ----------------------------------------------------------------------------
def test_idx_roundtrip_and_big_endian() -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a)), a)
    b = np.array([1, -2, 300], dtype=">i4")
    data = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + b.tobytes()
    out = parse_idx(data)
    assert out.tolist() == [1, -2, 300] and out.dtype.isnative


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad IDX magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown type code"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 4, "size mismatch"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3, "size mismatch"),
    ],
)
def test_corrupt_idx_refused(data: bytes, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_idx(data)


def test_corrupt_idx_files_refused(tmp_path: Path) -> None:
    write_fmnist(tmp_path)
    good = (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="gzip"):
        load_fashion_mnist("test", root=tmp_path)
    raw = gzip.decompress(good)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(InputError, match="size mismatch"):
        load_fashion_mnist("test", root=tmp_path)
    # images and labels swapped: the rank check catches it
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()
    )
    with pytest.raises(InputError, match=r"\(N, 28, 28\)"):
        load_fashion_mnist("test", root=tmp_path)


def test_fmnist_count_mismatch_and_bad_labels(tmp_path: Path) -> None:
    write_fmnist(tmp_path, n=5, labels=np.zeros(4, np.uint8))
    with pytest.raises(InputError, match="5 images but 4 labels"):
        load_fashion_mnist("test", root=tmp_path)
    write_fmnist(tmp_path, n=3, labels=np.array([1, 10, 2], np.uint8))
    with pytest.raises(InputError, match="label 10 .* out of range"):
        load_fashion_mnist("test", root=tmp_path)


# --- image folders ----------------------------------------------------------------------------
def make_folder(root: Path, counts: dict[str, int], size=(6, 5), mode="L", ext="png") -> None:
    rng = np.random.default_rng(1)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                root / cls / f"img{i}.{ext}"
            )


def test_image_folder(tmp_path: Path) -> None:
    make_folder(tmp_path, {"cat": 2, "dog": 3})
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "dog" / "readme.md").write_text("ignored")
    ds = load_dataset(tmp_path)
    assert ds.classes == ("cat", "dog")
    assert ds.x.shape == (5, 1, 5, 6)  # width 6, height 5
    assert ds.y.tolist() == [0, 1, 0, 1, 1]  # round-robin over the classes
    expected = np.asarray(Image.open(tmp_path / "dog" / "img0.png"), np.float32) / 255
    np.testing.assert_array_equal(ds.x[1, 0], expected)
    assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
    head = load_dataset(tmp_path, limit=2)
    assert head.y.tolist() == [0, 1]


def test_image_folder_converts_channels_and_size(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 1}, size=(10, 10), mode="RGB", ext="jpg")
    make_folder(tmp_path, {"b": 1}, size=(4, 4), mode="L")
    with pytest.raises(InputError, match="pass size="):
        load_dataset(tmp_path)
    ds = load_dataset(tmp_path, channels=1, size=28)
    assert ds.x.shape == (2, 1, 28, 28) and ds.x.dtype == np.float32
    ds3 = load_dataset(tmp_path, size=(8, 12))
    assert ds3.x.shape == (2, 3, 8, 12)  # an RGB image present: 3 channels inferred
    with pytest.raises(InputError, match="channels must be 1 or 3"):
        load_dataset(tmp_path, channels=2, size=8)
    with pytest.raises(InputError, match="size must be"):
        load_dataset(tmp_path, size=(0, 4))


def test_image_folder_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no class sub-folders"):
        load_dataset(tmp_path)
    make_folder(tmp_path, {"a": 1})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("not an image")
    with pytest.raises(InputError, match="class folder .*empty has no images"):
        load_dataset(tmp_path)
    (tmp_path / "empty" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="cannot read image .*bad.png"):
        load_dataset(tmp_path)


# --- npz ------------------------------------------------------------------------------------
def test_npz_uint8_float_and_classes(tmp_path: Path) -> None:
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([1, 0]))
    ds = load_dataset(tmp_path / "a.npz")
    assert ds.x.shape == (2, 1, 3, 4) and ds.classes == ("0", "1") and ds.name == "a"
    np.testing.assert_array_equal(ds.x[:, 0] * 255, x.astype(np.float32))
    xf = np.random.default_rng(0).random((3, 3, 2, 2)).astype(np.float64)
    np.savez(tmp_path / "b.npz", x=xf, y=np.array([0, 2, 1], np.int32),
             classes=np.array(["r", "g", "b"]))
    ds = load_dataset(tmp_path / "b.npz", limit=2, channels=3, size=2)
    assert ds.classes == ("r", "g", "b") and len(ds) == 2 and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x, xf[:2].astype(np.float32))


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((2, 4, 4))}, "missing array 'y'"),
        ({"y": np.zeros(2, int)}, "missing array 'x'"),
        ({"x": np.zeros((0, 4, 4)), "y": np.zeros(0, int)}, "empty"),
        ({"x": np.zeros((3, 4, 4)), "y": np.zeros(2, int)}, "3 samples but y has 2"),
        ({"x": np.zeros((2, 4)), "y": np.zeros(2, int)}, "x must have shape"),
        ({"x": np.zeros((2, 1, 1, 4, 4)), "y": np.zeros(2, int)}, "x must have shape"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros((2, 1), int)}, "y must have shape"),
        ({"x": np.zeros((2, 4, 4)), "y": np.array([0.0, 1.5])}, "integer labels"),
        ({"x": np.zeros((2, 4, 4)), "y": np.array([True, False])}, "integer labels"),
        ({"x": np.zeros((2, 4, 4)), "y": np.array([0, -1])}, "negative label"),
        ({"x": np.zeros((2, 4, 4)), "y": np.array([0, 3]), "classes": np.array(["a", "b"])},
         "label 3 .* out of range 0..1"),
        ({"x": np.full((2, 4, 4), np.nan), "y": np.zeros(2, int)}, "non-finite"),
        ({"x": np.full((2, 4, 4), np.inf), "y": np.zeros(2, int)}, "non-finite"),
        ({"x": np.full((2, 4, 4), 1e300), "y": np.zeros(2, int)}, "beyond float32"),
        ({"x": np.full((2, 4, 4), 300, np.int32), "y": np.zeros(2, int)}, "0..255"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros(2, int), "classes": np.array([1, 2])},
         "classes must be"),
    ],
)
def test_npz_refusals(tmp_path: Path, arrays: dict, match: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=match):
        load_dataset(tmp_path / "d.npz")


def test_npz_pickle_corrupt_and_shape_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", x=np.array([object()], dtype=object), y=np.zeros(1, int))
    with pytest.raises(InputError, match="unreadable npz"):
        load_dataset(tmp_path / "p.npz")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(InputError, match="corrupt npz"):
        load_dataset(tmp_path / "c.npz")
    np.savez(tmp_path / "s.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.zeros(2, int))
    with pytest.raises(InputError, match="expects 3"):
        load_dataset(tmp_path / "s.npz", channels=3)
    with pytest.raises(InputError, match="28x28"):
        load_dataset(tmp_path / "s.npz", size=28)


def test_spec_refusals(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(InputError, match="not a folder or an .npz"):
        load_dataset(tmp_path / "data.csv")
    for bad in (0, -3, 1.5, True):
        with pytest.raises(InputError, match="limit"):
            load_dataset(tmp_path, limit=bad)


# --- the Dataset container --------------------------------------------------------------------
def test_dataset_validation() -> None:
    x = np.zeros((2, 1, 3, 3), np.float32)
    ok = Dataset(x, np.array([0, 1]), ("a", "b"), "t")
    assert len(ok) == 2 and ok.head(1).y.tolist() == [0] and ok.head(None) is ok
    with pytest.raises(ValueError, match="read-only"):
        ok.x[0, 0, 0, 0] = 1
    cases = [
        ((np.zeros((2, 3, 3)), np.array([0, 1]), ("a", "b")), "rank 4"),
        ((np.zeros((0, 1, 3, 3)), np.zeros(0, int), ("a",)), "empty"),
        ((x, np.array([0, 1, 1]), ("a", "b")), "2 images but 3 labels"),
        ((x, np.array([0.0, 1.0]), ("a", "b")), "integers"),
        ((x, np.array([0, 2]), ("a", "b")), "out of range"),
        ((x, np.array([0, 0]), ()), "no classes"),
        ((x, np.array([0, 0]), ("a", "a")), "duplicate"),
        ((np.full((2, 1, 3, 3), np.nan), np.array([0, 1]), ("a", "b")), "image 0 .*non-finite"),
        ((x.astype(str), np.array([0, 1]), ("a", "b")), "numeric"),
    ]
    for (xx, yy, cc), match in cases:
        with pytest.raises(InputError, match=match):
            Dataset(xx, yy, cc, "t")


def test_npz_already_normalised_floats_are_accepted(tmp_path: Path) -> None:
    """ImageNet-style mean/std data (about -2..2.6) is what real preprocessing gives."""
    x = np.linspace(-2.1, 2.64, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    ds = load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(ds.x, x)


@pytest.mark.parametrize("zipped", [False, True])
def test_idx_limit_reads_only_the_first_entries(tmp_path: Path, zipped: bool) -> None:
    a = (np.arange(5 * 3 * 4) % 251).astype(np.uint8).reshape(5, 3, 4)
    raw = idx_bytes(a)
    path = tmp_path / ("a.idx.gz" if zipped else "a.idx")
    path.write_bytes(gzip.compress(raw) if zipped else raw)
    for limit in (0, 1, 3, 5, 9):
        np.testing.assert_array_equal(read_idx(path, limit), a[:limit])
    short = tmp_path / "short.idx"
    short.write_bytes(raw[:-13])          # entry 3 (the fourth) is incomplete
    np.testing.assert_array_equal(read_idx(short, 3), a[:3])
    with pytest.raises(InputError, match="size mismatch"):
        read_idx(short, 4)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(InputError, match="unknown type code"):
        read_idx(bad, 1)
