"""Float32 execution of a graph with its weights, on torch's vectorised CPU kernels.

This is the floating-point reference: importers are checked against the source framework with it,
the quantizer compares fixed-point candidates against it layer by layer.

Semantics of the layers that need a choice (the importers only accept models that match):
- AvgPool2d counts zero padding in the divisor (torch's `count_include_pad=True`);
- Softmax normalises over axis 1 (features of an (N, F) batch, channels of an (N, C, H, W) one);
- LRN is torch.nn.LocalResponseNorm (sum of squares over `size` neighbouring channels, alpha/size);
- BatchNorm2d uses its running statistics (inference), Dropout is the identity.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir.graph import INPUT, Graph
from deepfpga.ir.layers import (
    LRN,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
)


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A float32 tensor sharing memory with `a` when possible (graph weights are read-only, and
    torch warns about that although nothing here writes to them)."""
    arr = np.ascontiguousarray(a, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def _params(graph: Graph, layer: Layer) -> dict[str, torch.Tensor]:
    arrays = graph.params.get(layer.name, {})
    missing = [k for k in layer.param_shapes() if k not in arrays]
    if missing:
        raise InputError(
            f"layer {layer.name!r} of graph {graph.name!r} has no weights for"
            f" {', '.join(missing)} (an architecture without weights cannot be executed)"
        )
    return {k: _tensor(v) for k, v in arrays.items()}


def apply_layer(layer: Layer, p: Mapping[str, torch.Tensor], xs: Sequence[torch.Tensor]
                ) -> torch.Tensor:
    """One layer on float32 tensors with a leading batch dimension."""
    x = xs[0]
    if isinstance(layer, Conv2d):
        return F.conv2d(x, p["weight"], p.get("bias"), stride=layer.stride, padding=layer.padding)
    if isinstance(layer, Linear):
        return F.linear(x, p["weight"], p.get("bias"))
    if isinstance(layer, ReLU):
        return torch.relu(x)
    if isinstance(layer, MaxPool2d):
        return F.max_pool2d(x, layer.kernel, layer.stride, layer.padding,
                            ceil_mode=layer.ceil_mode)
    if isinstance(layer, AvgPool2d):
        return F.avg_pool2d(x, layer.kernel, layer.stride, layer.padding,
                            ceil_mode=layer.ceil_mode, count_include_pad=True)
    if isinstance(layer, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(layer, Dropout):
        return x
    if isinstance(layer, BatchNorm2d):
        return F.batch_norm(x, p["running_mean"], p["running_var"], p["weight"], p["bias"],
                            training=False, eps=layer.eps)
    if isinstance(layer, Softmax):
        return torch.softmax(x, dim=1)
    if isinstance(layer, LRN):
        return F.local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.k)
    if isinstance(layer, Add):
        out = xs[0]
        for other in xs[1:]:
            out = out + other
        return out
    raise InputError(f"layer {layer.name!r}: float execution of kind {layer.kind!r} unsupported")


def _check_batch(graph: Graph, x: np.ndarray, what: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise InputError(f"{what}: numeric array expected, got dtype {a.dtype}")
    if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != tuple(shape):
        raise ShapeError(
            f"{what} of graph {graph.name!r}: expected a batch of shape (N, "
            f"{', '.join(map(str, shape))}), got {a.shape}"
        )
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise InputError(f"{what} contains NaN or inf")
    return a


def _run(graph: Graph, env: dict[str, torch.Tensor], layers: Iterable[Layer],
         keep_all: bool) -> dict[str, torch.Tensor]:
    layers = list(layers)
    # Free each intermediate after its last reader unless the caller wants everything.
    last_use: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for src in layer.inputs:
            last_use[src] = i
    keep = set(graph.outputs)
    results: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for i, layer in enumerate(layers):
            try:
                xs = [env[src] for src in layer.inputs]
            except KeyError as e:
                raise InputError(
                    f"layer {layer.name!r} needs the output of {e.args[0]!r}, which was not given"
                ) from None
            y = apply_layer(layer, _params(graph, layer), xs)
            env[layer.name] = y
            if keep_all:
                results[layer.name] = y
            if not keep_all:
                for src in layer.inputs:
                    if last_use.get(src) == i and src not in keep:
                        env.pop(src, None)
    for out in graph.outputs:
        if out not in env:
            raise InputError(f"graph output {out!r} was neither computed nor given")
        results.setdefault(out, env[out])
    return results


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float32, copy=False)


def _package(graph: Graph, results: Mapping[str, torch.Tensor], return_all: bool
             ) -> np.ndarray | dict[str, np.ndarray]:
    if return_all:
        return {name: _to_numpy(t) for name, t in results.items()}
    if len(graph.outputs) == 1:
        return _to_numpy(results[graph.outputs[0]])
    return {name: _to_numpy(results[name]) for name in graph.outputs}


def _concat(parts: list[np.ndarray | dict[str, np.ndarray]]) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}  # type: ignore[index]
    return np.concatenate(parts)  # type: ignore[arg-type]


