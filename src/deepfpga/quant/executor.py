"""A whole quantized model run bit-exactly, layer by layer, with the contract's steps
(`contract.py`) on the exact-product engine (`gemm.py`): `ReferenceExecutor` prepares the
weights once and runs batches; `execute`, `execute_layer` are the one-call forms."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from deepfpga.errors import InputError
from deepfpga.hw.arch import stays_float
from deepfpga.ir import (
    INPUT,
    Add,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
)
from deepfpga.quant.contract import (
    _add_t,
    _bias_round,
    _check_batch,
    _finish_rows,
    _maxpool_t,
    _round_const,
    quantize_input,
)
from deepfpga.quant.fixedpoint import FixedFormat, align_bias, count_saturated, to_fixed
from deepfpga.quant.gemm import (
    ACC_INT64_LIMIT,
    Method,
    PreparedMatrix,
    Workspace,
    _combine,
    _gemm_blocks,
    _Products,
    _row_parallel,
    prepare_matrix,
)
from deepfpga.quant.intarrays import _int_tensor, _np, _range_of
from deepfpga.quant.kernels import int8_gemm_available
from deepfpga.quant.patches import conv_matrix, conv_patches, fc_patches
from deepfpga.quant.qmodel import LayerFormats, QuantizedModel


# --------------------------------------------------------------------------------------------
# the executor
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExecutionResult:
    """What `execute` returns.

    `outputs[name]`: each graph output as int64 integers in its format (the float64 result for
    a host-only output layer, e.g. a final softmax); `output`: the only output. `layers[name]`:
    the kept layer outputs, likewise. `saturations[name]`: values clipped per layer (and under
    INPUT when the input was quantized here). `formats`: each layer's LayerFormats;
    `input_format`: the graph input's format; `float_outputs`: layers whose result is float.
    """

    outputs: Mapping[str, np.ndarray]
    layers: Mapping[str, np.ndarray]
    saturations: Mapping[str, int]
    formats: Mapping[str, LayerFormats]
    input_format: FixedFormat
    float_outputs: frozenset[str] = field(default_factory=frozenset)

    @property
    def output(self) -> np.ndarray:
        if len(self.outputs) != 1:
            raise InputError(
                f"graph has {len(self.outputs)} outputs ({', '.join(self.outputs)}): use .outputs"
            )
        return next(iter(self.outputs.values()))

    @property
    def total_saturations(self) -> int:
        return int(sum(self.saturations.values()))


_TORCH_INT = {np.int8: torch.int8, np.int16: torch.int16, np.int32: torch.int32}


def _tdtype(fmt: FixedFormat) -> torch.dtype:
    """Feature maps live in the smallest integer type of their format."""
    return _TORCH_INT[fmt.dtype]


@dataclass(frozen=True, eq=False)
class _WeightedLayer:
    pw: PreparedMatrix
    bias: np.ndarray | None  # aligned to fl_acc, int64 (O,)
    bias_round: np.ndarray | None  # bias (+ input digit offset term) + rounding constant
    fl_acc: int
    shift: int  # s = fl_acc - fl_out
    bound: int  # contract step 1 bound, bias included
    int32_ok: bool  # raw int8/float32 GEMM results can be finished in int32


def _relu_follows(qmodel: QuantizedModel, name: str) -> bool:
    """Whether the accelerator fuses a ReLU into this layer: its only reader is a ReLU and the
    pre-ReLU value is not a graph output. Saturations are then counted after the ReLU."""
    g = qmodel.graph
    readers = g.consumers(name)
    return len(readers) == 1 and isinstance(readers[0], ReLU) and name not in g.outputs


def _host_float(layer: Layer, xs: list[torch.Tensor], fls: list[int]) -> torch.Tensor:
    """A host-only layer in float64 on dequantized inputs, with the float executor's semantics
    (deepfpga.ir.float_exec.apply_layer)."""
    from deepfpga.ir.float_exec import apply_layer

    vals = [torch.ldexp(x.to(torch.float64), torch.tensor(-fl, dtype=torch.float64))
            for x, fl in zip(xs, fls, strict=True)]
    with torch.inference_mode():
        return apply_layer(layer, {}, vals)


def _check_range(t: torch.Tensor, fmt: FixedFormat, what: str) -> None:
    lo, hi = _range_of(t)
    if lo < fmt.qmin or hi > fmt.qmax:
        raise InputError(
            f"{what}: integers in [{lo}, {hi}] lie outside the format {fmt}"
            f" [{fmt.qmin}, {fmt.qmax}]"
        )


def _prepare_layer(q: QuantizedModel, layer: Conv2d | Linear, method: Method,
                   i8_ok: bool) -> _WeightedLayer:
    f = q.formats[layer.name]
    arrays = q.weights[layer.name]
    assert f.weight is not None  # QuantizedModel.validate guarantees it
    w = torch.from_numpy(np.asarray(arrays["weight"]).astype(f.weight.dtype))
    w2d = conv_matrix(w) if isinstance(layer, Conv2d) else w
    bias = None
    if "bias" in arrays:
        assert f.bias is not None
        try:
            bias = align_bias(arrays["bias"], f.bias.fl, f.fl_acc)
        except InputError as e:
            raise InputError(f"layer {layer.name!r}: {e}") from None
    try:
        pw = prepare_matrix(w2d, x_bits=f.input.bw, method=method, i8_ok=i8_ok)
    except InputError as e:
        raise InputError(f"layer {layer.name!r}: {e}") from None
    scale = 1 << (f.input.bw - 1)
    babs = [0] * pw.o if bias is None else [abs(v) for v in bias.tolist()]
    bound = max((a * scale + b for a, b in zip(pw.row_abs.tolist(), babs, strict=True)),
                default=0)
    if bound >= ACC_INT64_LIMIT:
        raise InputError(
            f"layer {layer.name!r}: accumulator bound {bound} reaches 2^62; no accumulator holds"
            " it (narrower weights or data are needed)"
        )
    s = f.fl_acc - f.output.fl
    int32_ok = (pw.method in ("i8", "f32") and pw.raw
                and bound + _round_const(s) < (1 << 31) and s < 32)
    # The input digits' offset c_x contributes c_x·Σ_k W[o, k] to every output o: added once
    # here, with the bias (exact in int64, see _gemm_blocks).
    total = bias
    if pw.x_offset:
        total = _np(pw.rowsum) * pw.x_offset + (0 if bias is None else bias)
    return _WeightedLayer(pw, bias, _bias_round(total, s), f.fl_acc, s, bound, int32_ok)


def _keep_set(keep: bool | str | Iterable[str], g: Graph) -> set[str]:
    if keep is False or keep is None:
        return set()
    if keep is True or keep == "all":
        return {lay.name for lay in g.layers}
    if isinstance(keep, str):
        raise InputError(f"keep must be False, 'all' or a set of layer names, got {keep!r}")
    names = set(keep)
    unknown = sorted(names - {lay.name for lay in g.layers} - {INPUT})
    if unknown:
        raise InputError(f"keep names unknown layers: {unknown}")
    return names


def _public(t: torch.Tensor) -> np.ndarray:
    """What callers see: int64 integers (or float64 host results) in NCHW order."""
    if t.is_floating_point():
        return _np(t.to(torch.float64))
    return np.ascontiguousarray(_np(t.to(torch.int64)))


@dataclass(frozen=True, eq=False)
class ReferenceExecutor:
    """A quantized model with its weights prepared once for fast exact products.

    Build with `ReferenceExecutor.build(qmodel)`; `run` executes batches, `run_layer` one layer.
    """

    qmodel: QuantizedModel
    prepared: Mapping[str, _WeightedLayer]
    relu_fused: frozenset[str]
    # Scratch memory kept between runs (about the largest layer's patch matrix and products);
    # a run that finds it in use by another thread takes a private one.
    _ws: Workspace = field(default_factory=Workspace, repr=False)
    _ws_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def _workspace(self) -> Iterator[Workspace]:
        if self._ws_lock.acquire(blocking=False):
            try:
                yield self._ws
            finally:
                self._ws_lock.release()
        else:
            yield Workspace()

    @staticmethod
    def build(qmodel: QuantizedModel, *, method: Method = "auto",
              layers: Iterable[str] | None = None) -> ReferenceExecutor:
        """Prepare the weighted layers (all, or only `layers`); `method` as for `conv_acc`."""
        wanted = None if layers is None else set(layers)
        i8_ok = method in ("auto", "i8") and int8_gemm_available()
        prepared: dict[str, _WeightedLayer] = {}
        for layer in qmodel.graph.layers:
            if isinstance(layer, BatchNorm2d):
                raise InputError(
                    f"layer {layer.name!r}: batch norm must be folded into the preceding conv"
                    " before quantization"
                )
            if not isinstance(layer, Conv2d | Linear) or (wanted and layer.name not in wanted):
                continue
            prepared[layer.name] = _prepare_layer(qmodel, layer, method, i8_ok)
        fused = frozenset(
            layer.name for layer in qmodel.graph.layers
            if isinstance(layer, Conv2d | Linear) and _relu_follows(qmodel, layer.name)
        )
        return ReferenceExecutor(qmodel, MappingProxyType(prepared), fused)

    def methods(self) -> dict[str, str]:
        """The accumulation method chosen for each weighted layer."""
        return {name: p.pw.method for name, p in self.prepared.items()}

    # -- one layer --------------------------------------------------------------------------
    def _weighted(self, layer: Conv2d | Linear, x: torch.Tensor, relu: bool,
                  count_negative: bool, ws: Workspace | None) -> tuple[torch.Tensor, int]:
        p = self.prepared.get(layer.name)
        if p is None:
            raise InputError(f"layer {layer.name!r} was not prepared")
        f = self.qmodel.formats[layer.name]
        what = f"input of layer {layer.name!r}"
        if isinstance(layer, Conv2d):
            patches, (n, ho, wo) = conv_patches(x, p.pw, layer.kernel, layer.stride,
                                                 layer.padding, False, what, ws)
        else:
            patches = fc_patches(x, p.pw, False, what)
        dest = torch.empty((patches.rows, p.pw.o), dtype=_tdtype(f.output))
        dn = _np(dest)
        nsat = 0
        for r0, r1, pr in _gemm_blocks(patches, p.pw, ws):
            acc_buf = None if pr.raw or ws is None else ws.array(
                "acc", (r1 - r0, p.pw.o), np.int64)

            def tail(a: int, b: int, r0: int = r0, pr: _Products = pr,
                     acc_buf: np.ndarray | None = acc_buf) -> int:
                # the input digits' offset correction is a per-output constant, in bias_round
                acc = _combine(pr, p.pw, a, b, add_x_offset=False, acc_buf=acc_buf)
                if acc.dtype == np.float32:  # raw float32 product: exact integers < 2^24
                    acc = acc.astype(np.int32 if p.int32_ok else np.int64)
                elif acc.dtype == np.int32 and not p.int32_ok:
                    acc = acc.astype(np.int64)
                return _finish_rows(acc, p.bias_round, p.shift, f.output, relu, count_negative,
                                    dn[r0 + a:r0 + b])

            nsat += _row_parallel(r1 - r0, p.pw.o, tail)
        if isinstance(layer, Conv2d):
            return dest.reshape(n, ho, wo, p.pw.o).permute(0, 3, 1, 2), nsat
        return dest, nsat

    def _layer(self, layer: Layer, xs: list[torch.Tensor], owned: bool, fuse_relu: bool = False,
               ws: Workspace | None = None) -> tuple[torch.Tensor, int]:
        """A layer's integer output (in its format's dtype) and saturation count. `owned`:
        xs[0] may be overwritten. `fuse_relu`: a conv/FC returns its ReLU'd output directly."""
        q = self.qmodel
        f = q.formats[layer.name]
        if isinstance(layer, Conv2d | Linear):
            return self._weighted(layer, xs[0], relu=fuse_relu,
                                  count_negative=layer.name not in self.relu_fused, ws=ws)
        if isinstance(layer, ReLU):
            return (xs[0].clamp_min_(0) if owned else xs[0].clamp_min(0)), 0
        if isinstance(layer, MaxPool2d):
            return _maxpool_t(xs[0], layer.kernel, layer.stride, layer.padding,
                              layer.ceil_mode, f.input.qmin), 0
        if isinstance(layer, Flatten):
            return xs[0].reshape(xs[0].shape[0], -1), 0
        if isinstance(layer, Dropout):
            return xs[0], 0
        if isinstance(layer, Add):
            # A following ReLU stays a layer of its own (the host runs the add): every
            # saturated value of the sum is counted.
            y, n = _add_t(xs, [q.format_of(src).fl for src in layer.inputs], f.output,
                          relu=False)
            return y.to(_tdtype(f.output)), n
        if layer.host_float:
            yf = _np(_host_float(layer, xs, [q.format_of(src).fl for src in layer.inputs]))
            y = to_fixed(yf, f.output, f"output of layer {layer.name!r}")
            return torch.from_numpy(y).to(_tdtype(f.output)), count_saturated(yf, f.output)
        raise InputError(f"layer {layer.name!r}: kind {layer.kind!r} has no fixed-point semantics")

    def run_layer(self, name: str, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
        """One layer on given integer batches (one per producer, each in its producer's format).

        Returns the layer's int64 output (pre-ReLU for a conv/FC: a following ReLU is a layer of
        its own) and its saturation count (counted as the accelerator fuses a following ReLU,
        like `run`). A host-only layer's output is re-quantized to its output format.
        """
        q, g = self.qmodel, self.qmodel.graph
        layer = g.layer(name)
        if len(inputs) != len(layer.inputs):
            raise InputError(
                f"layer {name!r} reads {len(layer.inputs)} input(s), got {len(inputs)}"
            )
        shapes = g.shapes()
        xs = []
        for i, (arr, src) in enumerate(zip(inputs, layer.inputs, strict=True)):
            what = f"input {i} of layer {name!r}"
            t = _int_tensor(arr, what)
            _check_batch(t, shapes[src], what)
            _check_range(t, q.format_of(src), what)
            xs.append(t.to(_tdtype(q.format_of(src))))
        with torch.inference_mode(), self._workspace() as ws:
            y, n = self._layer(layer, xs, owned=False, ws=ws)
        return _public(y), n

    # -- whole model ------------------------------------------------------------------------
    def run(self, x: np.ndarray, *, keep: bool | str | Iterable[str] = False,
            float_input: bool = False,
            on_layer: Callable[[str, np.ndarray], None] | None = None) -> ExecutionResult:
        """Execute a batch `x` (N, *input_shape): integers in the input format, or floats with
        `float_input=True` (quantized here; saturations reported under INPUT).

        `keep`: False (outputs only), "all", or a set of layer names (INPUT allowed) whose
        outputs to return in `.layers`. `on_layer(name, array)` receives every layer's output
        as it is computed (e.g. to write it out) without keeping it. Intermediate results are
        freed after their last use.
        """
        q, g = self.qmodel, self.qmodel.graph
        missing = [lay.name for lay in g.layers
                   if isinstance(lay, Conv2d | Linear) and lay.name not in self.prepared]
        if missing:
            raise InputError(f"executor was prepared without layers {missing}")
        keep_set = _keep_set(keep, g)
        sats: dict[str, int] = {}
        if float_input:
            xi, sats[INPUT] = quantize_input(q, x)
            xt = torch.from_numpy(xi)
        else:
            xt = _int_tensor(x, "input")
            _check_batch(xt, g.input_shape, "input")
            _check_range(xt, q.input_format, "input")
        xt = xt.to(_tdtype(q.input_format))
        last_use: dict[str, int] = {}
        for i, layer in enumerate(g.layers):
            for src in layer.inputs:
                last_use[src] = i
        protected = set(g.outputs) | keep_set | {INPUT}
        float_outs = {lay.name for lay in g.layers if stays_float(lay, g.outputs)}
        env: dict[str, torch.Tensor] = {INPUT: xt}
        # Names whose tensor this run allocated and nobody else sees: a ReLU may overwrite them
        # after their last use. Dropout/Flatten may return views, so they never count as fresh.
        fresh: set[str] = set()
        relu_done: set[str] = set()  # conv/FC outputs already ReLU'd (fused)
        kept: dict[str, np.ndarray] = {}
        outputs: dict[str, np.ndarray] = {}
        if INPUT in keep_set:
            kept[INPUT] = _public(xt)
        with torch.inference_mode(), self._workspace() as ws:
            for i, layer in enumerate(g.layers):
                xs = [env[src] for src in layer.inputs]
                src0 = layer.inputs[0]
                owned = (on_layer is None and len(layer.inputs) == 1 and src0 in fresh
                         and last_use.get(src0) == i and src0 not in protected)
                if layer.name in float_outs:
                    y = _host_float(layer, xs, [q.format_of(src).fl for src in layer.inputs])
                    n = 0
                elif isinstance(layer, ReLU) and owned and src0 in relu_done:
                    y, n = xs[0], 0
                else:
                    fuse = (layer.name in self.relu_fused and on_layer is None
                            and layer.name not in protected)
                    y, n = self._layer(layer, xs, owned, fuse_relu=fuse, ws=ws)
                    if fuse:
                        relu_done.add(layer.name)
                del xs
                sats[layer.name] = n
                env[layer.name] = y
                if not isinstance(layer, Dropout | Flatten):
                    fresh.add(layer.name)
                if on_layer is not None:
                    on_layer(layer.name, _public(y))
                if layer.name in keep_set:
                    kept[layer.name] = _public(y)
                if layer.name in g.outputs:
                    outputs[layer.name] = kept.get(layer.name) if layer.name in kept else (
                        _public(y))
                for src in set(layer.inputs):
                    if last_use.get(src) == i and src not in protected:
                        env.pop(src, None)
        return ExecutionResult(
            outputs=MappingProxyType({name: outputs[name] for name in g.outputs}),
            layers=MappingProxyType(kept),
            saturations=MappingProxyType(sats),
            formats=q.formats,
            input_format=q.input_format,
            float_outputs=frozenset(float_outs),
        )


def execute(qmodel: QuantizedModel, x_int: np.ndarray, *,
            keep: bool | str | Iterable[str] = False, float_input: bool = False,
            method: Method = "auto",
            on_layer: Callable[[str, np.ndarray], None] | None = None) -> ExecutionResult:
    """Execute `qmodel` bit-exactly on a batch (see `ReferenceExecutor.run`). Prepares the
    weights on every call; build a `ReferenceExecutor` once to run many batches."""
    ex = ReferenceExecutor.build(qmodel, method=method)
    return ex.run(x_int, keep=keep, float_input=float_input, on_layer=on_layer)


def execute_layer(qmodel: QuantizedModel, layer_name: str, inputs: list[np.ndarray], *,
                  method: Method = "auto") -> tuple[np.ndarray, int]:
    """One layer of `qmodel` on upstream integer outputs: (int64 output, saturations)."""
    ex = ReferenceExecutor.build(qmodel, method=method, layers=[layer_name])
    return ex.run_layer(layer_name, inputs)


__all__ = ["ExecutionResult", "ReferenceExecutor", "execute", "execute_layer"]
