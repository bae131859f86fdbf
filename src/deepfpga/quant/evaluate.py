"""Top-1/top-5 accuracy of a float graph (run_float) or a quantized model (bit-exact executor).

Images are processed in batches so memory stays bounded. Classes are ranked by the network's
last layer before a trailing softmax (softmax is monotone, and ranking integer logits avoids the
ties a quantized softmax would create). Ties between equal scores are broken towards the lower
class index (a stable sort), deterministically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir import Graph
from deepfpga.quant.qmodel import QuantizedModel

DEFAULT_BATCH = 250


@dataclass(frozen=True)
class EvalResult:
    """Accuracy over `n` samples; `k5` is the k used for "top-5" (fewer classes: all of them)."""

    n: int
    correct1: int
    correct5: int
    k5: int
    kind: str                     # "float" or "fixed"
    saturated: int | None = None  # saturated values over the whole run (fixed point only)

    @property
    def top1(self) -> float:
        return self.correct1 / self.n

    @property
    def top5(self) -> float:
        return self.correct5 / self.n

    @staticmethod
    def combine(parts: Sequence[EvalResult]) -> EvalResult:
        """The result over the union of disjoint image sets (shards of one evaluation)."""
        if not parts:
            raise InputError("no results to combine")
        kinds = {p.kind for p in parts}
        if len(kinds) != 1 or len({p.k5 for p in parts}) != 1:
            raise InputError("results of different models or class counts cannot be combined")
        sat = [p.saturated for p in parts]
        return EvalResult(sum(p.n for p in parts), sum(p.correct1 for p in parts),
                          sum(p.correct5 for p in parts), parts[0].k5, parts[0].kind,
                          None if any(s is None for s in sat) else sum(s for s in sat
                                                                      if s is not None))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "top1": self.top1, "top5": self.top5, "correct1": self.correct1,
                "correct5": self.correct5, "k5": self.k5, "kind": self.kind,
                "saturated": self.saturated}


def score_layer(graph: Graph) -> str:
    """The layer whose output ranks the classes: the single output, skipping trailing softmax."""
    if len(graph.outputs) != 1:
        raise InputError(f"graph {graph.name!r} has {len(graph.outputs)} outputs; classification"
                         " accuracy needs exactly one")
    name = graph.outputs[0]
    while True:
        layer = graph.layer(name)
        if layer.kind != "softmax" or len(layer.inputs) != 1 or layer.inputs[0] == "input":
            return name
        name = layer.inputs[0]


def _truncate(graph: Graph, name: str) -> Graph:
    if graph.outputs == (name,):
        return graph
    idx = [la.name for la in graph.layers].index(name)
    layers = graph.layers[:idx + 1]
    keep = {la.name for la in layers}
    params = {k: v for k, v in graph.params.items() if k in keep}
    return graph.replace(layers=layers, outputs=(name,), params=params)


def topk_hits(scores: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N,): label within the k best scores (ties: lower class index ranks first)."""
    order = np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]
    return np.any(order == np.asarray(y)[:, None], axis=1)


def _check_scores(scores: np.ndarray, y: np.ndarray, name: str) -> None:
    if scores.ndim != 2:
        raise ShapeError(f"layer {name!r} gives scores of shape {scores.shape[1:]} per sample;"
                         " accuracy needs a vector of class scores")
    if y.size and int(y.max()) >= scores.shape[1]:
        raise InputError(f"labels go up to {int(y.max())} but the model scores only"
                         f" {scores.shape[1]} classes")


def check_inputs(model: Graph | QuantizedModel, x: np.ndarray, y: np.ndarray,
                 batch_size: int) -> tuple[np.ndarray, np.ndarray, Graph]:
    """(images, int64 labels, the model's graph), or the InputError/ShapeError `evaluate` gives
    before running anything."""
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.int64)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{x.shape[0]} images but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise InputError("no images to evaluate")
    if batch_size <= 0:
        raise InputError(f"batch size must be positive, got {batch_size}")
    graph = model.graph if isinstance(model, QuantizedModel) else model
    if tuple(x.shape[1:]) != graph.input_shape:
        raise ShapeError(f"images of shape {tuple(x.shape[1:])} do not fit model"
                         f" {graph.name!r} (input {graph.input_shape})")
    return x, y, graph


def evaluate(model: Graph | QuantizedModel, x: np.ndarray, y: np.ndarray, *,
             batch_size: int = DEFAULT_BATCH, progress: bool = False) -> EvalResult:
    """Top-1/top-5 of `model` on images `x` (N, C, H, W) float in [0, 1] and labels `y` (N,)."""
    from deepfpga.progress import progress as bar

    x, y, graph = check_inputs(model, x, y, batch_size)
    name = score_layer(graph)
    c1 = c5 = 0
    k5 = 5
    saturated = 0
    executor = None
    if isinstance(model, QuantizedModel):
        from deepfpga.quant.reference import ReferenceExecutor

        executor = ReferenceExecutor.build(model)  # weights prepared once for all batches
    starts = range(0, x.shape[0], batch_size)
    for i in bar(starts, total=len(starts), desc="evaluating", quiet=not progress):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if executor is not None:
            scores, nsat = _fixed_scores(executor, name, xb)
            saturated += nsat
        else:
            scores = _float_scores(model, name, xb)
        _check_scores(scores, yb, name)
        k5 = min(5, scores.shape[1])
        c1 += int(topk_hits(scores, yb, 1).sum())
        c5 += int(topk_hits(scores, yb, k5).sum())
    fixed = isinstance(model, QuantizedModel)
    return EvalResult(int(x.shape[0]), c1, c5, k5, "fixed" if fixed else "float",
                      saturated if fixed else None)


def _float_scores(graph: Graph, name: str, xb: np.ndarray) -> np.ndarray:
    from deepfpga.ir.float_exec import run_float

    out = run_float(_truncate(graph, name), xb.astype(np.float32, copy=False))
    assert isinstance(out, np.ndarray)
    return out


def _fixed_scores(executor: Any, name: str, xb: np.ndarray) -> tuple[np.ndarray, int]:
    res = executor.run(xb, keep={name}, float_input=True)
    return np.asarray(res.layers[name]), res.total_saturations
