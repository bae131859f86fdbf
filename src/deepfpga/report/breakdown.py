"""Where a layer's time goes: computing, transferring, both at once, or waiting.

The timing simulator gives every instruction a start and end cycle. A layer's latency is its
exclusive window (from the latest end of the layers before it to its own last end). Inside that
window this module measures the union of the layer's CALC intervals and the union of its DMA
(LOAD/SAVE) intervals, and splits the window into four parts that add up to the latency:
compute only, overlapped (compute and transfer at once), transfer only, and waiting (neither:
pipeline fill, or DMA of a neighbouring layer holding the DDR port).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from deepfpga.hw.isa import Calc, Instruction, Load, Save


@dataclass(frozen=True)
class TimeSplit:
    layer: int            # the instructions' `layer` field
    window_cycles: int    # the layer's exclusive latency
    compute_only: int
    overlap: int
    transfer_only: int
    waiting: int
    compute_busy: int     # CALC busy inside the window (compute_only + overlap)
    transfer_busy: int    # DMA busy inside the window (transfer_only + overlap)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _union(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
    """Disjoint sorted intervals covering [starts, ends) clipped to [lo, hi)."""
    s = np.clip(starts, lo, hi)
    e = np.clip(ends, lo, hi)
    keep = e > s
    s, e = s[keep], e[keep]
    if not len(s):
        return []
    order = np.argsort(s, kind="stable")
    s, e = s[order], np.maximum.accumulate(e[order])
    # A new interval starts where s exceeds every earlier end.
    new = np.ones(len(s), bool)
    new[1:] = s[1:] > e[:-1]
    idx = np.flatnonzero(new)
    ends_at = np.append(idx[1:] - 1, len(s) - 1)
    return list(zip(s[idx].tolist(), e[ends_at].tolist(), strict=True))


def _length(iv: list[tuple[int, int]]) -> int:
    return sum(b - a for a, b in iv)


def _intersection(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    i = j = total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def time_splits(instructions: Sequence[Instruction], start: np.ndarray, end: np.ndarray
                ) -> list[TimeSplit]:
    """One TimeSplit per layer, in order of the layers' first instruction (as the timing
    simulator orders `Timing.layers`)."""
    start = np.asarray(start, np.int64)
    end = np.asarray(end, np.int64)
    if len(start) != len(instructions) or len(end) != len(instructions):
        raise ValueError("start/end cycles must give one entry per instruction")
    lid = np.array([i.layer for i in instructions], np.int64)
    calc = np.array([isinstance(i, Calc) for i in instructions], bool)
    dma = np.array([isinstance(i, Load | Save) for i in instructions], bool)
    on = calc | dma
    if not on.any():
        return []
    ids, first = np.unique(lid[on], return_index=True)
    ids = ids[np.argsort(first)]
    out: list[TimeSplit] = []
    latest = 0
    for layer in ids.tolist():
        mine = on & (lid == layer)
        lend = int(end[mine].max())
        lo, hi = latest, max(latest, lend)
        latest = max(latest, lend)
        c = _union(start[mine & calc], end[mine & calc], lo, hi)
        d = _union(start[mine & dma], end[mine & dma], lo, hi)
        both = _intersection(c, d)
        cb, db = _length(c), _length(d)
        window = hi - lo
        out.append(TimeSplit(layer=layer, window_cycles=window, compute_only=cb - both,
                             overlap=both, transfer_only=db - both,
                             waiting=window - (cb + db - both), compute_busy=cb,
                             transfer_busy=db))
    return out
