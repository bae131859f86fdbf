"""Graph → Graph rewrites that prepare an imported network for quantization.

Each pass returns a new graph and leaves its argument unchanged. Passes work on graphs without
weights too (the structure changes the same way).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from deepfpga.errors import InputError
from deepfpga.ir.graph import Graph
from deepfpga.ir.layers import AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Layer, MaxPool2d


def _bypass(graph: Graph, drop: set[str], alias: dict[str, str]) -> Graph:
    """Remove the layers in `drop`, rewiring every reader of a removed layer to alias[layer]."""

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    layers = [
        dataclasses.replace(layer, inputs=tuple(resolve(s) for s in layer.inputs))
        for layer in graph.layers
        if layer.name not in drop
    ]
    outputs = tuple(resolve(o) for o in graph.outputs)
    params = {k: dict(v) for k, v in graph.params.items() if k not in drop}
    return graph.replace(layers=tuple(layers), outputs=outputs, params=params)


def _remove_where(graph: Graph, is_identity: Callable[[Layer, tuple[int, ...]], bool]) -> Graph:
    shapes = graph.shapes()
    alias = {
        layer.name: layer.inputs[0]
        for layer in graph.layers
        if len(layer.inputs) == 1 and is_identity(layer, shapes[layer.inputs[0]])
    }
    return _bypass(graph, set(alias), alias) if alias else graph


def remove_dropout(graph: Graph) -> Graph:
    """Drop Dropout layers (the identity at inference)."""
    return _remove_where(graph, lambda layer, _: isinstance(layer, Dropout))


def _is_identity(layer: Layer, in_shape: tuple[int, ...]) -> bool:
    if isinstance(layer, Dropout):
        return True
    if isinstance(layer, Flatten):
        return len(in_shape) == 1
    if isinstance(layer, MaxPool2d | AvgPool2d):
        return layer.kernel == (1, 1) and layer.stride == (1, 1) and layer.padding == (0, 0)
    return False


def remove_identities(graph: Graph) -> Graph:
    """Drop layers that compute the identity: Dropout, Flatten of a vector, 1x1/1 pooling."""
    return _remove_where(graph, _is_identity)


def fold_batchnorm(graph: Graph) -> Graph:
    """Merge every BatchNorm2d into the Conv2d that feeds it, exactly (in float64, then float32):
    W'[o] = W[o]·γ[o]/√(σ²[o]+ε),  b'[o] = (b[o] − μ[o])·γ[o]/√(σ²[o]+ε) + β[o].

    Refuses a BN whose input is not a conv, or whose conv has another reader or is a graph output
    (folding would change what that reader sees).
    """
    bns = [layer for layer in graph.layers if isinstance(layer, BatchNorm2d)]
    if not bns:
        return graph
    by_name = {layer.name: layer for layer in graph.layers}
    new_layers: dict[str, Layer] = {}
    params = {k: dict(v) for k, v in graph.params.items()}
    alias: dict[str, str] = {}
    for bn in bns:
        src = bn.inputs[0]
        conv = by_name.get(src)
        if not isinstance(conv, Conv2d):
            what = "the graph input" if conv is None else f"{src!r} ({conv.kind})"
            raise InputError(
                f"cannot fold batch norm {bn.name!r}: it follows {what}, not a convolution"
            )
        readers = [c.name for c in graph.consumers(src)]
        if readers != [bn.name] or src in graph.outputs:
            others = [r for r in readers if r != bn.name] + (
                ["graph output"] if src in graph.outputs else [])
            raise InputError(
                f"cannot fold batch norm {bn.name!r} into {src!r}: the convolution's output is"
                f" also read by {', '.join(others)}"
            )
        new_layers[src] = dataclasses.replace(conv, bias=True)
        alias[bn.name] = src
        if graph.params:
            cp, bp = graph.params.get(src, {}), graph.params.get(bn.name, {})
            if "weight" not in cp or any(k not in bp for k in bn.param_keys):
                raise InputError(f"cannot fold batch norm {bn.name!r}: weights missing")
            scale = (np.asarray(bp["weight"], np.float64)
                     / np.sqrt(np.asarray(bp["running_var"], np.float64) + bn.eps))
            w = np.asarray(cp["weight"], np.float64) * scale[:, None, None, None]
            b = np.asarray(cp.get("bias", np.zeros(conv.out_channels)), np.float64)
            b = (b - np.asarray(bp["running_mean"], np.float64)) * scale + np.asarray(
                bp["bias"], np.float64)
            params[src] = {"weight": w.astype(np.float32), "bias": b.astype(np.float32)}
    replaced = graph.replace(
        layers=tuple(new_layers.get(layer.name, layer) for layer in graph.layers),
        params=params if graph.params else {},
    )
    return _bypass(replaced, set(alias), alias)


def prepare_for_quantization(graph: Graph) -> Graph:
    """Fold batch norms and drop identity layers (Dropout included)."""
    return remove_identities(fold_batchnorm(graph))
