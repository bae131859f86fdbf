"""Resolving a model spec into a graph: a zoo name, a `.onnx` file, a float-model `.npz`, or
`package.module:factory` (a callable returning a torch.nn.Module).

Above both deepfpga.frontends (the importers) and deepfpga.zoo (which uses the torch importer for
its trained models), so neither imports the other's caller.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from deepfpga.errors import InputError
from deepfpga.frontends import parse_shape
from deepfpga.ir.graph import Graph


def load_model(spec: str, input_shape: str | Sequence[int] | None = None) -> Graph:
    """A graph from `spec`: a zoo name, a path to `.onnx` or to a float-model `.npz`, or
    `package.module:factory` (a callable returning a torch.nn.Module; needs `input_shape`)."""
    if ":" in spec and Path(spec).suffix.lower() not in (".onnx", ".npz"):
        return _load_factory(spec, input_shape)
    graph = _load_file_or_zoo(spec)
    if input_shape is not None and parse_shape(input_shape) != graph.input_shape:
        raise InputError(
            f"model {spec!r} has the fixed input shape"
            f" {','.join(map(str, graph.input_shape))}; --input-shape"
            f" {','.join(map(str, parse_shape(input_shape)))} does not match it"
        )
    return graph


def _load_file_or_zoo(spec: str) -> Graph:
    from deepfpga import zoo

    if spec in zoo.names():
        return zoo.get(spec)
    suffix = Path(spec).suffix.lower()
    if suffix == ".onnx":
        from deepfpga.interchange.onnx_quant import onnx_graph

        if not Path(spec).is_file():
            raise InputError(f"no such file: {spec}")
        return onnx_graph(spec)
    if suffix == ".npz":
        from deepfpga.frontends.float_model import load_float_model

        return load_float_model(spec)
    raise InputError(
        f"unknown model {spec!r}: give a zoo name ({', '.join(zoo.names())}), a .onnx or"
        " float-model .npz file, or package.module:factory"
    )


def _load_factory(spec: str, input_shape: str | Sequence[int] | None) -> Graph:
    import torch

    from deepfpga.frontends.torch_import import import_torch

    modname, _, attr = spec.partition(":")
    if not modname or not attr:
        raise InputError(f"bad factory spec {spec!r} (expected package.module:factory)")
    if input_shape is None:
        raise InputError(f"model {spec!r} needs an input shape (e.g. --input-shape 3,224,224)")
    shape = parse_shape(input_shape)
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise InputError(f"cannot import module {modname!r}: {e}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"{modname!r} has no callable {attr!r}")
    try:
        net = factory()
    except Exception as e:  # a factory that needs arguments, or fails: the user's code
        raise InputError(f"calling {spec}() failed ({type(e).__name__}: {e}); give a factory"
                         " that takes no arguments") from None
    if not isinstance(net, torch.nn.Module):
        raise InputError(f"{spec} returned {type(net).__name__}, not a torch.nn.Module")
    net.eval()
    return import_torch(net, shape, name=attr)
