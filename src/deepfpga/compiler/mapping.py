"""Mapping: a quantized network → accelerator stages and host steps (the compiler's front end).

A stage is one CONV or FC layer with what can be fused behind it on the PE: a ReLU and, for CONV,
a 2×2/2 max-pool (paper §6.2). Flatten, Dropout and ReLUs that repeat an existing ReLU are
identities and fold away. Everything else (softmax, LRN, avg-pool, add, other max-pools, a ReLU or
max-pool that cannot be fused) runs on the host, in the schedule's order, between accelerator
segments. Values passed between steps are *tensors*, named by the graph node that produced them;
folded layers are aliases of their input's tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from deepfpga.errors import InputError
from deepfpga.hw import arch
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.isa import CALC_TAPS, CalcKind
from deepfpga.ir import INPUT, Conv2d, Graph, Linear, MaxPool2d
from deepfpga.ir.layers import BatchNorm2d, Dropout, Flatten, Layer, ReLU
from deepfpga.quant.fixedpoint import FixedFormat, align_bias
from deepfpga.quant.qmodel import LayerFormats


@dataclass(frozen=True)
class ModelInput:
    """What the compiler needs of a network: structure, formats and (optionally) weights."""

    graph: Graph
    input_format: FixedFormat
    formats: Mapping[str, LayerFormats]
    weights: Mapping[str, Mapping[str, np.ndarray]] | None   # None: architecture only


@dataclass(frozen=True)
class Stage:
    index: int
    name: str                        # the CONV/FC layer
    kind: str                        # "conv" | "fc"
    layers: tuple[str, ...]          # graph layers fused into the stage, in order
    input: str                       # tensor read
    output: str                      # tensor written (name of the last fused layer)
    in_shape: tuple[int, ...]        # (C, H, W) for CONV, (F,) for FC
    out_shape: tuple[int, ...]       # after pooling: (N, H', W') or (N,)
    conv_out: tuple[int, int]        # accumulator map (Ho, Wo) before pooling; FC: (1, 1)
    kernel: tuple[int, int]
    stride: int
    padding: tuple[int, int]
    relu: bool
    pool: bool
    has_bias: bool
    in_fmt: FixedFormat
    w_fmt: FixedFormat
    b_fmt: FixedFormat | None
    out_fmt: FixedFormat
    macs: int

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def sub_kernels(self) -> tuple[int, int]:
        """3×3 sub-kernels per axis (kernels ≤ 3 are zero-padded into one)."""
        return math.ceil(self.kernel[0] / arch.KERNEL), math.ceil(self.kernel[1] / arch.KERNEL)

    @property
    def nsub(self) -> int:
        a, b = self.sub_kernels
        return a * b

    @property
    def calc_kind(self) -> CalcKind:
        """The CALC kind the stage runs as: a 1×1 convolution is a CONV1 (one term per input
        channel, weights dense (to, ti)), other kernels CONVs of 3×3 sub-kernels."""
        if self.kind == "fc":
            return CalcKind.FC
        return CalcKind.CONV1 if self.kernel == (1, 1) else CalcKind.CONV

    @property
    def taps(self) -> int:
        """Weights per (output, input) channel pair of one CALC (one sub-kernel)."""
        return CALC_TAPS[self.calc_kind]

    @property
    def fl_acc(self) -> int:
        return self.in_fmt.fl + self.w_fmt.fl

    @property
    def bias_shift(self) -> int:
        return self.fl_acc - self.b_fmt.fl if self.b_fmt is not None else 0

    @property
    def data_shift(self) -> int:
        return self.fl_acc - self.out_fmt.fl


@dataclass(frozen=True)
class HostStep:
    index: int                           # position in the schedule
    layer: str
    kind: str
    inputs: tuple[str, ...]              # tensors read
    input_shapes: tuple[tuple[int, ...], ...]   # as the layer sees them (after flatten aliases)
    output: str
    spec: Layer                                  # the graph layer itself
    in_fmts: tuple[FixedFormat, ...]
    out_fmt: FixedFormat
    graph_output: bool                           # the layer's value is a graph output
    float_output: bool                           # ... kept in float (arch.stays_float)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    fmt: FixedFormat
    producer: int                        # schedule position; -1 for the network input
    readers: tuple[int, ...]             # schedule positions that read it
    on_ddr: bool                         # the accelerator reads or writes it
    is_output: bool = False

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class NetworkMapping:
    """The network cut into accelerator stages and host steps, in schedule order."""

    stages: tuple[Stage, ...]
    schedule: tuple[Stage | HostStep, ...]
    tensors: Mapping[str, Tensor]
    alias: Mapping[str, str]            # graph node → tensor holding its value
    outputs: tuple[str, ...]             # graph outputs (node names)
    host_layers: tuple[str, ...]
    folded: tuple[str, ...]
    positions: Mapping[str, int] = field(default_factory=dict)  # stage name → schedule pos

    def tensor_of(self, node: str) -> Tensor:
        return self.tensors[self.alias[node]]


class _Fusable:
    """A stage under construction (mutable while the graph is walked)."""

    def __init__(self, layer: Conv2d | Linear, input_tensor: str, in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...]):
        self.layer = layer
        self.layers = [layer.name]
        self.input = input_tensor
        self.in_shape = in_shape
        self.conv_out_shape = out_shape
        self.out_shape = out_shape
        self.relu = False
        self.pool = False
        self.output = layer.name


def _sole_reader(graph: Graph, tensor: str, alias: dict[str, str],
                 consumers: dict[str, list[str]]) -> bool:
    """Whether the layer being mapped is the only reader of `tensor` (under any alias), so the
    tensor need not exist on its own and a following operation can be fused."""
    nodes = [n for n, t in alias.items() if t == tensor]
    # folded identities (aliases of the same tensor) are not uses of their own
    uses = sum(1 for n in nodes for c in consumers.get(n, []) if alias.get(c) != tensor)
    return uses == 1 and not any(n in graph.outputs for n in nodes)


def map_network(model: ModelInput, cfg: AcceleratorConfig) -> NetworkMapping:
    """Partition and fuse `model` for `cfg`; checks widths, shifts and accumulator bounds."""
    g = model.graph
    shapes = g.shapes()
    consumers: dict[str, list[str]] = {}
    for layer in g.layers:
        for src in layer.inputs:
            consumers.setdefault(src, []).append(layer.name)

    alias: dict[str, str] = {INPUT: INPUT}
    owner: dict[str, _Fusable] = {}     # tensor name → stage building it
    order: list[_Fusable | str] = []    # stages and host layer names in schedule order
    folded: list[str] = []
    for layer in g.layers:
        src = layer.inputs[0] if layer.inputs else INPUT
        if isinstance(layer, Conv2d | Linear):
            st = _Fusable(layer, alias[src], shapes[src], shapes[layer.name])
            owner[layer.name] = st
            alias[layer.name] = layer.name
            order.append(st)
            continue
        if isinstance(layer, BatchNorm2d):
            raise InputError(f"layer {layer.name!r} is a BatchNorm2d: fold it into the preceding"
                             " convolution first (deepfpga.ir.passes.fold_batchnorm)")
        if isinstance(layer, Dropout | Flatten):
            alias[layer.name] = alias[src]
            folded.append(layer.name)
            continue
        tensor = alias[src]
        st = owner.get(tensor)
        if isinstance(layer, ReLU):
            if st is not None and st.relu:
                alias[layer.name] = tensor          # ReLU of a ReLU: identity
                folded.append(layer.name)
                continue
            if st is not None and _sole_reader(g, tensor, alias, consumers):
                st.relu = True                       # commutes with the max-pool too
                _extend(st, layer.name, owner, alias)
                continue
        if isinstance(layer, MaxPool2d) and st is not None and isinstance(st.layer, Conv2d) \
                and not st.pool and _sole_reader(g, tensor, alias, consumers) \
                and _is_pool_2x2(layer, shapes[src]):
            st.pool = True
            st.out_shape = shapes[layer.name]
            _extend(st, layer.name, owner, alias)
            continue
        alias[layer.name] = layer.name
        order.append(layer.name)

    # Schedule positions, stages and host steps.
    stages: list[Stage] = []
    schedule: list[Stage | HostStep] = []
    positions: dict[str, int] = {}
    produced_at: dict[str, int] = {INPUT: -1}
    readers: dict[str, list[int]] = {}
    host_names: list[str] = []
    for pos, item in enumerate(order):
        if isinstance(item, _Fusable):
            stage = _make_stage(len(stages), item, model, cfg)
            stages.append(stage)
            schedule.append(stage)
            positions[stage.name] = pos
            produced_at[stage.output] = pos
            readers.setdefault(stage.input, []).append(pos)
        else:
            layer = g.layer(item)
            ins = tuple(alias[s] for s in layer.inputs)
            in_fmts = tuple(model.input_format if s == INPUT else model.formats[s].output
                            for s in layer.inputs)
            step = HostStep(pos, layer.name, layer.kind, ins,
                            tuple(shapes[s] for s in layer.inputs), layer.name,
                            layer, in_fmts, model.formats[layer.name].output,
                            layer.name in g.outputs, arch.stays_float(layer, g.outputs))
            schedule.append(step)
            host_names.append(layer.name)
            produced_at[layer.name] = pos
            for t in ins:
                readers.setdefault(t, []).append(pos)

    out_tensors = {alias[o] for o in g.outputs}
    stage_io = {s.input for s in stages} | {s.output for s in stages}
    tensors: dict[str, Tensor] = {}
    for name, pos in produced_at.items():
        node_fmt = model.input_format if name == INPUT else model.formats[name].output
        shape = shapes[name]
        on_ddr = name in stage_io
        tensors[name] = Tensor(name, shape, node_fmt, pos, tuple(readers.get(name, ())),
                               on_ddr, name in out_tensors)
        if on_ddr and node_fmt.bw > cfg.data_bits:
            raise InputError(f"tensor {name!r} is {node_fmt.bw}-bit, wider than the"
                             f" accelerator's {cfg.data_bits}-bit data")
    return NetworkMapping(tuple(stages), tuple(schedule), tensors, alias, g.outputs,
                          tuple(host_names), tuple(folded), positions)


def _extend(st: _Fusable, name: str, owner: dict[str, _Fusable], alias: dict[str, str]) -> None:
    """Fuse layer `name` into the stage: the stage's tensor is now `name`'s value; the nodes
    fused before it no longer exist as tensors (their only reader was fused)."""
    old = st.output
    del owner[old]
    for node in [n for n, t in alias.items() if t == old]:
        del alias[node]
    st.layers.append(name)
    st.output = name
    owner[name] = st
    alias[name] = name


def _is_pool_2x2(layer: MaxPool2d, in_shape: tuple[int, ...]) -> bool:
    if layer.kernel != (2, 2) or layer.stride != (2, 2) or layer.padding != (0, 0):
        return False
    # ceil mode on an odd size keeps a partial window the fused pool (which floors) drops
    return not (layer.ceil_mode and (in_shape[1] % 2 or in_shape[2] % 2))


def _make_stage(index: int, st: _Fusable, model: ModelInput, cfg: AcceleratorConfig) -> Stage:
    layer = st.layer
    f = model.formats.get(layer.name)
    if f is None or f.weight is None:
        raise InputError(f"layer {layer.name!r} has no weight format")
    out_fmt = model.formats[st.output].output
    has_bias = bool(layer.bias)
    b_fmt = f.bias if has_bias else None
    if has_bias and b_fmt is None:
        raise InputError(f"layer {layer.name!r} has a bias but no bias format")
    name = layer.name
    for what, fmt, limit in (("input", f.input, cfg.data_bits), ("output", out_fmt, cfg.data_bits),
                             ("weight", f.weight, cfg.weight_bits),
                             ("bias", b_fmt, cfg.bias_bits)):
        if fmt is not None and fmt.bw > limit:
            raise InputError(f"layer {name!r}: {what} is {fmt.bw}-bit, wider than the"
                             f" accelerator's {limit} bits ({cfg.name})")
    if isinstance(layer, Conv2d):
        kind = "conv"
        arch.check_conv(name, layer.kernel, layer.stride, layer.padding, cfg)
        stride = layer.stride[0]
        kernel, padding = layer.kernel, layer.padding
        conv_out = (st.conv_out_shape[1], st.conv_out_shape[2])
        macs = kernel[0] * kernel[1] * layer.in_channels * layer.out_channels * math.prod(conv_out)
    else:
        kind, stride, kernel, padding, conv_out = "fc", 1, (1, 1), (0, 0), (1, 1)
        macs = layer.in_features * layer.out_features
    fl_acc = f.input.fl + f.weight.fl
    arch.check_shifts(name, None if b_fmt is None else fl_acc - b_fmt.fl, fl_acc - out_fmt.fl)
    if model.weights is not None:
        _check_acc(name, model.weights[name], f, b_fmt, cfg)
    in_shape = st.in_shape if kind == "conv" else (math.prod(st.in_shape),)
    return Stage(index, name, kind, tuple(st.layers), st.input, st.output, in_shape,
                 st.out_shape, conv_out, kernel, stride, padding, st.relu, st.pool, has_bias,
                 f.input, f.weight, b_fmt, out_fmt, macs)


def _check_acc(name: str, arrays: Mapping[str, np.ndarray], f: LayerFormats,
               b_fmt: FixedFormat | None, cfg: AcceleratorConfig) -> None:
    """Contract step 1: no partial or final sum may exceed the hardware accumulator."""
    from deepfpga.quant.reference import accumulator_bound, check_accumulator

    bias = None
    if b_fmt is not None and "bias" in arrays:
        bias = align_bias(arrays["bias"], b_fmt.fl, f.fl_acc)
    bound = accumulator_bound(arrays["weight"], bias, f.input.bw)
    check_accumulator(name, bound, cfg.acc_bits)
