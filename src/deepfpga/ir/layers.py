"""Layer types of the graph IR.

Shapes are per sample, without the batch dimension: (C, H, W) for feature maps, (F,) for vectors.
Every layer names the producers of its inputs in `inputs` (a layer name, or `Graph.INPUT`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

from deepfpga.errors import ShapeError

Shape = tuple[int, ...]


def _pair(v: int | tuple[int, int], what: str = "value") -> tuple[int, int]:
    """An int or a pair of ints (never a string, a float or a list of another length)."""
    if _is_int(v):
        return (int(v), int(v))
    if isinstance(v, tuple | list) and len(v) == 2 and all(_is_int(i) for i in v):
        return (int(v[0]), int(v[1]))
    raise ShapeError(f"{what} must be an integer or a pair of integers, got {v!r}")


def _unknown(layer: Layer, in_shapes: list[Shape]) -> None:
    """Shapes are unknown downstream of a node an importer refused: say so, never crash."""
    if any(s is None for s in in_shapes):
        raise ShapeError(f"layer {layer.name!r} ({layer.kind}): input shape unknown")


def _one_map(layer: Layer, in_shapes: list[Shape]) -> tuple[int, int, int]:
    _unknown(layer, in_shapes)
    if len(in_shapes) != 1 or len(in_shapes[0]) != 3:
        raise ShapeError(
            f"layer {layer.name!r} ({layer.kind}) needs one (C, H, W) input, got {in_shapes}"
        )
    c, h, w = in_shapes[0]
    return c, h, w


def _window_out(size: int, k: int, s: int, p: int, ceil: bool = False) -> int:
    span = size + 2 * p - k
    n = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (n - 1) * s >= size + p:  # the last window must start inside the input
        n -= 1
    return n


def _is_int(v: object) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)  # np.bool_ is not Integral


def _check_ints(layer: Layer, *fields: str) -> None:
    for f in fields:
        v = getattr(layer, f)
        if not _is_int(v):
            raise ShapeError(f"layer {layer.name!r}: {f} must be an integer, got {v!r}")
        object.__setattr__(layer, f, int(v))


@dataclass(frozen=True)
class Layer:
    name: str
    inputs: tuple[str, ...]

    kind: ClassVar[str] = "layer"
    # Not run by the accelerator: the host computes it (in float unless `host_integer`).
    host_only: ClassVar[bool] = False
    # A host-only layer with an integer rule of the contract (docs/arithmetic.md), which the
    # host applies to the integers: no float on the way.
    host_integer: ClassVar[bool] = False
    # Parameter arrays this layer carries (names in Graph.params[layer.name]).
    param_keys: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ShapeError(f"invalid layer name {self.name!r} (empty or containing '/')")
        object.__setattr__(self, "inputs", tuple(self.inputs))

    @property
    def host_float(self) -> bool:
        """Computed on the host in float on the dequantized inputs and re-quantized."""
        return self.host_only and not self.host_integer

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        raise NotImplementedError

    def param_shapes(self) -> dict[str, Shape]:
        """Expected shape of every parameter array (empty for parameter-free layers)."""
        return {}

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Multiply-accumulates per sample (paper §4 'time' complexity)."""
        return 0

    def learned_params(self) -> int:
        """Learned parameters (paper §4 'space' complexity): every parameter array, except
        statistics that are measured rather than learned."""
        return sum(math.prod(s) for k, s in self.param_shapes().items()
                   if k not in self.measured_keys)

    # Parameter arrays that are statistics of the data, not learned (batch norm's running
    # mean and variance, torch buffers rather than parameters).
    measured_keys: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class Conv2d(Layer):
    in_channels: int = 0
    out_channels: int = 0
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: bool = True

    kind: ClassVar[str] = "conv"
    param_keys: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in ("kernel", "stride", "padding"):
            object.__setattr__(self, f, _pair(getattr(self, f), f"layer {self.name!r} {f}"))
        _check_ints(self, "in_channels", "out_channels")
        if self.in_channels <= 0 or self.out_channels <= 0:
            raise ShapeError(f"layer {self.name!r}: channels must be positive")
        if min(self.kernel) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ShapeError(f"layer {self.name!r}: bad kernel/stride/padding")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        c, h, w = _one_map(self, in_shapes)
        if c != self.in_channels:
            raise ShapeError(
                f"layer {self.name!r} expects {self.in_channels} input channels, gets {c}"
            )
        ho = _window_out(h, self.kernel[0], self.stride[0], self.padding[0])
        wo = _window_out(w, self.kernel[1], self.stride[1], self.padding[1])
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"layer {self.name!r}: kernel larger than padded input {h}x{w}")
        return (self.out_channels, ho, wo)

    def param_shapes(self) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {
            "weight": (self.out_channels, self.in_channels, *self.kernel)
        }
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        _, ho, wo = out_shape
        return self.kernel[0] * self.kernel[1] * self.in_channels * self.out_channels * ho * wo


