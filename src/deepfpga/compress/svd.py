"""SVD factoring of fully connected layers (paper §3, §4).

A Linear layer y = W x + b with W (out × in) is replaced by two Linear layers
`<name>_a` (in → r, no bias) and `<name>_b` (r → out, with b), from the truncated SVD
W ≈ U_r S_r V_rᵀ. The singular values are split evenly between the factors,
A = √S_r V_rᵀ and B = U_r √S_r, so that B·A = U_r S_r V_rᵀ and both factors have comparable
dynamic ranges: each fixed-point factor gets the same share of the scale, so neither needs many
more integer bits than the other (see docs/svd.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from deepfpga.errors import InputError
from deepfpga.ir.graph import Graph
from deepfpga.ir.layers import Linear


@dataclass(frozen=True)
class RankSpec:
    """How to choose a layer's rank: exactly one of `rank`, `reduction` (fraction of the layer's
    weights to remove, 0 < reduction < 1) or `energy` (fraction of Σσ² to keep, 0 < energy <= 1;
    needs weights)."""

    rank: int | None = None
    reduction: float | None = None
    energy: float | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("rank", "reduction", "energy") if getattr(self, k) is not None]
        if len(given) != 1:
            raise InputError(
                f"a rank spec needs exactly one of rank, reduction, energy (got {given or 'none'})"
            )
        if self.reduction is not None and not 0 < self.reduction < 1:
            raise InputError(f"reduction must be in (0, 1), got {self.reduction}")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise InputError(f"energy must be in (0, 1], got {self.energy}")

    def describe(self) -> str:
        if self.rank is not None:
            return f"rank {self.rank}"
        if self.reduction is not None:
            return f"reduction {self.reduction:g}"
        return f"energy {self.energy:g}"


@dataclass(frozen=True)
class SvdLayerReport:
    layer: str
    out_features: int
    in_features: int
    rank: int
    weights_before: int  # weight-matrix entries (biases are unchanged and not counted)
    weights_after: int
    reduction: float  # 1 - after/before
    rel_error: float | None  # ||W - BA||_F / ||W||_F, None without weights
    energy_kept: float | None  # Σ_{i<r} σ_i² / Σ σ_i², None without weights


@dataclass(frozen=True)
class SvdResult:
    graph: Graph
    layers: tuple[SvdLayerReport, ...]


def rank_for_reduction(out_features: int, in_features: int, reduction: float) -> int:
    """The largest rank r whose factors have at most (1 − reduction)·out·in weights, i.e. that
    removes at least `reduction` of the layer's weights."""
    if not 0 < reduction < 1:
        raise InputError(f"reduction must be in (0, 1), got {reduction}")
    r = math.floor((1 - reduction) * out_features * in_features / (out_features + in_features))
    if r < 1:
        raise InputError(
            f"a {out_features}x{in_features} layer cannot lose {reduction:.1%} of its weights"
            " (even rank 1 keeps more)"
        )
    return r


def rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    """The smallest rank r whose leading singular values keep `energy` of Σσ²."""
    if not 0 < energy <= 1:
        raise InputError(f"energy must be in (0, 1], got {energy}")
    s2 = np.sort(np.asarray(singular_values, np.float64))[::-1] ** 2
    if s2.size == 0 or s2.sum() == 0:
        raise InputError("no non-zero singular values")
    frac = np.cumsum(s2) / s2.sum()
    # Tolerate rounding in the last cumulative sum so energy=1 gives the numerical rank.
    return int(np.searchsorted(frac, energy - 1e-12) + 1)


def _linear(graph: Graph, name: str) -> Linear:
    layer = graph.layer(name)
    if not isinstance(layer, Linear):
        raise InputError(f"layer {name!r} is {layer.kind}, not fc: SVD applies to fc layers")
    return layer


def _check_rank(layer: Linear, rank: int) -> None:
    lo = min(layer.out_features, layer.in_features)
    if not isinstance(rank, int | np.integer) or isinstance(rank, bool):
        raise InputError(f"layer {layer.name!r}: rank must be an integer, got {rank!r}")
    if rank <= 0 or rank >= lo:
        raise InputError(
            f"layer {layer.name!r} ({layer.out_features}x{layer.in_features}): rank {rank} is"
            f" out of range 1..{lo - 1} (rank >= {lo} saves nothing)"
        )


