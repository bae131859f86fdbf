"""The labelled image set every stage evaluates on.

Pixel convention (shared by the loaders, the training script and the reference models):
float32 in [0, 1], i.e. raw 8-bit pixel / 255, no mean subtraction, layout (N, C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images `x` float32 (N, C, H, W), labels `y` int64 (N,) indexing `classes`.

    The constructor validates everything and stores read-only copies, so a Dataset that exists is
    well formed: N > 0, finite pixels, integer labels in range(len(classes)).
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x), np.asarray(self.y)
        where = f"dataset {self.name!r}"
        if x.ndim != 4:
            raise InputError(f"{where}: images must have rank 4 (N, C, H, W), got shape {x.shape}")
        if x.shape[0] == 0:
            raise InputError(f"{where}: no images (empty dataset)")
        if min(x.shape[1:]) <= 0:
            raise InputError(f"{where}: image shape {x.shape[1:]} has an empty dimension")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputError(f"{where}: images must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1))[0])
            raise InputError(f"{where}: image {bad} has non-finite values (NaN or inf)")
        y = _labels(y, where)
        if len(y) != len(x):
            raise InputError(f"{where}: {len(x)} images but {len(y)} labels")
        classes = tuple(str(c) for c in self.classes)
        if not classes:
            raise InputError(f"{where}: no classes")
        if len(set(classes)) != len(classes):
            raise InputError(f"{where}: duplicate class names in {classes}")
        out = (y < 0) | (y >= len(classes))
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise InputError(
                f"{where}: label {int(y[i])} of sample {i} is out of range 0..{len(classes) - 1}"
            )
        object.__setattr__(self, "x", _readonly(x))
        object.__setattr__(self, "y", _readonly(y))
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """Per-sample shape (C, H, W), as in the graph IR."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def head(self, limit: int | None) -> Dataset:
        """The first `limit` samples (all when `limit` is None)."""
        if limit is None:
            return self
        if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit <= 0:
            raise InputError(f"limit must be a positive integer, got {limit!r}")
        if limit >= len(self):
            return self
        return Dataset(self.x[:limit], self.y[:limit], self.classes, self.name)


def _labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise InputError(f"{where}: labels must have rank 1 (N,), got shape {y.shape}")
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{where}: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)
