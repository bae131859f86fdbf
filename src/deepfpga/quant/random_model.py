"""Random quantized models for tests and demos: any graph, random integer weights, chosen formats.

Used by the tests of the reference executor, the functional simulator and the RTL, which need
QuantizedModels without a trained network or the real quantizer. Formats are chosen so that the
feature maps use their range (neither all zero nor all saturated): from the accumulator's
expected size, or, with `x_calib`, from the actual maxima of a calibration batch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from deepfpga.errors import InputError
from deepfpga.ir import INPUT, BatchNorm2d, Conv2d, Graph, Layer, Linear, Softmax
from deepfpga.quant.fixedpoint import FixedFormat, align_bias, to_fixed
from deepfpga.quant.qmodel import PASSTHROUGH_KINDS, LayerFormats, QuantizedModel

WeightDist = Literal["normal", "uniform", "extreme"]


def _random_ints(rng: np.random.Generator, shape: tuple[int, ...], fmt: FixedFormat,
                 dist: WeightDist) -> np.ndarray:
    if dist == "uniform":
        return rng.integers(fmt.qmin, fmt.qmax, size=shape, endpoint=True, dtype=np.int64)
    if dist == "extreme":  # only the two ends of the range: worst cases for products and sums
        return rng.choice(np.array([fmt.qmin, fmt.qmax], dtype=np.int64), size=shape)
    if dist != "normal":
        raise InputError(f"unknown weight distribution {dist!r} (normal, uniform, extreme)")
    # float32 draws are fast for VGG-sized layers; float64 where float32 cannot hold qmax
    dt = np.float32 if fmt.bw <= 24 else np.float64
    v = rng.standard_normal(size=shape, dtype=dt)
    v *= dt(2.0 ** (fmt.bw - 3))
    np.rint(v, out=v)
    np.clip(v, fmt.qmin, fmt.qmax, out=v)
    return v.astype(np.int64)


def _fl_for_max(max_abs: float, fl_from: int, bw: int) -> int:
    """Output fl (relative to integers at fl_from) that maps max_abs just inside bw bits."""
    if max_abs <= 0:
        return fl_from
    return fl_from - (math.ceil(math.log2(max_abs + 1)) - (bw - 1))


def _fl_for_float_max(max_abs: float, bw: int) -> int:
    """Largest fl with max_abs·2^fl <= 2^(bw-1) - 1 (0 for an all-zero map)."""
    if max_abs <= 0:
        return 0
    return math.floor(math.log2(((1 << (bw - 1)) - 1) / max_abs))


def random_qmodel(graph: Graph, rng: np.random.Generator, bw_d: int = 8, bw_w: int = 8,
                  bw_b: int | None = None, *, fl_in: int | None = None,
                  weight_dist: WeightDist = "normal", x_calib: np.ndarray | None = None,
                  jitter: int = 0, meta: dict[str, Any] | None = None) -> QuantizedModel:
    """A QuantizedModel of `graph` (weights in the graph are ignored) with random integers.

    Data maps use `bw_d` bits, weights `bw_w`, biases `bw_b` (default `bw_d`). Weight fl is
    random in [bw_w - 3, bw_w + 3]; bias fl is at most fl_acc. Each weighted layer's output fl
    is chosen from the expected accumulator size (or from the maxima over the integer batch
    `x_calib`, (N, *input_shape) in the input format), then moved by a random amount in
    [-jitter, jitter] (jitter > 0 provokes saturation or lost precision on purpose).
    """
    bw_b = bw_d if bw_b is None else bw_b
    fin = FixedFormat(bw_d, int(rng.integers(0, bw_d)) if fl_in is None else fl_in)
    shapes = graph.shapes()
    formats: dict[str, LayerFormats] = {}
    weights: dict[str, dict[str, np.ndarray]] = {}
    calib: dict[str, torch.Tensor] | None = None
    if x_calib is not None:
        from deepfpga.quant.intarrays import _int_tensor

        calib = {INPUT: _int_tensor(x_calib, "x_calib")}

    def fmt_of(name: str) -> FixedFormat:
        return fin if name == INPUT else formats[name].output

    def jit() -> int:
        return int(rng.integers(-jitter, jitter + 1)) if jitter else 0

    for layer in graph.layers:
        fi = fmt_of(layer.inputs[0])
        if isinstance(layer, BatchNorm2d):
            raise InputError(f"layer {layer.name!r}: fold batch norm before quantizing")
        if isinstance(layer, Conv2d | Linear):
            fw = FixedFormat(bw_w, int(rng.integers(bw_w - 3, bw_w + 4)))
            fl_acc = fi.fl + fw.fl
            fb = FixedFormat(bw_b, fl_acc - int(rng.integers(0, 4))) if layer.bias else None
            pshapes = layer.param_shapes()
            arrays = {"weight": _random_ints(rng, pshapes["weight"], fw, weight_dist)}
            if fb is not None:
                b = _random_ints(rng, pshapes["bias"], fb, "normal")
                arrays["bias"] = b
            weights[layer.name] = arrays
            k = math.prod(pshapes["weight"][1:])
            if calib is not None:
                acc = _calib_acc(layer, calib[layer.inputs[0]], arrays, fb, fl_acc)
                fl_out = _fl_for_max(float(acc.abs().max()) if acc.numel() else 0.0, fl_acc,
                                     bw_d)
                calib[layer.name] = acc  # replaced by the integer output below
            else:
                w_rms = float(np.sqrt(np.mean(arrays["weight"].astype(np.float64) ** 2)))
                typical = math.sqrt(k) * w_rms * 2.0 ** (bw_d - 3)
                fl_out = _fl_for_max(typical, fl_acc, bw_d - 2)
            fo = FixedFormat(bw_d, fl_out + jit())
            formats[layer.name] = LayerFormats(fi, fo, fw, fb)
            if calib is not None:
                from deepfpga.quant.contract import _requantize_channels

                calib[layer.name], _ = _requantize_channels(calib[layer.name], None, fl_acc, fo,
                                                            relu=False)
        elif layer.kind in PASSTHROUGH_KINDS:
            formats[layer.name] = LayerFormats(fi, fi)
            if calib is not None:
                calib[layer.name] = _calib_passthrough(layer, calib, fi)
        elif layer.host_only:
            if isinstance(layer, Softmax):
                fo = FixedFormat(bw_d, bw_d - 1)
            elif calib is not None:
                yf = _calib_host(layer, calib, [fmt_of(s).fl for s in layer.inputs])
                fo = FixedFormat(bw_d, _fl_for_float_max(float(np.abs(yf).max(initial=0.0)),
                                                         bw_d))
            else:
                fo = FixedFormat(bw_d, min(fmt_of(s).fl for s in layer.inputs)
                                 - (len(layer.inputs) > 1))
            formats[layer.name] = LayerFormats(fi, fo)
            if calib is not None:
                yf = _calib_host(layer, calib, [fmt_of(s).fl for s in layer.inputs])
                calib[layer.name] = torch.from_numpy(to_fixed(yf, fo))
        else:
            raise InputError(f"layer {layer.name!r}: kind {layer.kind!r} cannot be quantized")
    del shapes
    info = {"generator": "random_qmodel", "bw_d": bw_d, "bw_w": bw_w, "bw_b": bw_b,
            "weight_dist": weight_dist}
    info.update(meta or {})
    return QuantizedModel(graph.without_weights(), fin, formats, weights, info)


def _calib_acc(layer: Conv2d | Linear, x: torch.Tensor, arrays: dict[str, np.ndarray],
               fb: FixedFormat | None, fl_acc: int) -> torch.Tensor:
    from deepfpga.quant.gemm import prepare_matrix
    from deepfpga.quant.patches import _conv_acc_t, _fc_acc_t, conv_matrix

    w = torch.from_numpy(arrays["weight"])
    lo, hi = int(x.min()), int(x.max())
    absmax = max(-lo, hi, 1)
    bits = max(2, absmax.bit_length() + 1)
    if isinstance(layer, Conv2d):
        pw = prepare_matrix(conv_matrix(w), x_bits=bits, x_absmax=absmax)
        acc = _conv_acc_t(x, pw, layer.kernel, layer.stride, layer.padding)
    else:
        pw = prepare_matrix(w, x_bits=bits, x_absmax=absmax)
        acc = _fc_acc_t(x, pw)
    if fb is not None:
        b = torch.from_numpy(align_bias(arrays["bias"], fb.fl, fl_acc))
        acc = acc + b.reshape([1, -1] + [1] * (acc.ndim - 2))  # exact: below 2^62
    return acc


def _calib_passthrough(layer: Layer, calib: dict[str, torch.Tensor], fi: FixedFormat
                       ) -> torch.Tensor:
    from deepfpga.ir import Flatten, MaxPool2d, ReLU
    from deepfpga.quant.contract import _maxpool_t

    x = calib[layer.inputs[0]]
    if isinstance(layer, ReLU):
        return x.clamp_min(0)
    if isinstance(layer, MaxPool2d):
        return _maxpool_t(x, layer.kernel, layer.stride, layer.padding, layer.ceil_mode, fi.qmin)
    if isinstance(layer, Flatten):
        return x.reshape(x.shape[0], -1)
    return x


def _calib_host(layer: Layer, calib: dict[str, torch.Tensor], fls: list[int]) -> np.ndarray:
    from deepfpga.quant.executor import _host_float

    return _host_float(layer, [calib[s] for s in layer.inputs], fls).numpy()
