"""Import a torch.nn.Module into the graph IR through torch.fx symbolic tracing.

The imported graph is the module's inference behaviour: BatchNorm uses its running statistics,
Dropout is kept as an identity layer. Layer names are torch.fx node names (`features_0`, `fc1`,
`relu_2`, ...), which are unique. Every node the IR cannot represent is collected, and one
`UnsupportedModelError` lists them all.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfpga.errors import InputError, UnsupportedModelError
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
    Shape,
    Softmax,
)

# --- values flowing through the traced graph ------------------------------------------------


@dataclass(frozen=True)
class _T:
    """A tensor: the IR value `ref` (a layer name or INPUT) with per-sample `shape` (None when an
    unsupported node upstream made it unknown)."""

    ref: str | None
    shape: Shape | None


@dataclass(frozen=True)
class _Batch:
    """The batch size, as produced by `x.size(0)` or `x.shape[0]`."""


@dataclass(frozen=True)
class _Sizes:
    """The result of `x.size()` / `x.shape` (only indexing it at 0 is supported)."""


class _UnknownInput(Exception):
    """A check needs the shape of a value that an unsupported node produced (already listed)."""


class _Unsupported(Exception):
    def __init__(self, op: str):
        super().__init__(op)
        self.op = op


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _bind(args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str],
          defaults: dict[str, Any], op: str) -> dict[str, Any]:
    """Match a call's positional and keyword arguments to a known parameter list."""
    if len(args) > len(names):
        raise _Unsupported(f"{op} with {len(args)} positional arguments")
    out = dict(defaults)
    out.update(zip(names, args, strict=False))
    for k, v in kwargs.items():
        if k not in names:
            raise _Unsupported(f"{op}({k}=...)")
        out[k] = v
    missing = [n for n in names if n not in out]
    if missing:
        raise _Unsupported(f"{op} without {', '.join(missing)}")
    return out


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) == 1:
        return (int(v[0]), int(v[0]))
    if len(v) != 2:
        raise _Unsupported(f"2-d window expected, got {v}")
    return (int(v[0]), int(v[1]))


