"""`load_dataset`: Fashion-MNIST (IDX), a folder of images per class, or an `.npz` of arrays.

All loaders return a `Dataset` with pixels as float32 in (N, C, H, W) layout: 8-bit images as
value / 255 in [0, 1], no mean subtraction (the convention the reference models are trained
with); float arrays from an `.npz` as given (they may be normalised already).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deepfpga.data.dataset import Dataset
from deepfpga.data.idx import read_idx
from deepfpga.errors import InputError
from deepfpga.fileio import NPZ_READ_ERRORS

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_NAMES = ("fashion-mnist", "fmnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

SizeArg = int | tuple[int, int] | None
MAX_CLASSES = 100_000  # labels 0..max(y) name the classes when an .npz has no `classes` array


def load_dataset(
    spec: str | os.PathLike[str],
    split: str = "test",
    limit: int | None = None,
    *,
    channels: int | None = None,
    size: SizeArg = None,
) -> Dataset:
    """Load a labelled image set.

    `spec` is `fashion-mnist` (alias `fmnist`), a directory `DIR/<class>/*.png|jpg`, or an `.npz`
    with arrays `x` and `y` (optional `classes`). `split` ("train"/"test") selects the
    Fashion-MNIST part; folders and npz files are one set each and ignore it. `limit` keeps the
    first N samples. `channels` (1 or 3) and `size` (int or (H, W)) convert folder images to the
    model's input; for Fashion-MNIST and npz they must match the data (checked, never resampled).
    """
    _check_limit(limit)
    text = os.fspath(spec)
    if text.lower() in FASHION_MNIST_NAMES:
        return load_fashion_mnist(split, limit, channels=channels, size=size)
    path = Path(text)
    if not path.exists():
        raise InputError(
            f"dataset {text!r} not found: expected 'fashion-mnist' (or 'fmnist'), a folder of "
            "class sub-folders, or an .npz file"
        )
    if path.is_dir():
        return load_image_folder(path, limit, channels=channels, size=size)
    if path.suffix.lower() == ".npz":
        return load_npz(path, limit, channels=channels, size=size)
    raise InputError(f"dataset {text!r}: not a folder or an .npz file")


def load_fashion_mnist(
    split: str = "test",
    limit: int | None = None,
    *,
    root: str | os.PathLike[str] = FASHION_MNIST_ROOT,
    channels: int | None = None,
    size: SizeArg = None,
) -> Dataset:
    """Fashion-MNIST from its four IDX files in `root` (gzip-compressed or plain)."""
    if split not in _SPLIT_PREFIX:
        raise InputError(f"unknown Fashion-MNIST split {split!r} (use 'train' or 'test')")
    _check_limit(limit)
    root = Path(root)
    prefix = _SPLIT_PREFIX[split]
    # with a limit only the first images are decompressed (the training set is 47 MB)
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), limit)
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), limit)
    src = f"Fashion-MNIST {split} in {root}"
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise InputError(
            f"{src}: images must be uint8 of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise InputError(f"{src}: labels must be uint8 of shape (N,), got {labels.shape}")
    if len(images) != len(labels):
        raise InputError(f"{src}: {len(images)} images but {len(labels)} labels")
    _check_fixed_shape(src, (1, 28, 28), channels, size)
    n = len(images) if limit is None else min(limit, len(images))
    x = images[:n, None].astype(np.float32) / np.float32(255.0)
    return Dataset(x, labels[:n].astype(np.int64), FASHION_MNIST_CLASSES, f"fashion-mnist-{split}")


def load_image_folder(
    root: str | os.PathLike[str],
    limit: int | None = None,
    *,
    channels: int | None = None,
    size: SizeArg = None,
) -> Dataset:
    """Images in `root/<class>/*.png|jpg|jpeg`; classes are the sorted sub-folder names.

    Samples are ordered round-robin over the classes (1st image of every class, then the 2nd,
    ...), files sorted by name, so that `limit` keeps a class-balanced head. `channels` None means
    1 if every image is greyscale, else 3. `size` None requires all images to share one size;
    otherwise images are resized (bilinear) to it.
    """
    from PIL import Image  # lazy: only folder datasets need Pillow

    _check_limit(limit)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    if channels is not None and channels not in (1, 3):
        raise InputError(f"channels must be 1 or 3, got {channels!r}")
    hw = _size_pair(size)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InputError(f"image folder {root} has no class sub-folders (expected DIR/<class>/*)")
    per_class: list[list[Path]] = []
    for d in class_dirs:
        files = sorted(
            p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise InputError(f"class folder {d} has no images (*.png, *.jpg, *.jpeg)")
        per_class.append(files)
    order = sorted(
        ((i, c, f) for c, files in enumerate(per_class) for i, f in enumerate(files)),
        key=lambda t: (t[0], t[1]),
    )
    if limit is not None:
        order = order[:limit]

    opened = []
    for _, c, f in order:
        try:
            with Image.open(f) as im:
                im.load()
                opened.append((c, f, im.copy()))
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"cannot read image {f}: {e}") from None
    if channels is None:
        grey = {"1", "L", "LA", "I", "I;16", "F"}
        channels = 1 if all(im.mode in grey for _, _, im in opened) else 3
    mode = "L" if channels == 1 else "RGB"
    if hw is None:
        w0, h0 = opened[0][2].size
        for _, f, im in opened:
            if im.size != (w0, h0):
                raise InputError(
                    f"image {f} is {im.size[0]}x{im.size[1]} but {opened[0][1]} is {w0}x{h0}; "
                    "pass size= to resize all images"
                )
        hw = (h0, w0)
    arrays = []
    for _, _, im in opened:
        im = im.convert(mode)
        if im.size != (hw[1], hw[0]):
            im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    x = np.stack(arrays).astype(np.float32) / np.float32(255.0)
    y = np.array([c for _, c, _ in order], dtype=np.int64)
    return Dataset(x, y, tuple(d.name for d in class_dirs), root.name or str(root))


def load_npz(
    path: str | os.PathLike[str],
    limit: int | None = None,
    *,
    channels: int | None = None,
    size: SizeArg = None,
) -> Dataset:
    """Arrays `x` ((N, C, H, W) or (N, H, W)) and `y` (N,) integer; optional `classes` (strings).

    `x` as uint8 (or any integer type holding 0..255) is divided by 255; float `x` is used as
    given (in [0, 1], or already normalised), only NaN and inf are refused.
    """
    _check_limit(limit)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            for k in ("x", "y"):
                if k not in keys:
                    raise InputError(f"{path}: missing array {k!r} (has {sorted(keys)})")
            x, y = z["x"], z["y"]
            classes = z["classes"] if "classes" in keys else None
    except InputError:
        raise
    except ValueError as e:  # object arrays need pickle, which we refuse
        raise InputError(f"{path}: unreadable npz ({e})") from None
    except NPZ_READ_ERRORS as e:
        raise InputError(f"{path}: corrupt npz file ({e})") from None

    src = str(path)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise InputError(f"{src}: x must have shape (N, C, H, W) or (N, H, W), got {x.shape}")
    if y.ndim != 1:
        raise InputError(f"{src}: y must have shape (N,), got {y.shape}")
    if len(x) != len(y):
        raise InputError(f"{src}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise InputError(f"{src}: no samples (empty dataset)")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{src}: y must hold integer labels, got dtype {y.dtype}")
    _check_fixed_shape(src, x.shape[1:], channels, size)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    x = _scale_pixels(src, x)
    if classes is None:
        if (y < 0).any():
            raise InputError(f"{src}: negative label {int(y.min())} in y")
        if int(y.max()) >= MAX_CLASSES:
            raise InputError(f"{src}: label {int(y.max())} in y implies {int(y.max()) + 1:,}"
                             f" classes (at most {MAX_CLASSES:,} without a 'classes' array)")
        names = tuple(str(i) for i in range(int(y.max()) + 1))
    else:
        if classes.ndim != 1 or classes.dtype.kind not in "UT":
            raise InputError(f"{src}: classes must be a 1-D array of strings")
        names = tuple(str(c) for c in classes)
    return Dataset(x, y.astype(np.int64), names, path.stem)


def _scale_pixels(src: str, x: np.ndarray) -> np.ndarray:
    if x.dtype == np.bool_:
        raise InputError(f"{src}: x must be numeric pixels, got dtype bool")
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise InputError(
                f"{src}: integer pixels must be in 0..255, got {int(x.min())}..{int(x.max())}"
            )
        return x.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{src}: x must be numeric pixels, got dtype {x.dtype}")
    # Float pixels are taken as given: already-normalised data (e.g. ImageNet mean/std, about
    # -2..2.6) is what a real user's preprocessing produces, and the input format is calibrated
    # on the data anyway. Only what no fixed-point format can hold is refused.
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)
    bad = ~np.isfinite(x32)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(x32), -1).any(axis=1))[0])
        what = "NaN or inf" if not np.isfinite(x[i]).all() else "values beyond float32"
        raise InputError(f"{src}: x sample {i} has non-finite values ({what})")
    return x32


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise InputError(f"missing file {root / (stem + '.gz')}")


def _check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit <= 0:
        raise InputError(f"limit must be a positive integer, got {limit!r}")


def _size_pair(size: SizeArg) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if (
        len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | np.integer) for v in pair)
        or min(pair) <= 0
    ):
        raise InputError(f"size must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def _check_fixed_shape(
    src: str, shape: tuple[int, ...], channels: int | None, size: SizeArg
) -> None:
    """Fixed-size data is checked against the requested input, never resampled."""
    c, h, w = (int(d) for d in shape)
    if channels is not None and channels != c:
        raise InputError(f"{src}: images have {c} channel(s), the model expects {channels}")
    hw = _size_pair(size)
    if hw is not None and hw != (h, w):
        raise InputError(f"{src}: images are {h}x{w}, the model expects {hw[0]}x{hw[1]}")