@dataclass(frozen=True)
class Linear(Layer):
    in_features: int = 0
    out_features: int = 0
    bias: bool = True

    kind: ClassVar[str] = "fc"
    param_keys: ClassVar[tuple[str, ...]] = ("weight", "bias")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_ints(self, "in_features", "out_features")
        if self.in_features <= 0 or self.out_features <= 0:
            raise ShapeError(f"layer {self.name!r}: features must be positive")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        _unknown(self, in_shapes)
        if len(in_shapes) != 1 or len(in_shapes[0]) != 1:
            raise ShapeError(
                f"layer {self.name!r} (fc) needs one flat (F,) input, got {in_shapes}"
                " (insert a Flatten)"
            )
        if in_shapes[0][0] != self.in_features:
            raise ShapeError(
                f"layer {self.name!r} expects {self.in_features} features, gets {in_shapes[0][0]}"
            )
        return (self.out_features,)

    def param_shapes(self) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class _Elementwise(Layer):
    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        _unknown(self, in_shapes)
        if len(in_shapes) != 1:
            raise ShapeError(f"layer {self.name!r} ({self.kind}) takes one input")
        return in_shapes[0]


@dataclass(frozen=True)
class ReLU(_Elementwise):
    kind: ClassVar[str] = "relu"


@dataclass(frozen=True)
class Dropout(_Elementwise):
    """Identity at inference; kept so imported graphs mirror their source."""

    p: float = 0.5
    kind: ClassVar[str] = "dropout"


@dataclass(frozen=True)
class BatchNorm2d(_Elementwise):
    """Inference-mode batch norm; the fold-BN pass merges it into the preceding conv."""

    num_features: int = 0
    eps: float = 1e-5
    kind: ClassVar[str] = "batchnorm"
    param_keys: ClassVar[tuple[str, ...]] = ("weight", "bias", "running_mean", "running_var")
    measured_keys: ClassVar[tuple[str, ...]] = ("running_mean", "running_var")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_ints(self, "num_features")
        if self.num_features <= 0:
            raise ShapeError(f"layer {self.name!r}: num_features must be positive")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = super().output_shape(in_shapes)
        if not shape or shape[0] != self.num_features:
            raise ShapeError(f"layer {self.name!r} normalises {self.num_features} channels,"
                             f" gets input {shape}")
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        return {k: (self.num_features,) for k in self.param_keys}


@dataclass(frozen=True)
class _Pool(Layer):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for f in ("kernel", "stride", "padding"):
            object.__setattr__(self, f, _pair(getattr(self, f), f"layer {self.name!r} {f}"))
        if min(self.kernel) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ShapeError(f"layer {self.name!r}: bad kernel/stride/padding")
        if self.padding[0] * 2 > self.kernel[0] or self.padding[1] * 2 > self.kernel[1]:
            raise ShapeError(f"layer {self.name!r}: padding larger than half the window")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        c, h, w = _one_map(self, in_shapes)
        ho = _window_out(h, self.kernel[0], self.stride[0], self.padding[0], self.ceil_mode)
        wo = _window_out(w, self.kernel[1], self.stride[1], self.padding[1], self.ceil_mode)
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"layer {self.name!r}: window larger than input {h}x{w}")
        return (c, ho, wo)

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        # Paper §4 counts pooling as R·C·Nin comparisons; they are not multiplications.
        return 0

    def compares(self, out_shape: Shape) -> int:
        c, ho, wo = out_shape
        return c * ho * wo * self.kernel[0] * self.kernel[1]


@dataclass(frozen=True)
class MaxPool2d(_Pool):
    kind: ClassVar[str] = "maxpool"


@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """Average pooling. Not in the arithmetic contract yet, so it runs on the host."""

    kind: ClassVar[str] = "avgpool"
    host_only: ClassVar[bool] = True


@dataclass(frozen=True)
class Flatten(Layer):
    kind: ClassVar[str] = "flatten"

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        _unknown(self, in_shapes)
        if len(in_shapes) != 1:
            raise ShapeError(f"layer {self.name!r} (flatten) takes one input")
        return (math.prod(in_shapes[0]),)


@dataclass(frozen=True)
class Softmax(_Elementwise):
    kind: ClassVar[str] = "softmax"
    host_only: ClassVar[bool] = True


@dataclass(frozen=True)
class LRN(_Elementwise):
    """Local response normalisation across channels (AlexNet/ZF), as torch.nn.LocalResponseNorm."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    kind: ClassVar[str] = "lrn"
    host_only: ClassVar[bool] = True


@dataclass(frozen=True)
class Add(Layer):
    """Element-wise sum (residual connections): the contract's integer add (operands aligned
    to the finer fractional length, exact sum, round half up, saturate). On the host until the
    accelerator fuses it into a convolution's finalize."""

    kind: ClassVar[str] = "add"
    host_only: ClassVar[bool] = True
    host_integer: ClassVar[bool] = True

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        _unknown(self, in_shapes)
        if len(in_shapes) < 2 or any(s != in_shapes[0] for s in in_shapes):
            raise ShapeError(f"layer {self.name!r} (add) needs 2+ inputs of one shape: {in_shapes}")
        return in_shapes[0]


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (
        Conv2d, Linear, ReLU, Dropout, BatchNorm2d, MaxPool2d, AvgPool2d,
        Flatten, Softmax, LRN, Add,
    )
}
