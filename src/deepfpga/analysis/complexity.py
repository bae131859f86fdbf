"""Per-layer time and space complexity (paper §4).

Time is counted in multiply-accumulates (K²·Nin·Nout·R·C for CONV, Nin·Nout for FC) and reported
as operations = 2·MACs (one multiply and one add), the convention behind "30.9 GOP" for VGG16.
Pooling, ReLU, softmax, ... do no multiplications and count 0 operations. Space is the parameter
count (weights and biases) and, at `bits` per value, the bytes of weights and feature maps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from deepfpga.errors import InputError
from deepfpga.ir.graph import Graph
from deepfpga.ir.layers import Shape

CATEGORIES = ("conv", "fc", "other")


@dataclass(frozen=True)
class LayerComplexity:
    name: str
    kind: str
    category: str  # "conv", "fc" or "other"
    output_shape: Shape
    macs: int
    ops: int  # 2·macs
    params: int
    weight_bytes: float  # params·bits/8
    input_bytes: float  # all input feature maps of one sample, at `bits`
    output_bytes: float
    host_only: bool


@dataclass(frozen=True)
class CategoryTotals:
    category: str  # "conv", "fc", "other" or "total"
    layers: int
    macs: int
    ops: int
    params: int
    weight_bytes: float
    ops_share: float  # fraction of the network's operations (0..1)
    params_share: float

    @property
    def gop(self) -> float:
        return self.ops / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6


@dataclass(frozen=True)
class ComplexityReport:
    model: str
    input_shape: Shape
    bits: int
    rows: tuple[LayerComplexity, ...]
    totals: tuple[CategoryTotals, ...]  # conv, fc, other, total

    def total(self, category: str = "total") -> CategoryTotals:
        for t in self.totals:
            if t.category == category:
                return t
        raise KeyError(category)

    def row(self, name: str) -> LayerComplexity:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "bits": self.bits,
            "layers": [asdict(r) | {"output_shape": list(r.output_shape)} for r in self.rows],
            "totals": {t.category: asdict(t) for t in self.totals},
        }


def _category(kind: str) -> str:
    return kind if kind in ("conv", "fc") else "other"


def analyze(graph: Graph, bits: int = 16) -> ComplexityReport:
    """Complexity of every layer of `graph` (weights are not needed) at `bits` per value."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 64:
        raise InputError(f"bits must be an integer in 1..64, got {bits!r}")
    shapes = graph.shapes()
    per_byte = bits / 8
    rows = []
    for layer in graph.layers:
        ins = [shapes[s] for s in layer.inputs]
        out = shapes[layer.name]
        macs = int(layer.macs(ins, out))
        params = layer.learned_params()
        rows.append(LayerComplexity(
            name=layer.name, kind=layer.kind, category=_category(layer.kind), output_shape=out,
            macs=macs, ops=2 * macs, params=params, weight_bytes=params * per_byte,
            input_bytes=sum(math.prod(s) for s in ins) * per_byte,
            output_bytes=math.prod(out) * per_byte, host_only=layer.host_only,
        ))
    all_ops = sum(r.ops for r in rows)
    all_params = sum(r.params for r in rows)

    def totals(category: str, members: list[LayerComplexity]) -> CategoryTotals:
        ops = sum(r.ops for r in members)
        params = sum(r.params for r in members)
        return CategoryTotals(
            category=category, layers=len(members), macs=sum(r.macs for r in members), ops=ops,
            params=params, weight_bytes=sum(r.weight_bytes for r in members),
            ops_share=ops / all_ops if all_ops else 0.0,
            params_share=params / all_params if all_params else 0.0,
        )

    cats = tuple(totals(c, [r for r in rows if r.category == c]) for c in CATEGORIES)
    return ComplexityReport(
        model=graph.name, input_shape=graph.input_shape, bits=bits, rows=tuple(rows),
        totals=(*cats, totals("total", rows)),
    )
