"""Values the ONNX importer passes between nodes, and the shape arithmetic it evaluates.

A value is a tensor (`Tensor`: the IR layer producing it and its per-sample shape, None when it is
unknown because a node upstream was refused), an initializer (a numpy array) or a small integer
vector known at import time (`Dims`, whose items may be the symbolic batch size N): the
Shape → Gather → Unsqueeze → Concat → Reshape chains that exporters emit for `x.view(N, -1)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfpga.ir.layers import Shape


@dataclass(frozen=True)
class Tensor:
    ref: str
    shape: Shape | None


class _BatchSize:
    def __repr__(self) -> str:
        return "N"


N = _BatchSize()  # the (symbolic) batch size
UNKNOWN = Tensor("?", None)  # the output of a node that could not be imported


@dataclass(frozen=True)
class Dims:
    """A small integer vector known at import time whose items may be the batch size N."""

    items: tuple[Any, ...]
    scalar: bool = False


class Unsupported(Exception):
    def __init__(self, op: str):
        super().__init__(op)
        self.op = op


class UnknownInput(Exception):
    """The node reads a value whose shape is unknown (downstream of a refused node)."""


def int_list(attrs: dict[str, Any], key: str, op: str, default: Sequence[int], n: int = 2
          ) -> tuple[int, ...]:
    """An integer-list attribute with exactly `n` items (2-d convolution and pooling)."""
    v = attrs.get(key, default)
    if isinstance(v, int | np.integer):
        v = [v]
    try:
        items = tuple(int(i) for i in v)
    except (TypeError, ValueError):
        raise Unsupported(f"{op}({key}={v!r}): not a list of integers") from None
    if len(items) != n:
        raise Unsupported(f"{op}({key}={list(items)}): {n} values expected (2-d only)")
    return items


def dims_of(v: Any, op: str) -> Dims:
    if isinstance(v, Tensor) and v.shape is None:
        raise UnknownInput  # downstream of an unsupported node: not reported
    if isinstance(v, Dims):
        return v
    if isinstance(v, np.ndarray) and v.dtype.kind in "iu" and v.ndim <= 1:
        return Dims(tuple(int(i) for i in v.reshape(-1)), scalar=v.ndim == 0)
    if isinstance(v, Tensor):
        raise Unsupported(f"{op} of a tensor computed at run time (only shape arithmetic on"
                           " Shape outputs and integer initializers is supported)")
    raise Unsupported(f"{op} of a constant that is not an integer vector")


def required(attrs: dict[str, Any], key: str, op: str) -> Any:
    if key not in attrs:
        raise Unsupported(f"{op} without attribute {key}")
    return attrs[key]


def symmetric_pads(pads: Sequence[int], what: str) -> tuple[int, int]:
    pads = list(pads) or [0, 0, 0, 0]
    if len(pads) != 4:
        raise Unsupported(f"{what}(pads={pads})")
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise Unsupported(f"{what}(asymmetric pads={pads})")
    return (int(pads[0]), int(pads[1]))


class ShapeOps:
    """The shape-arithmetic ops, mixed into the importer (which provides `values`, `tensor`,
    `known` and `const`)."""

    values: dict[str, Any]
    tensor: Any
    known: Any
    const: Any

    def op_Constant(self, node: Any, index: int, attrs: dict[str, Any]) -> np.ndarray:
        from onnx import numpy_helper

        if "value" not in attrs:
            raise Unsupported(f"Constant({', '.join(attrs)})")
        return numpy_helper.to_array(attrs["value"])

    def op_Shape(self, node: Any, index: int, attrs: dict[str, Any]) -> Dims:
        x = self.tensor(node, 0)
        self.known(node, 0)
        full = (N, *x.shape)
        start, end = attrs.get("start", 0), attrs.get("end", len(full))
        return Dims(full[slice(start, end)])

    def op_Gather(self, node: Any, index: int, attrs: dict[str, Any]) -> Dims:
        data = dims_of(self.values[node.input[0]], "Gather")
        idx = self.const(node, 1, "indices")
        if attrs.get("axis", 0) != 0 or data.scalar or idx.ndim > 1 or idx.dtype.kind not in "iu":
            raise Unsupported("Gather other than indexing a shape vector")
        n = len(data.items)
        if any(not -n <= int(i) < n for i in idx.reshape(-1)):
            raise Unsupported(f"Gather index {idx.reshape(-1).tolist()} out of range for a"
                               f" {n}-vector")
        picked = tuple(data.items[int(i)] for i in idx.reshape(-1))
        return Dims(picked, scalar=idx.ndim == 0)

    def op_Unsqueeze(self, node: Any, index: int, attrs: dict[str, Any]) -> Dims:
        v = dims_of(self.values[node.input[0]], "Unsqueeze")
        axes = attrs.get("axes")
        if axes is None:
            axes = self.const(node, 1, "axes").reshape(-1).tolist()
        if not v.scalar or list(axes) != [0]:
            raise Unsupported("Unsqueeze other than a scalar to a 1-vector")
        return Dims(v.items)

    def op_Concat(self, node: Any, index: int, attrs: dict[str, Any]) -> Dims:
        parts = [dims_of(self.values[n], "Concat") for n in node.input]
        if attrs.get("axis", 0) not in (0, -1) or any(p.scalar for p in parts):
            raise Unsupported("Concat other than of shape vectors")
        return Dims(tuple(i for p in parts for i in p.items))

    def op_Cast(self, node: Any, index: int, attrs: dict[str, Any]) -> Any:
        from onnx import TensorProto

        v = self.values[node.input[0]]
        if isinstance(v, Tensor) and v.shape is not None and attrs.get("to") == TensorProto.FLOAT:
            return v  # every tensor is float32 already
        if isinstance(v, Tensor) and v.shape is not None:
            raise Unsupported(f"Cast of a tensor to type {attrs.get('to')} (only to float, or"
                               " of shape arithmetic)")
        return dims_of(v, "Cast")