class _Importer:
    def __init__(self, root: Any, input_shape: Shape):
        self.root = root
        self.input_shape = input_shape
        self.layers: list[Layer] = []
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.unsupported: list[tuple[str, str]] = []
        self.names: set[str] = {INPUT}

    # --- building --------------------------------------------------------------------------
    def _name(self, base: str) -> str:
        name = base.replace("/", "_") or "layer"
        cand, i = name, 1
        while cand in self.names:
            cand = f"{name}_{i}"
            i += 1
        self.names.add(cand)
        return cand

    def add(self, base: str, make: Callable[[str, tuple[str, ...]], Layer], inputs: list[_T],
            params: dict[str, np.ndarray] | None = None) -> _T:
        name = self._name(base)
        layer = make(name, tuple(t.ref for t in inputs))  # type: ignore[misc]
        shape: Shape | None = None
        if all(t.shape is not None for t in inputs):
            shape = layer.output_shape([t.shape for t in inputs])  # type: ignore[misc]
        self.layers.append(layer)
        if params:
            self.params[name] = params
        return _T(name, shape)

    # --- per node ------------------------------------------------------------------------
    def tensor(self, v: Any, what: str) -> _T:
        if not isinstance(v, _T):
            raise _Unsupported(f"{what} is not a tensor")
        return v

    def module_node(self, base: str, mod: Any, args: Sequence[Any], kwargs: dict[str, Any]
                    ) -> Any:
        import torch.nn as nn

        if kwargs or len(args) != 1:
            raise _Unsupported(f"{type(mod).__name__} called with extra arguments")
        x = self.tensor(args[0], "module input")
        kind = type(mod).__name__
        if isinstance(mod, nn.Conv2d):
            bad = []
            if mod.groups != 1:
                bad.append(f"groups={mod.groups}")
            if tuple(mod.dilation) != (1, 1):
                bad.append(f"dilation={tuple(mod.dilation)}")
            if mod.padding_mode != "zeros":
                bad.append(f"padding_mode={mod.padding_mode}")
            padding = mod.padding
            if isinstance(padding, str):
                if padding == "valid":
                    padding = (0, 0)
                elif (padding == "same" and tuple(mod.stride) == (1, 1)
                      and all(k % 2 == 1 for k in mod.kernel_size)):
                    padding = tuple(k // 2 for k in mod.kernel_size)
                else:
                    bad.append(f"padding={padding!r}")
            if bad:
                raise _Unsupported(f"Conv2d({', '.join(bad)})")
            p = {"weight": _np(mod.weight)}
            if mod.bias is not None:
                p["bias"] = _np(mod.bias)
            return self.add(base, lambda n, i: Conv2d(
                n, i, in_channels=mod.in_channels, out_channels=mod.out_channels,
                kernel=tuple(mod.kernel_size), stride=tuple(mod.stride), padding=tuple(padding),
                bias=mod.bias is not None), [x], p)
        if isinstance(mod, nn.Linear):
            p = {"weight": _np(mod.weight)}
            if mod.bias is not None:
                p["bias"] = _np(mod.bias)
            return self.add(base, lambda n, i: Linear(
                n, i, in_features=mod.in_features, out_features=mod.out_features,
                bias=mod.bias is not None), [x], p)
        if isinstance(mod, nn.ReLU):
            return self.add(base, lambda n, i: ReLU(n, i), [x])
        if isinstance(mod, nn.MaxPool2d):
            return self.maxpool(base, x, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                mod.ceil_mode, mod.return_indices)
        if isinstance(mod, nn.AvgPool2d):
            return self.avgpool(base, x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                                mod.count_include_pad, mod.divisor_override)
        if isinstance(mod, nn.AdaptiveAvgPool2d):
            return self.adaptive_avgpool(base, x, mod.output_size)
        if isinstance(mod, nn.Flatten):
            return self.flatten(base, x, mod.start_dim, mod.end_dim)
        if isinstance(mod, nn.Dropout | nn.Dropout2d):
            return self.add(base, lambda n, i: Dropout(n, i, p=float(mod.p)), [x])
        if isinstance(mod, nn.Identity):
            return x
        if isinstance(mod, nn.BatchNorm2d):
            if not mod.track_running_stats or mod.running_mean is None:
                raise _Unsupported("BatchNorm2d(track_running_stats=False)")
            c = mod.num_features
            p = {
                "weight": _np(mod.weight) if mod.affine else np.ones(c, np.float32),
                "bias": _np(mod.bias) if mod.affine else np.zeros(c, np.float32),
                "running_mean": _np(mod.running_mean),
                "running_var": _np(mod.running_var),
            }
            return self.add(base, lambda n, i: BatchNorm2d(
                n, i, num_features=c, eps=float(mod.eps)), [x], p)
        if isinstance(mod, nn.Softmax):
            return self.softmax(base, x, mod.dim)
        if isinstance(mod, nn.LocalResponseNorm):
            return self.add(base, lambda n, i: LRN(
                n, i, size=int(mod.size), alpha=float(mod.alpha), beta=float(mod.beta),
                k=float(mod.k)), [x])
        raise _Unsupported(kind)

    def maxpool(self, base: str, x: _T, kernel: Any, stride: Any, padding: Any, dilation: Any,
                ceil_mode: bool, return_indices: bool) -> _T:
        if return_indices:
            raise _Unsupported("MaxPool2d(return_indices=True)")
        if _pair(dilation) != (1, 1):
            raise _Unsupported(f"MaxPool2d(dilation={dilation})")
        k = _pair(kernel)
        s = _pair(stride) if stride not in (None, ()) else k
        return self.add(base, lambda n, i: MaxPool2d(
            n, i, kernel=k, stride=s, padding=_pair(padding), ceil_mode=bool(ceil_mode)), [x])

    def avgpool(self, base: str, x: _T, kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
                count_include_pad: bool, divisor_override: Any) -> _T:
        pad = _pair(padding)
        if divisor_override is not None:
            raise _Unsupported("AvgPool2d(divisor_override)")
        if not count_include_pad and pad != (0, 0):
            raise _Unsupported("AvgPool2d(count_include_pad=False with padding)")
        k = _pair(kernel)
        s = _pair(stride) if stride not in (None, ()) else k
        return self.add(base, lambda n, i: AvgPool2d(
            n, i, kernel=k, stride=s, padding=pad, ceil_mode=bool(ceil_mode)), [x])

    def adaptive_avgpool(self, base: str, x: _T, output_size: Any) -> _T:
        if x.shape is None:
            raise _UnknownInput
        if len(x.shape) != 3:
            raise _Unsupported(f"AdaptiveAvgPool2d on shape {x.shape}")
        _, h, w = x.shape
        osz = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        oh = h if osz[0] is None else int(osz[0])
        ow = w if osz[1] is None else int(osz[1])
        if (oh, ow) == (h, w):
            return x  # identity
        if oh <= 0 or ow <= 0 or h % oh or w % ow:
            raise _Unsupported(f"AdaptiveAvgPool2d({(oh, ow)}) of a {h}x{w} map (not divisible)")
        k = (h // oh, w // ow)
        return self.add(base, lambda n, i: AvgPool2d(n, i, kernel=k, stride=k), [x])

    def flatten(self, base: str, x: _T, start_dim: int, end_dim: int) -> _T:
        ndim = None if x.shape is None else len(x.shape) + 1
        if ndim is None and end_dim != -1:
            raise _UnknownInput
        end_ok = end_dim == -1 or (ndim is not None and end_dim == ndim - 1)
        if start_dim != 1 or not end_ok:
            raise _Unsupported(f"flatten(start_dim={start_dim}, end_dim={end_dim})")
        return self.add(base, lambda n, i: Flatten(n, i), [x])

    def reshape(self, base: str, x: _T, dims: Sequence[Any], op: str) -> _T:
        if len(dims) == 1 and isinstance(dims[0], tuple | list):
            dims = tuple(dims[0])
        total = None if x.shape is None else math.prod(x.shape)
        if total is None and len(dims) == 2 and dims[1] != -1:
            raise _UnknownInput
        ok = (
            len(dims) == 2
            and (isinstance(dims[0], _Batch) or dims[0] == -1)
            and (dims[1] == -1 or (isinstance(dims[1], int) and dims[1] == total))
            and not (dims[0] == -1 and dims[1] == -1)
        )
        if not ok:
            shown = ", ".join("N" if isinstance(d, _Batch) else str(d) for d in dims)
            raise _Unsupported(f"{op}({shown}) (only a reshape to (N, -1) is supported)")
        return self.add(base, lambda n, i: Flatten(n, i), [x])

    def softmax(self, base: str, x: _T, dim: Any) -> _T:
        ndim = None if x.shape is None else len(x.shape) + 1
        if ndim is None and dim != 1:
            raise _UnknownInput
        ok = dim == 1 or (dim is None and ndim in (2, 4)) or (dim == -1 and ndim == 2)
        if not ok:
            raise _Unsupported(f"softmax(dim={dim}) (only over the feature/channel axis 1)")
        return self.add(base, lambda n, i: Softmax(n, i), [x])

    def add_tensors(self, base: str, a: Any, b: Any, op: str) -> _T:
        if not (isinstance(a, _T) and isinstance(b, _T)):
            raise _Unsupported(f"{op} with a non-tensor operand")
        return self.add(base, lambda n, i: Add(n, i), [a, b])

    def function_node(self, base: str, fn: Any, args: Sequence[Any], kwargs: dict[str, Any]
                      ) -> Any:
        import torch
        import torch.nn.functional as F

        if fn in (F.relu, torch.relu, torch.relu_, F.relu_):
            a = _bind(args, kwargs, ("input", "inplace"), {"inplace": False}, "relu")
            return self.add(base, lambda n, i: ReLU(n, i), [self.tensor(a["input"], "relu")])
        if fn in (operator.add, operator.iadd, torch.add):
            a = _bind(args, kwargs, ("input", "other", "alpha"), {"alpha": 1}, "add")
            if a["alpha"] != 1:
                raise _Unsupported("add(alpha != 1)")
            return self.add_tensors(base, a["input"], a["other"], "add")
        if fn is torch.flatten:
            a = _bind(args, kwargs, ("input", "start_dim", "end_dim"),
                      {"start_dim": 0, "end_dim": -1}, "flatten")
            return self.flatten(base, self.tensor(a["input"], "flatten"), a["start_dim"],
                                a["end_dim"])
        if fn is torch.reshape:
            a = _bind(args, kwargs, ("input", "shape"), {}, "reshape")
            return self.reshape(base, self.tensor(a["input"], "reshape"), tuple(a["shape"]),
                                "reshape")
        if fn is F.max_pool2d:
            a = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "dilation",
                                     "ceil_mode", "return_indices"),
                      {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                       "return_indices": False}, "max_pool2d")
            return self.maxpool(base, self.tensor(a["input"], "max_pool2d"), a["kernel_size"],
                                a["stride"], a["padding"], a["dilation"], a["ceil_mode"],
                                a["return_indices"])
        if fn is F.avg_pool2d:
            a = _bind(args, kwargs, ("input", "kernel_size", "stride", "padding", "ceil_mode",
                                     "count_include_pad", "divisor_override"),
                      {"stride": None, "padding": 0, "ceil_mode": False,
                       "count_include_pad": True, "divisor_override": None}, "avg_pool2d")
            return self.avgpool(base, self.tensor(a["input"], "avg_pool2d"), a["kernel_size"],
                                a["stride"], a["padding"], a["ceil_mode"],
                                a["count_include_pad"], a["divisor_override"])
        if fn is F.adaptive_avg_pool2d:
            a = _bind(args, kwargs, ("input", "output_size"), {}, "adaptive_avg_pool2d")
            return self.adaptive_avgpool(base, self.tensor(a["input"], "adaptive_avg_pool2d"),
                                         a["output_size"])
        if fn in (F.dropout, F.dropout2d):
            a = _bind(args, kwargs, ("input", "p", "training", "inplace"),
                      {"p": 0.5, "training": True, "inplace": False}, "dropout")
            return self.add(base, lambda n, i: Dropout(n, i, p=float(a["p"])),
                            [self.tensor(a["input"], "dropout")])
        if fn in (F.softmax, torch.softmax):
            a = _bind(args, kwargs, ("input", "dim", "_stacklevel", "dtype"),
                      {"dim": None, "_stacklevel": 3, "dtype": None}, "softmax")
            if a["dtype"] is not None:
                raise _Unsupported("softmax(dtype=...)")
            return self.softmax(base, self.tensor(a["input"], "softmax"), a["dim"])
        if fn is F.local_response_norm:
            a = _bind(args, kwargs, ("input", "size", "alpha", "beta", "k"),
                      {"alpha": 1e-4, "beta": 0.75, "k": 1.0}, "local_response_norm")
            return self.add(base, lambda n, i: LRN(
                n, i, size=int(a["size"]), alpha=float(a["alpha"]), beta=float(a["beta"]),
                k=float(a["k"])), [self.tensor(a["input"], "local_response_norm")])
        if fn is getattr and len(args) == 2 and args[1] == "shape" and isinstance(args[0], _T):
            return _Sizes()
        if fn is operator.getitem and isinstance(args[0], _Sizes) and args[1] == 0:
            return _Batch()
        raise _Unsupported(getattr(fn, "__name__", repr(fn)))

    def method_node(self, base: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]
                    ) -> Any:
        self_arg, rest = args[0], list(args[1:])
        if method == "size" and isinstance(self_arg, _T):
            a = _bind(rest, kwargs, ("dim",), {"dim": None}, "size")
            if a["dim"] is None:
                return _Sizes()
            if a["dim"] == 0:
                return _Batch()
            raise _Unsupported(f"size({a['dim']})")
        x = self.tensor(self_arg, f"method {method}")
        if method in ("relu", "relu_"):
            _bind(rest, kwargs, (), {}, method)
            return self.add(base, lambda n, i: ReLU(n, i), [x])
        if method in ("view", "reshape"):
            if kwargs:
                raise _Unsupported(f"{method} with keyword arguments")
            return self.reshape(base, x, tuple(rest), method)
        if method == "flatten":
            a = _bind(rest, kwargs, ("start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1},
                      "flatten")
            return self.flatten(base, x, a["start_dim"], a["end_dim"])
        if method in ("add", "add_", "__add__", "__iadd__"):
            a = _bind(rest, kwargs, ("other", "alpha"), {"alpha": 1}, method)
            if a["alpha"] != 1:
                raise _Unsupported(f"{method}(alpha != 1)")
            return self.add_tensors(base, x, a["other"], method)
        if method == "softmax":
            a = _bind(rest, kwargs, ("dim",), {}, "softmax")
            return self.softmax(base, x, a["dim"])
        if method in ("contiguous", "float"):
            _bind(rest, kwargs, (), {}, method)
            return x
        raise _Unsupported(f"Tensor.{method}")


def import_torch(module: Any, input_shape: Sequence[int], name: str | None = None) -> Graph:
    """Trace `module` with torch.fx and return its graph, weights copied as float32.

    `input_shape` is per sample, e.g. (3, 224, 224). The module is read, never changed.
    Raises UnsupportedModelError listing every node the IR cannot represent.
    """
    import torch
    import torch.fx

    if not isinstance(module, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or min(shape) <= 0:
        raise InputError(f"input shape must be positive dimensions, got {tuple(input_shape)}")
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as e:  # tracing failures are a property of the user's model
        raise InputError(f"torch.fx cannot trace {type(module).__name__}: {e}") from None

    imp = _Importer(traced, shape)
    values: dict[str, Any] = {}
    outputs: list[str] = []
    placeholders = 0
    for node in traced.graph.nodes:
        try:
            def lookup(a: Any) -> Any:
                return values[a.name] if isinstance(a, torch.fx.Node) else a

            args = tuple(torch.fx.node.map_aggregate(node.args, lookup))
            kwargs = dict(torch.fx.node.map_aggregate(node.kwargs, lookup))
            if node.op == "placeholder":
                placeholders += 1
                if placeholders > 1:
                    raise _Unsupported("second model input")
                values[node.name] = _T(INPUT, shape)
            elif node.op == "call_module":
                mod = traced.get_submodule(node.target)
                values[node.name] = imp.module_node(node.name, mod, args, kwargs)
            elif node.op == "call_function":
                values[node.name] = imp.function_node(node.name, node.target, args, kwargs)
            elif node.op == "call_method":
                values[node.name] = imp.method_node(node.name, node.target, args, kwargs)
            elif node.op == "get_attr":
                raise _Unsupported(f"parameter/buffer used directly ({node.target})")
            elif node.op == "output":
                res = args[0]
                items = res if isinstance(res, tuple | list) else (res,)
                for item in items:
                    if isinstance(item, _T):
                        if item.ref is not None:
                            outputs.append(item.ref)
                    else:
                        raise _Unsupported("model output that is not a tensor")
            else:  # pragma: no cover - torch.fx has no other node kinds
                raise _Unsupported(node.op)
        except _Unsupported as u:
            imp.unsupported.append((node.name, u.op))
            values[node.name] = _T(None, None)
        except _UnknownInput:
            values[node.name] = _T(None, None)
        except InputError as e:  # shapes that do not fit (ShapeError) for a supported node
            imp.unsupported.append((node.name, str(e)))
            values[node.name] = _T(None, None)
    if imp.unsupported:
        raise UnsupportedModelError(imp.unsupported)
    # A layer fed by an unsupported node has no ref; all those were reported above.
    return Graph(
        name=name or type(module).__name__,
        input_shape=shape,
        layers=tuple(imp.layers),
        outputs=tuple(outputs),
        params=imp.params,
    )