def _svd(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)


def _factor(graph: Graph, name: str, spec: RankSpec,
            names: tuple[str, str] | None = None) -> tuple[Graph, SvdLayerReport]:
    layer = _linear(graph, name)
    a_name, b_name = names or (f"{name}_a", f"{name}_b")
    for new in (a_name, b_name):
        if new in graph:
            raise InputError(f"cannot factor {name!r}: a layer named {new!r} already exists")
    weights = graph.params.get(name, {}).get("weight")
    svd = _svd(weights) if weights is not None else None
    if spec.rank is not None:
        rank = spec.rank
    elif spec.reduction is not None:
        rank = rank_for_reduction(layer.out_features, layer.in_features, spec.reduction)
    else:
        if svd is None:
            raise InputError(f"layer {name!r}: an energy target needs weights (graph has none)")
        rank = rank_for_energy(svd[1], float(spec.energy))  # type: ignore[arg-type]
        if rank >= min(layer.out_features, layer.in_features):
            raise InputError(
                f"layer {name!r}: keeping {spec.energy:g} of the energy needs rank {rank},"
                " the full rank; factoring would save nothing"
            )
    _check_rank(layer, int(rank))
    rank = int(rank)

    fa = Linear(a_name, layer.inputs, in_features=layer.in_features, out_features=rank,
                bias=False)
    fb = Linear(b_name, (a_name,), in_features=rank, out_features=layer.out_features,
                bias=layer.bias)
    layers = []
    for lay in graph.layers:
        if lay.name == name:
            layers += [fa, fb]
        else:
            ins = tuple(b_name if s == name else s for s in lay.inputs)
            layers.append(dataclasses.replace(lay, inputs=ins) if ins != lay.inputs else lay)
    outputs = tuple(b_name if o == name else o for o in graph.outputs)
    params = {k: dict(v) for k, v in graph.params.items() if k != name}
    rel_error = energy_kept = None
    if svd is not None:
        u, s, vt = svd
        root = np.sqrt(s[:rank])
        wa = root[:, None] * vt[:rank]  # (r, in)
        wb = u[:, :rank] * root[None, :]  # (out, r)
        # float32 weights give float32 factors, float64 stay float64
        dtype = weights.dtype if weights.dtype.kind == "f" else np.dtype(np.float32)
        params[a_name] = {"weight": wa.astype(dtype)}
        params[b_name] = {"weight": wb.astype(dtype)}
        if layer.bias and "bias" in graph.params.get(name, {}):
            params[b_name]["bias"] = graph.params[name]["bias"]
        w64 = np.asarray(weights, np.float64)
        norm = np.linalg.norm(w64)
        # ||W - W_r||_F = sqrt(Σ_{i>=r} σ_i²) (Eckart–Young), without forming W_r.
        tail = float(np.sqrt(np.sum(s[rank:] ** 2)))
        rel_error = tail / norm if norm else 0.0
        total = float(np.sum(s ** 2))
        energy_kept = float(np.sum(s[:rank] ** 2) / total) if total else 1.0
    before = layer.out_features * layer.in_features
    after = rank * (layer.out_features + layer.in_features)
    report = SvdLayerReport(
        layer=name, out_features=layer.out_features, in_features=layer.in_features, rank=rank,
        weights_before=before, weights_after=after, reduction=1 - after / before,
        rel_error=rel_error, energy_kept=energy_kept,
    )
    new = graph.replace(layers=tuple(layers), outputs=outputs, params=params)
    return new, report


def svd_factor(graph: Graph, layer_name: str, rank: int,
               names: tuple[str, str] | None = None) -> Graph:
    """`graph` with fc layer `layer_name` replaced by its rank-`rank` factors `<name>_a`,
    `<name>_b` (or `names`). Works on graphs without weights (shapes only)."""
    return _factor(graph, layer_name, RankSpec(rank=rank), names)[0]


def svd_compress(graph: Graph, specs: Mapping[str, RankSpec | int]) -> SvdResult:
    """Factor several fc layers at once; an int spec is a rank."""
    if not specs:
        raise InputError("no layers to factor")
    reports = []
    for name, spec in specs.items():
        rs = spec if isinstance(spec, RankSpec) else RankSpec(rank=spec)
        graph, rep = _factor(graph, name, rs)
        reports.append(rep)
    return SvdResult(graph, tuple(reports))
