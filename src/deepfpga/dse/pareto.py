"""Pareto dominance over evaluated points: fps up, DSP / BRAM / LUT share down.

Objective vectors are minimised: (−fps, DSP share, BRAM share, LUT share). Sorting and
crowding are NSGA-II's (Deb et al., 2002); ties are broken by the point's key so every result is
a pure function of the set of points, whatever order they were evaluated in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Objectives = tuple[float, ...]
OBJECTIVES = ("fps", "dsp", "bram36", "lut")


def objectives(record: Mapping[str, Any]) -> Objectives:
    share = record["resources"]["share"]
    return (-float(record["metrics"]["fps"]), float(share["dsp"]), float(share["bram36"]),
            float(share["lut"]))


def dominates(a: Objectives, b: Objectives) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def nondominated_sort(objs: Sequence[Objectives]) -> list[list[int]]:
    """Indices in fronts: front 0 is dominated by nothing, front k only by fronts < k."""
    n = len(objs)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(objs[i], objs[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(objs[j], objs[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    fronts = []
    current = [i for i in range(n) if beaten_by[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return fronts


def crowding(objs: Sequence[Objectives], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each member of `front` (extremes: infinite)."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: float("inf") for i in front}
    for m in range(len(objs[front[0]])):
        order = sorted(front, key=lambda i: (objs[i][m], i))
        lo, hi = objs[order[0]][m], objs[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = float("inf")
        if hi == lo:
            continue
        for k in range(1, len(order) - 1):
            dist[order[k]] += (objs[order[k + 1]][m] - objs[order[k - 1]][m]) / (hi - lo)
    return dist


def pareto_front(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The non-dominated records (status ok), fastest first. Of points with equal objectives
    (they differ only in what no objective sees, e.g. the FC share of a buffer that FC layers
    do not fill) the first by key stands for all."""
    # In best-first (lexicographic) order a point's dominators all come before it, and if any
    # point dominates it, a front member does: comparing with the front so far is enough.
    front: list[Mapping[str, Any]] = []
    kept: list[Objectives] = []
    for r in sorted((r for r in records if r.get("status") == "ok"), key=rank_key):
        o = objectives(r)
        if not any(f == o or dominates(f, o) for f in kept):
            front.append(r)
            kept.append(o)
    return front


def rank_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """Best first: most fps, then least DSP, BRAM and LUT share, then the key."""
    return (*objectives(record), record["key"])


def best(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    ok = [r for r in records if r.get("status") == "ok"]
    return min(ok, key=rank_key) if ok else None