def run_float(graph: Graph, x: np.ndarray, *, return_all: bool = False,
              batch_size: int | None = None) -> np.ndarray | dict[str, np.ndarray]:
    """Run `graph` in float32 on a batch `x` of shape (N, *graph.input_shape).

    Returns the output array (a dict output name → array when the graph has several outputs), or
    with `return_all` a dict layer name → output array for every layer. `batch_size` bounds the
    memory by running the batch in slices (results are concatenated).
    """
    graph.require_weights()
    graph.shapes()  # a graph whose shapes do not fit fails here, with the layer's name
    a = _check_batch(graph, x, "input", graph.input_shape)
    if batch_size is not None and batch_size <= 0:
        raise InputError(f"batch_size must be positive, got {batch_size}")
    if batch_size is not None and a.shape[0] > batch_size:
        parts = [run_float(graph, a[i:i + batch_size], return_all=return_all)
                 for i in range(0, a.shape[0], batch_size)]
        return _concat(parts)
    env = {INPUT: _tensor(a)}
    return _package(graph, _run(graph, env, graph.layers, return_all), return_all)


def run_float_from(graph: Graph, cached: Mapping[str, np.ndarray], start_layer: str, *,
                   return_all: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Run the layers from `start_layer` (inclusive) to the end of `graph`.

    `cached` maps layer names (or INPUT) to already computed batches; it must hold every earlier
    value a later layer reads. Returns like `run_float`; `return_all` covers only the layers run.
    """
    names = [layer.name for layer in graph.layers]
    if start_layer not in names:
        raise InputError(f"no layer named {start_layer!r} in graph {graph.name!r}")
    start = names.index(start_layer)
    shapes = graph.shapes()
    env = {}
    for name, arr in cached.items():
        if name not in shapes:
            raise InputError(f"cached value for unknown layer {name!r}")
        env[name] = _tensor(_check_batch(graph, arr, f"cached output of {name!r}", shapes[name]))
    return _package(graph, _run(graph, env, graph.layers[start:], return_all), return_all)


def run_layer(graph: Graph, layer: str | Layer, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Run one layer of `graph` on given input batches (one per entry of `layer.inputs`)."""
    lay = graph.layer(layer) if isinstance(layer, str) else graph.layer(layer.name)
    if len(inputs) != len(lay.inputs):
        raise InputError(
            f"layer {lay.name!r} reads {len(lay.inputs)} input(s), got {len(inputs)}"
        )
    shapes = graph.shapes()
    xs = [
        _tensor(_check_batch(graph, arr, f"input {i} of layer {lay.name!r}", shapes[src]))
        for i, (arr, src) in enumerate(zip(inputs, lay.inputs, strict=True))
    ]
    with torch.inference_mode():
        return _to_numpy(apply_layer(lay, _params(graph, lay), xs))
