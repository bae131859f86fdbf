"""The quantized model: a graph plus per-layer fixed-point formats and integer weights.

This is what the quantizer produces and what the reference executor, the compiler and the
simulators consume. Its file form (`.npz`) lives in `deepfpga.quant.qfile`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.ir import INPUT, Conv2d, Graph, Linear
from deepfpga.quant.fixedpoint import FixedFormat

# Layers whose output keeps the input's format (they move or select integers, never rescale).
PASSTHROUGH_KINDS = frozenset({"relu", "maxpool", "flatten", "dropout"})
WEIGHTED_KINDS = frozenset({"conv", "fc"})


@dataclass(frozen=True)
class LayerFormats:
    """Formats one layer sees: its input map, its weights and bias (if any), its output map."""

    input: FixedFormat
    output: FixedFormat
    weight: FixedFormat | None = None
    bias: FixedFormat | None = None

    @property
    def fl_acc(self) -> int:
        if self.weight is None:
            raise InputError("layer has no weights, so no accumulator")
        return self.input.fl + self.weight.fl

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (getattr(self, k).to_dict() if getattr(self, k) is not None else None)
            for k in ("input", "weight", "bias", "output")
        }


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """`graph` carries structure only; `weights[layer]['weight'|'bias']` are int64 arrays."""

    graph: Graph
    input_format: FixedFormat
    formats: Mapping[str, LayerFormats]
    weights: Mapping[str, Mapping[str, np.ndarray]]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.graph.params:
            object.__setattr__(self, "graph", self.graph.without_weights())
        object.__setattr__(self, "formats", MappingProxyType(dict(self.formats)))
        frozen = {}
        for lname, arrays in self.weights.items():
            inner = {}
            for k, a in arrays.items():
                a = np.asarray(a)
                if a.dtype.kind not in "iu":
                    raise InputError(f"{lname}/{k}: integer array expected, got dtype {a.dtype}")
                a = a.astype(np.int64)
                a.setflags(write=False)
                inner[k] = a
            frozen[lname] = MappingProxyType(inner)
        object.__setattr__(self, "weights", MappingProxyType(frozen))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        self.validate()

    def format_of(self, name: str) -> FixedFormat:
        """Output format of a layer, or of INPUT."""
        return self.input_format if name == INPUT else self.formats[name].output

    def validate(self) -> None:
        """Check every invariant the executor, compiler and simulators rely on."""
        g = self.graph
        for layer in g.layers:
            f = self.formats.get(layer.name)
            if f is None:
                raise InputError(f"layer {layer.name!r} has no fixed-point formats")
            if not layer.host_only and len(layer.inputs) == 1:
                src = self.format_of(layer.inputs[0])
                if f.input != src:
                    raise InputError(
                        f"layer {layer.name!r}: input format {f.input} differs from its"
                        f" producer's output format {src}"
                    )
            if layer.kind in PASSTHROUGH_KINDS and f.output != f.input:
                raise InputError(
                    f"layer {layer.name!r} ({layer.kind}) must keep its input format {f.input},"
                    f" has {f.output}"
                )
            if isinstance(layer, Conv2d | Linear):
                self._validate_weighted(layer, f)
            elif layer.name in self.weights:
                raise InputError(f"layer {layer.name!r} ({layer.kind}) carries no weights")

    def _validate_weighted(self, layer: Conv2d | Linear, f: LayerFormats) -> None:
        arrays = self.weights.get(layer.name)
        if arrays is None or "weight" not in arrays:
            raise InputError(f"missing array {layer.name}/weight")
        if f.weight is None:
            raise InputError(f"layer {layer.name!r} has no weight format")
        expected = layer.param_shapes()
        for key, shape in expected.items():
            if key not in arrays:
                raise InputError(f"missing array {layer.name}/{key}")
            a = arrays[key]
            if tuple(a.shape) != shape:
                raise InputError(
                    f"array {layer.name}/{key} has shape {tuple(a.shape)}, expected {shape}"
                )
            fmt = f.weight if key == "weight" else f.bias
            if fmt is None:
                raise InputError(f"layer {layer.name!r} has a bias but no bias format")
            if a.size and (a.min() < fmt.qmin or a.max() > fmt.qmax):
                raise InputError(
                    f"array {layer.name}/{key} holds integers outside {fmt} range"
                    f" [{fmt.qmin}, {fmt.qmax}]"
                )
        extra = set(arrays) - set(expected)
        if extra:
            raise InputError(f"unexpected arrays for layer {layer.name!r}: {sorted(extra)}")
        if f.bias is not None and f.bias.fl > f.fl_acc:
            raise InputError(
                f"layer {layer.name!r}: bias fl {f.bias.fl} > fl_in + fl_w = {f.fl_acc}"
                " (the contract needs the bias at or below the accumulator's precision)"
            )
