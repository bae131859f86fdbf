"""DDR allocation: constants first, then feature maps reusing the space of dead ones.

A region is live over schedule positions [first, last] (inclusive): a weight region for the whole
run, a tensor from the step that writes it (the input: −1) to the last step that reads it (graph
outputs: to the end, when the host reads them). Two regions may share bytes only if their
lifetimes are disjoint; `check_no_overlap` proves it for a finished allocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfpga.compiler.layout import align
from deepfpga.errors import InputError


@dataclass(frozen=True)
class Region:
    name: str
    kind: str            # "weights", "bias", "input", "fmap", "output"
    start: int
    size: int
    first: int
    last: int
    writable: bool

    @property
    def end(self) -> int:
        return self.start + self.size

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "start": self.start, "size": self.size,
                "live": [self.first, self.last], "writable": self.writable}

    @staticmethod
    def from_dict(k: int, d: Any) -> Region:
        try:
            first, last = (int(v) for v in d["live"])
            return Region(str(d["name"]), str(d["kind"]), int(d["start"]), int(d["size"]),
                          first, last, bool(d["writable"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"manifest: regions[{k}] is malformed ({e!r})") from None


def first_fit(requests: Sequence[tuple[str, int, int, int]], base: int
              ) -> dict[str, int]:
    """Place (name, size, first, last) requests, in the order given, each at the lowest
    address ≥ base that collides with no placed request whose lifetime intersects its own."""
    placed: list[tuple[int, int, int, int]] = []   # start, end, first, last
    out: dict[str, int] = {}
    for name, size, first, last in requests:
        busy = sorted((s, e) for s, e, f, l in placed if f <= last and first <= l)
        addr = base
        for s, e in busy:
            if addr + size <= s:
                break
            addr = max(addr, align(e))
        out[name] = addr
        placed.append((addr, addr + size, first, last))
    return out


def check_no_overlap(regions: Sequence[Region], ddr_size: int) -> int:
    """Refuse regions of which two live at the same time share a byte, or one lies outside the
    `ddr_size`-byte DDR image. Returns the number of region pairs that live together."""
    if not regions:
        return 0
    size = ddr_size
    names = [r.name for r in regions]
    start = np.array([r.start for r in regions], dtype=np.int64)
    end = start + np.array([r.size for r in regions], dtype=np.int64)
    first = np.array([r.first for r in regions], dtype=np.int64)
    last = np.array([r.last for r in regions], dtype=np.int64)
    for k in np.flatnonzero((start < 0) | (end > size) | (end < start)):
        raise InputError(f"region {names[k]!r} [{start[k]}, {end[k]}) lies outside the"
                         f" {size}-byte DDR image")
    for k in np.flatnonzero(first > last):
        raise InputError(f"region {names[k]!r} has an empty lifetime {first[k]}..{last[k]}")
    live = (first[:, None] <= last[None, :]) & (first[None, :] <= last[:, None])
    nonempty = (end > start)
    touch = (start[:, None] < end[None, :]) & (start[None, :] < end[:, None])
    touch &= nonempty[:, None] & nonempty[None, :]
    bad = np.triu(live & touch, k=1)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(f"regions {names[i]!r} [{start[i]}, {end[i]}) live {first[i]}..{last[i]}"
                         f" and {names[j]!r} [{start[j]}, {end[j]}) live {first[j]}..{last[j]}"
                         " overlap while both are live")
    return int(np.triu(live, k=1).sum())
