"""The graph: a DAG of layers in topological order, with optional weights."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir.layers import LAYER_TYPES, Layer, Shape

INPUT = "input"

Params = Mapping[str, Mapping[str, np.ndarray]]


def _freeze_params(params: Params | None) -> Mapping[str, Mapping[str, np.ndarray]]:
    frozen = {}
    for lname, arrays in (params or {}).items():
        inner = {}
        for key, arr in arrays.items():
            a = np.array(arr, copy=True)
            a.setflags(write=False)
            inner[key] = a
        frozen[lname] = MappingProxyType(inner)
    return MappingProxyType(frozen)


@dataclass(frozen=True, eq=False)
class Graph:
    """A network. `layers` is in topological order; `params[layer][key]` holds float weights.

    A graph without weights (a zoo architecture) has empty `params`; analysis, compilation and
    timing need none, execution does.
    """

    name: str
    input_shape: Shape
    layers: tuple[Layer, ...]
    outputs: tuple[str, ...]
    params: Params = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "params", _freeze_params(self.params))
        seen = {INPUT}
        for layer in self.layers:
            if layer.name in seen:
                raise ShapeError(f"duplicate layer name {layer.name!r}")
            for src in layer.inputs:
                if src not in seen:
                    raise ShapeError(
                        f"layer {layer.name!r} reads {src!r}, which is not an earlier layer"
                    )
            seen.add(layer.name)
        if not self.outputs:
            raise ShapeError("graph has no outputs")
        for out in self.outputs:
            if out not in seen:
                raise ShapeError(f"graph output {out!r} is not a layer")
        unknown = set(self.params) - seen
        if unknown:
            raise ShapeError(f"weights given for unknown layers: {sorted(unknown)}")
        self._check_params()

    # --- structure -------------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise InputError(f"no layer named {name!r} in graph {self.name!r}")

    def __contains__(self, name: object) -> bool:
        return any(layer.name == name for layer in self.layers)

    def consumers(self, name: str) -> list[Layer]:
        return [layer for layer in self.layers if name in layer.inputs]

    def is_chain(self) -> bool:
        """True when every layer reads exactly the previous one (what the accelerator runs)."""
        prev = INPUT
        for layer in self.layers:
            if layer.inputs != (prev,):
                return False
            prev = layer.name
        return self.outputs == (prev,)

    # --- shapes ----------------------------------------------------------------------------
    def shapes(self) -> dict[str, Shape]:
        """Output shape of every layer (and of INPUT), by shape inference."""
        shapes: dict[str, Shape] = {INPUT: self.input_shape}
        for layer in self.layers:
            shapes[layer.name] = tuple(layer.output_shape([shapes[s] for s in layer.inputs]))
        return shapes

    # --- weights ---------------------------------------------------------------------------
    @property
    def has_weights(self) -> bool:
        return all(
            key in self.params.get(layer.name, {})
            for layer in self.layers
            for key in layer.param_shapes()
        )

    def require_weights(self) -> None:
        missing = [
            f"{layer.name}/{key}"
            for layer in self.layers
            for key in layer.param_shapes()
            if key not in self.params.get(layer.name, {})
        ]
        if missing:
            raise InputError(
                f"graph {self.name!r} has no weights for: {', '.join(missing[:8])}"
                + (" …" if len(missing) > 8 else "")
                + " (a zoo architecture without weights cannot be executed)"
            )

    def _check_params(self) -> None:
        for layer in self.layers:
            arrays = self.params.get(layer.name, {})
            expected = layer.param_shapes()
            for key, arr in arrays.items():
                if key not in expected:
                    raise ShapeError(f"layer {layer.name!r} has unexpected weight {key!r}")
                if tuple(arr.shape) != expected[key]:
                    raise ShapeError(
                        f"layer {layer.name!r} weight {key!r} has shape {tuple(arr.shape)},"
                        f" expected {expected[key]}"
                    )
                if not np.all(np.isfinite(arr)):
                    raise InputError(f"layer {layer.name!r} weight {key!r} has NaN or inf")

    # --- rebuilding ------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, **changes)

    def without_weights(self) -> Graph:
        return self.replace(params={})

    # --- serialisation (weights travel separately, e.g. in the quantized model file) --------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "outputs": list(self.outputs),
            "layers": [layer_to_dict(layer) for layer in self.layers],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any], params: Params | None = None) -> Graph:
        if not isinstance(d, Mapping):
            raise InputError(f"graph description must be an object, got {type(d).__name__}")
        for key, ok, what in (
            ("name", lambda v: isinstance(v, str), "a string"),
            ("input_shape", lambda v: isinstance(v, list) and bool(v) and all(
                _is_int(i) and i > 0 for i in v), "a list of positive integers"),
            ("outputs", lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
             "a list of layer names"),
            ("layers", lambda v: isinstance(v, list) and all(isinstance(i, Mapping) for i in v),
             "a list of objects"),
        ):
            if key in d and not ok(d[key]):
                raise InputError(f"graph description key {key!r} must be {what},"
                                 f" got {_short(d[key])}")
        try:
            layers = [layer_from_dict(ld) for ld in d["layers"]]
            return Graph(
                name=str(d["name"]),
                input_shape=tuple(d["input_shape"]),
                layers=tuple(layers),
                outputs=tuple(d["outputs"]),
                params=params or {},
            )
        except KeyError as e:
            raise InputError(f"graph description lacks key {e.args[0]!r}") from None


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": layer.kind}
    for f in dataclasses.fields(layer):
        v = getattr(layer, f.name)
        d[f.name] = list(v) if isinstance(v, tuple) else v
    return d


def layer_from_dict(d: Mapping[str, Any]) -> Layer:
    if not isinstance(d, Mapping):
        raise InputError(f"layer description must be an object, got {_short(d)}")
    kind = d.get("kind")
    cls = LAYER_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InputError(f"unknown layer kind {kind!r} (known: {', '.join(sorted(LAYER_TYPES))})")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(d) - names - {"kind"}
    if extra:
        raise InputError(f"layer {d.get('name')!r}: unknown keys {sorted(extra)}")
    for f in dataclasses.fields(cls):
        if f.name in d and not _field_ok(d[f.name], str(f.type)):
            raise InputError(f"layer {_short(d.get('name'))}: key {f.name!r} must be"
                             f" {_FIELD_WHAT.get(str(f.type), f.type)}, got {_short(d[f.name])}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "kind"}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise InputError(f"layer {d.get('name')!r}: {e}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


# The field annotations of the layer dataclasses (strings: `from __future__ import annotations`).
_FIELD_WHAT = {
    "str": "a string", "int": "an integer", "bool": "true or false", "float": "a number",
    "tuple[int, int]": "a pair of integers", "tuple[str, ...]": "a list of layer names",
}


def _field_ok(v: Any, annotation: str) -> bool:
    if annotation == "str":
        return isinstance(v, str)
    if annotation == "int":
        return _is_int(v)
    if annotation == "bool":
        return isinstance(v, bool)
    if annotation == "float":
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if annotation == "tuple[int, int]":
        return _is_int(v) or (isinstance(v, list | tuple) and len(v) == 2
                              and all(_is_int(i) for i in v))
    if annotation == "tuple[str, ...]":
        return isinstance(v, list | tuple) and all(isinstance(i, str) for i in v)
    return True


def chain(name: str, input_shape: Shape, layers: Iterable[Layer], params: Params | None = None
          ) -> Graph:
    """Build a chain graph from layers whose `inputs` may be left empty (filled in order)."""
    built: list[Layer] = []
    prev = INPUT
    for layer in layers:
        if not layer.inputs:
            layer = dataclasses.replace(layer, inputs=(prev,))
        built.append(layer)
        prev = layer.name
    return Graph(name, input_shape, tuple(built), (prev,), params or {})
