"""Import an ONNX model into the graph IR.

Initializers (and Constant nodes) become weights. Layer names are the ONNX node names with '/'
replaced by '_' (a leading '/' dropped), or `<op>_<index>` for unnamed nodes. The small
Shape → Gather → Unsqueeze → Concat → Reshape chains that exporters emit for `x.view(N, -1)` are
evaluated symbolically. Every node the IR cannot represent is collected and one
`UnsupportedModelError` lists them all (by their ONNX names).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepfpga.errors import InputError, UnsupportedModelError
from deepfpga.frontends.onnx_file import initializers, input_shape, read_onnx
from deepfpga.frontends.onnx_shapes import (
    UNKNOWN,
    N,
    ShapeOps,
    Tensor,
    UnknownInput,
    Unsupported,
    dims_of,
    int_list,
    required,
    symmetric_pads,
)
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


class _Importer(ShapeOps):
    def __init__(self, opset: int, batch: int | None):
        self.opset = opset
        self.batch = batch
        self.layers: list[Layer] = []
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.names: set[str] = {INPUT}
        self.values: dict[str, Any] = {}
        self.consumers: dict[str, int] = {}

    def name_for(self, node: Any, index: int) -> str:
        base = node.name.lstrip("/").replace("/", "_") or f"{node.op_type.lower()}_{index}"
        cand, i = base, 1
        while cand in self.names:
            cand = f"{base}_{i}"
            i += 1
        self.names.add(cand)
        return cand

    def add(self, name: str, layer: Layer, inputs: list[Tensor],
            params: dict[str, np.ndarray] | None = None) -> Tensor:
        if any(t.shape is None for t in inputs):
            raise UnknownInput
        shape = layer.output_shape([t.shape for t in inputs])
        self.layers.append(layer)
        if params:
            self.params[name] = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
        return Tensor(name, shape)

    # --- value access -----------------------------------------------------------------------
    def tensor(self, node: Any, i: int) -> Tensor:
        if i >= len(node.input) or not node.input[i]:
            raise Unsupported(f"{node.op_type} without input {i}")
        v = self.values[node.input[i]]
        if not isinstance(v, Tensor):
            raise Unsupported(f"{node.op_type} on a constant input {i}")
        return v

    def known(self, node: Any, i: int) -> tuple[str, Shape]:
        """Input tensor `i` with a known shape (else the node is skipped, not reported)."""
        t = self.tensor(node, i)
        if t.shape is None:
            raise UnknownInput
        return t.ref, t.shape

    def const(self, node: Any, i: int, what: str) -> np.ndarray:
        if i >= len(node.input) or not node.input[i]:
            raise Unsupported(f"{node.op_type} without {what}")
        v = self.values[node.input[i]]
        if not isinstance(v, np.ndarray):
            raise Unsupported(f"{node.op_type} whose {what} is not an initializer")
        return v

    def opt_const(self, node: Any, i: int, what: str) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        return self.const(node, i, what)

    # --- nodes --------------------------------------------------------------------------------
    def check_op(self, node: Any) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise Unsupported(f"{node.domain}.{node.op_type}")
        if not hasattr(self, f"op_{node.op_type}"):
            raise Unsupported(node.op_type)

    def node(self, node: Any, index: int, attrs: dict[str, Any]) -> list[Any]:
        out = getattr(self, f"op_{node.op_type}")(node, index, attrs)
        return out if isinstance(out, list) else [out]

    def _pads(self, op: str, attrs: dict[str, Any], kernel: Sequence[int],
              stride: Sequence[int], x: Tensor) -> tuple[int, int]:
        """Explicit pads, or the pads auto_pad=SAME_* implies, which must be symmetric."""
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto == "VALID":
            return (0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            if x.shape is None:
                raise UnknownInput
            if len(x.shape) != 3:
                raise Unsupported(f"{op}(auto_pad={auto}) on a {len(x.shape)}-d input")
            pads = []
            for size, k, st in zip(x.shape[1:], kernel, stride, strict=True):
                total = max((-(-size // st) - 1) * st + k - size, 0)
                if total % 2:
                    raise Unsupported(f"{op}(auto_pad={auto}) with asymmetric padding")
                pads.append(total // 2)
            return (pads[0], pads[1])
        if auto != "NOTSET":
            raise Unsupported(f"{op}(auto_pad={auto})")
        pads = attrs.get("pads", [])
        if not isinstance(pads, list | tuple) or \
                not all(isinstance(p, int | np.integer) for p in pads):
            raise Unsupported(f"{op}(pads={pads!r}): not a list of integers")
        if any(p < 0 for p in pads):
            raise Unsupported(f"{op}(negative pads={list(pads)})")
        return symmetric_pads(pads, op)

    def op_Conv(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        w = self.const(node, 1, "weight")
        b = self.opt_const(node, 2, "bias")
        if attrs.get("group", 1) != 1:
            raise Unsupported(f"Conv(group={attrs['group']})")
        if w.ndim != 4:
            raise Unsupported(f"Conv with a {w.ndim}-d weight (only 2-d convolution)")
        if int_list(attrs, "dilations", "Conv", [1, 1]) != (1, 1):
            raise Unsupported(f"Conv(dilations={attrs['dilations']})")
        stride = int_list(attrs, "strides", "Conv", [1, 1])
        if min(stride) <= 0:
            raise Unsupported(f"Conv(strides={list(stride)}): strides must be positive")
        kshape = int_list(attrs, "kernel_shape", "Conv", w.shape[2:])
        if kshape != tuple(w.shape[2:]):
            raise Unsupported(f"Conv(kernel_shape={list(kshape)}) contradicts its weight of"
                               f" shape {list(w.shape)}")
        if min(w.shape) <= 0:
            raise Unsupported(f"Conv with an empty weight of shape {list(w.shape)}")
        if b is not None and b.shape != (w.shape[0],):
            raise Unsupported(f"Conv bias of shape {list(b.shape)} for {w.shape[0]} outputs")
        pad = self._pads("Conv", attrs, w.shape[2:], stride, x)
        name = self.name_for(node, index)
        layer = Conv2d(name, (x.ref,), in_channels=int(w.shape[1]), out_channels=int(w.shape[0]),
                       kernel=(int(w.shape[2]), int(w.shape[3])), stride=stride, padding=pad,
                       bias=b is not None)
        p = {"weight": w} if b is None else {"weight": w, "bias": b}
        return self.add(name, layer, [x], p)

    def op_Gemm(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        if attrs.get("transA", 0):
            raise Unsupported("Gemm(transA=1)")
        bmat = self.const(node, 1, "weight")
        if bmat.ndim != 2 or min(bmat.shape) <= 0:
            raise Unsupported(f"Gemm with a weight of shape {list(bmat.shape)} (2-d expected)")
        c = self.opt_const(node, 2, "bias")
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        # Gemm computes alpha·A·B' + beta·C with B' = B or Bᵀ; Linear's weight is (out, in).
        w = bmat if attrs.get("transB", 0) else bmat.T
        if alpha != 1.0:
            w = w * alpha
        out_f, in_f = w.shape
        name = self.name_for(node, index)
        p = {"weight": w}
        if c is not None:
            if c.size not in (1, out_f):
                raise Unsupported(f"Gemm with bias of shape {c.shape}")
            p["bias"] = np.broadcast_to(c.reshape(-1) * beta, (out_f,)).copy()
        layer = Linear(name, (x.ref,), in_features=int(in_f), out_features=int(out_f),
                       bias=c is not None)
        return self.add(name, layer, [x], p)

    def op_MatMul(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        bmat = self.const(node, 1, "weight")
        if x.shape is None:
            raise UnknownInput
        if bmat.ndim != 2 or len(x.shape) != 1 or min(bmat.shape) <= 0:
            raise Unsupported("MatMul other than (N, F) x (F, M)")
        name = self.name_for(node, index)
        layer = Linear(name, (x.ref,), in_features=int(bmat.shape[0]),
                       out_features=int(bmat.shape[1]), bias=False)
        return self.add(name, layer, [x], {"weight": bmat.T})

    def op_Add(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        a, b = (self.values[n] for n in node.input[:2])
        if isinstance(a, Tensor) and isinstance(b, Tensor):
            name = self.name_for(node, index)
            return self.add(name, Add(name, (a.ref, b.ref)), [a, b])
        t, c = (a, b) if isinstance(a, Tensor) else (b, a)
        if not (isinstance(t, Tensor) and isinstance(c, np.ndarray)):
            raise Unsupported("Add of two constants")
        # MatMul + Add(constant) is a Linear with bias: fold when the MatMul feeds only this Add.
        last = next((lay for lay in self.layers if lay.name == t.ref), None)
        src = next((n for n in node.input[:2] if isinstance(self.values[n], Tensor)), "")
        if (isinstance(last, Linear) and not last.bias and self.consumers.get(src, 0) == 1
                and c.size == last.out_features):
            i = self.layers.index(last)
            self.layers[i] = Linear(last.name, last.inputs, in_features=last.in_features,
                                    out_features=last.out_features, bias=True)
            self.params[last.name]["bias"] = c.reshape(-1).astype(np.float32)
            return t
        raise Unsupported("Add of a constant not following a MatMul")

    def op_Relu(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        name = self.name_for(node, index)
        return self.add(name, ReLU(name, (x.ref,)), [x])

    def _pool_args(self, op: str, attrs: dict[str, Any], x: Tensor) -> tuple[Any, Any, Any, bool]:
        if int_list(attrs, "dilations", op, [1, 1]) != (1, 1):
            raise Unsupported(f"{op}(dilations={attrs['dilations']})")
        if attrs.get("storage_order", 0):
            raise Unsupported(f"{op}(storage_order=1)")
        required(attrs, "kernel_shape", op)
        k = int_list(attrs, "kernel_shape", op, ())
        s = int_list(attrs, "strides", op, [1, 1])  # ONNX's default stride is 1, not the kernel
        if min(k) <= 0 or min(s) <= 0:
            raise Unsupported(f"{op}(kernel_shape={list(k)}, strides={list(s)}): must be"
                               " positive")
        return k, s, self._pads(op, attrs, k, s, x), bool(attrs.get("ceil_mode", 0))

    def op_MaxPool(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        if len(node.output) > 1 and node.output[1]:
            raise Unsupported("MaxPool with Indices output")
        x = self.tensor(node, 0)
        k, s, p, ceil = self._pool_args("MaxPool", attrs, x)
        name = self.name_for(node, index)
        layer = MaxPool2d(name, (x.ref,), kernel=k, stride=s, padding=p, ceil_mode=ceil)
        return self.add(name, layer, [x])

    def op_AveragePool(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        k, s, p, ceil = self._pool_args("AveragePool", attrs, x)
        if p != (0, 0) and not attrs.get("count_include_pad", 0):
            raise Unsupported("AveragePool(count_include_pad=0 with pads)")
        name = self.name_for(node, index)
        layer = AvgPool2d(name, (x.ref,), kernel=k, stride=s, padding=p, ceil_mode=ceil)
        if ceil:
            floor = AvgPool2d(name, (x.ref,), kernel=k, stride=s, padding=p)
            # Partial edge windows are averaged differently across frameworks: refuse them.
            if floor.output_shape([x.shape]) != layer.output_shape([x.shape]):
                raise Unsupported("AveragePool(ceil_mode=1 with partial windows)")
            layer = floor
        return self.add(name, layer, [x])

    def op_GlobalAveragePool(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        self.known(node, 0)
        if len(x.shape) != 3:
            raise Unsupported(f"GlobalAveragePool on shape {x.shape}")
        _, h, w = x.shape
        if (h, w) == (1, 1):
            return x
        name = self.name_for(node, index)
        return self.add(name, AvgPool2d(name, (x.ref,), kernel=(h, w), stride=(h, w)), [x])

    def op_Flatten(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        self.known(node, 0)
        rank = len(x.shape) + 1
        axis = int(attrs.get("axis", 1))
        if (axis + rank if axis < 0 else axis) != 1:
            raise Unsupported(f"Flatten(axis={axis})")
        name = self.name_for(node, index)
        return self.add(name, Flatten(name, (x.ref,)), [x])

    def op_Reshape(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        self.known(node, 0)
        if len(node.input) < 2:
            raise Unsupported("Reshape without a shape input")
        try:
            dims = dims_of(self.values[node.input[1]], "Reshape").items
        except Unsupported:
            raise Unsupported("Reshape to a shape computed at run time") from None
        total = math.prod(x.shape)
        batch_ok = {0, -1} | ({self.batch} if self.batch is not None else set())
        ok = (
            len(dims) == 2
            and (dims[0] is N or dims[0] in batch_ok)
            and (dims[1] == -1 or dims[1] == total)
            and not (dims[0] == -1 and dims[1] == -1)
        )
        if not ok:
            raise Unsupported(f"Reshape to {list(dims)} (only (N, -1) is supported)")
        name = self.name_for(node, index)
        return self.add(name, Flatten(name, (x.ref,)), [x])

    def op_Dropout(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        ratio = self.opt_const(node, 1, "ratio")
        if ratio is not None and ratio.size != 1:
            raise Unsupported(f"Dropout with a ratio of shape {list(ratio.shape)}")
        training = self.opt_const(node, 2, "training_mode")
        if training is not None and (training.size != 1 or bool(training.reshape(-1)[0])):
            raise Unsupported("Dropout(training_mode=True): random at inference")
        if attrs.get("is_test", 1) == 0:  # opset < 7
            raise Unsupported("Dropout(is_test=0): training mode")
        p = float(ratio.reshape(-1)[0]) if ratio is not None else float(attrs.get("ratio", 0.5))
        if not 0.0 <= p < 1.0:
            raise Unsupported(f"Dropout(ratio={p}): must be in [0, 1)")
        name = self.name_for(node, index)
        return self.add(name, Dropout(name, (x.ref,), p=p), [x])

    def op_BatchNormalization(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        if attrs.get("training_mode", 0) or any(o for o in node.output[1:]):
            raise Unsupported("BatchNormalization in training mode")
        x = self.tensor(node, 0)
        p = {
            "weight": self.const(node, 1, "scale"),
            "bias": self.const(node, 2, "B"),
            "running_mean": self.const(node, 3, "mean"),
            "running_var": self.const(node, 4, "var"),
        }
        if any(v.ndim != 1 or v.shape != p["weight"].shape for v in p.values()):
            raise Unsupported("BatchNormalization with parameters of shapes"
                               f" {[list(v.shape) for v in p.values()]} (four equal vectors)")
        name = self.name_for(node, index)
        layer = BatchNorm2d(name, (x.ref,), num_features=int(p["weight"].shape[0]),
                            eps=float(attrs.get("epsilon", 1e-5)))
        return self.add(name, layer, [x], p)

    def op_Softmax(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        self.known(node, 0)
        rank = len(x.shape) + 1
        axis = int(attrs.get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        # Before opset 13 Softmax normalises over all axes from `axis` on (2-D coercion).
        if axis != 1 or (self.opset < 13 and rank != 2):
            raise Unsupported(f"Softmax(axis={attrs.get('axis')}) on rank {rank}")
        name = self.name_for(node, index)
        return self.add(name, Softmax(name, (x.ref,)), [x])

    def op_LRN(self, node: Any, index: int, attrs: dict[str, Any]) -> Tensor:
        x = self.tensor(node, 0)
        size = int(required(attrs, "size", "LRN"))
        if size <= 0:
            raise Unsupported(f"LRN(size={size}): must be positive")
        if size % 2 == 0:  # ONNX and torch centre an even window differently
            raise Unsupported(f"LRN(size={size}, even)")
        name = self.name_for(node, index)
        layer = LRN(name, (x.ref,), size=size, alpha=float(attrs.get("alpha", 1e-4)),
                    beta=float(attrs.get("beta", 0.75)), k=float(attrs.get("bias", 1.0)))
        return self.add(name, layer, [x])

    def op_Identity(self, node: Any, index: int, attrs: dict[str, Any]) -> Any:
        if not node.input or not node.input[0]:
            raise Unsupported("Identity without an input")
        return self.values[node.input[0]]


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    attrs = {}
    for a in node.attribute:
        try:
            attrs[a.name] = helper.get_attribute_value(a)
        except Exception:  # an attribute of undefined type: a malformed protobuf
            raise Unsupported(f"{node.op_type} with an unreadable attribute {a.name!r}") from None
    return attrs


def import_onnx(source: str | os.PathLike[str] | bytes, name: str | None = None) -> Graph:
    """Read an ONNX model (a path or its bytes) into a Graph with float32 weights."""
    model, label = read_onnx(source)
    return import_model(model, label, name)


def import_model(model: Any, label: str, name: str | None = None) -> Graph:
    """An ONNX ModelProto already read by `onnx_file.read_onnx` (external data loaded) into a
    Graph; `label` names the file in messages."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    init = initializers(model, label)
    in_name, shape, batch = input_shape(model, set(init), label)
    imp = _Importer(opset, batch)
    imp.values.update(init)
    imp.values[in_name] = Tensor(INPUT, shape)
    produced: set[str] = set(imp.values)
    for node in model.graph.node:
        for i in node.input:
            imp.consumers[i] = imp.consumers.get(i, 0) + 1
        twice = sorted({o for o in node.output if o} & produced)
        if twice:  # ONNX graphs are in SSA form: one producer per name
            raise InputError(f"{label}: value {twice[0]!r} is produced twice (by node"
                             f" {node.name or node.op_type!r} and an earlier one)")
        produced.update(o for o in node.output if o)

    unsupported: list[tuple[str, str]] = []
    for index, node in enumerate(model.graph.node):
        label_node = node.name or f"{node.op_type}_{index}"
        # Downstream of an unsupported node shapes are unknown; such nodes are still checked
        # so that one error lists every unsupported node, but failures caused only by the
        # unknown input are not reported again.
        fed_unknown = any(isinstance(imp.values.get(i), Tensor) and imp.values[i].shape is None
                          for i in node.input if i)
        try:
            imp.check_op(node)
            missing = [i for i in node.input if i and i not in imp.values]
            if missing:
                if missing[0] in produced:
                    raise Unsupported(f"reads {missing[0]!r} before the node that produces it"
                                      " (the graph is not in topological order)")
                raise Unsupported(f"reads {missing[0]!r}, which no node produces")
            outs = imp.node(node, index, _attributes(node))
            for out_name, value in zip(node.output, outs, strict=False):
                if out_name:
                    imp.values[out_name] = value
            continue
        except Unsupported as u:
            unsupported.append((label_node, u.op))
        except UnknownInput:
            pass
        except InputError as e:  # shapes that do not fit
            if not fed_unknown:
                unsupported.append((label_node, f"{node.op_type}: {e}"))
        except (TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
            # A malformed node the checks above did not foresee: refuse it by name.
            if not fed_unknown:
                unsupported.append((label_node, f"{node.op_type}: malformed"
                                    f" ({type(e).__name__}: {e})"))
        for out_name in node.output:
            if out_name:
                imp.values[out_name] = UNKNOWN
    if unsupported:
        raise UnsupportedModelError(unsupported)

    outputs = []
    for o in model.graph.output:
        v = imp.values.get(o.name)
        if not isinstance(v, Tensor):
            raise UnsupportedModelError([(o.name, "model output that is not a computed tensor")])
        outputs.append(v.ref)
    if not outputs:
        raise InputError(f"{label}: the model has no outputs")
    if any(ref == INPUT for ref in outputs):
        raise InputError(f"{label}: a model output is the input itself (no layers)")
    try:
        return Graph(
            name=name or (model.graph.name or "onnx"),
            input_shape=shape,
            layers=tuple(imp.layers),
            outputs=tuple(outputs),
            params=imp.params,
        )
    except InputError as e:
        raise InputError(f"{label}: {e}") from None
