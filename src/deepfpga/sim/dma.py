"""DMA transfer geometry shared by the functional machine and its hazard checks: n2 rows of n1
segments of `seg` bytes, seen as strided views of the DDR arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geom:
    """A DMA transfer: n2 rows of n1 segments of `seg` bytes, as strided views."""

    start: int
    n2: int
    s2: int
    n1: int
    s1: int
    seg: int

    @property
    def count(self) -> int:
        return self.n2 * self.n1 * self.seg

    @property
    def end(self) -> int:
        return self.start + (self.n2 - 1) * self.s2 + (self.n1 - 1) * self.s1 + self.seg

    def starts(self) -> np.ndarray:
        j = np.arange(self.n2, dtype=np.int64)[:, None] * self.s2
        i = np.arange(self.n1, dtype=np.int64)[None, :] * self.s1
        return (self.start + j + i).reshape(-1)

    def indices(self) -> np.ndarray:
        return (self.starts()[:, None] + np.arange(self.seg, dtype=np.int64)).reshape(-1)

    def overlapping(self) -> bool:
        row = (self.n1 - 1) * self.s1 + self.seg
        return (self.n1 > 1 and self.s1 < self.seg) or (self.n2 > 1 and self.s2 < row)

    def view(self, arr: np.ndarray, base: int = 0) -> np.ndarray:
        """The (n2, n1, seg) view of the transfer's bytes in the 1-D `arr` (from `base`)."""
        st = arr.strides[0]
        return np.lib.stride_tricks.as_strided(
            arr[self.start - base:], shape=(self.n2, self.n1, self.seg),
            strides=(self.s2 * st, self.s1 * st, st))

    def batch_view(self, arr: np.ndarray, base: int) -> np.ndarray:
        """The (batch, n2, n1, seg) view in the 2-D (batch, bytes) `arr`."""
        sb, st = arr.strides
        return np.lib.stride_tricks.as_strided(
            arr[:, self.start - base:], shape=(arr.shape[0], self.n2, self.n1, self.seg),
            strides=(sb, self.s2 * st, self.s1 * st, st))


class Gather:
    """Index-array stand-in for a view (a transfer straddling the arena's edge)."""

    def __init__(self, arr: np.ndarray, idx: np.ndarray):
        self.arr, self.idx = arr, idx

    def __getitem__(self, _: object) -> np.ndarray:
        return self.arr[self.idx]

    def __setitem__(self, _: object, value: object) -> None:
        self.arr[self.idx] = value
