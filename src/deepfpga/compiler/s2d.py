"""Space-to-depth of a layer on a host-written map: a strided or large-kernel CONV whose input the
host writes (the network input, or a host layer's result such as ResNet's residual add) as a
stride-1 CONV with a small kernel on more channels, which the host lays out in DDR.

The grid is built for 3×3 windows at stride 1 over many channels: a stride-s layer fills one
pixel lane in s of each grid block (engines.block_width), a kernel above 3×3 is cut into 3×3
sub-kernels, and a first layer has few channels. A map the host writes into DDR can be written in
whatever layout the program asks for, so the compiler may ask for this one:

    x'[(c, dy, dx), Y, X] = x_padded[c, s·Y + dy, s·X + dx]      dy < Dy, dx < Dx

(zero outside the padded image). A kernel tap (ky, kx) of the original layer becomes the tap
(KY, KX) of channel (c, dy, dx) with ky = s·KY + dy, KY = min(ky // s, K'y − 1), so every
product of the original sum appears exactly once in the new one, with the same weight and pixel:

    conv(x, w; stride s, pad p) = conv(x', w'; stride 1, pad 0),  K' = ⌈(k − D) / s⌉ + 1.

D = s is the phase decomposition (no pixel duplicated, K' = ⌈k/s⌉); D = k the full im2col
(K' = 1: a CONV1 over C·k² channels); values between trade a smaller kernel (fewer 3×3
sub-kernels, fewer zero taps) for more input bytes. The sums are the same integers, so the
outputs, the saturation counts and the accumulator bound (Σ|w| is unchanged) are too; partial
sums are subsets of the same products, bounded by the same Σ|w|·2^(bw−1) + |bias| (the contract's
proof covers them). The compiler (compile.plan) times every variant with the cost model and keeps
the fastest, the host's extra DDR traffic (`host_bytes`) included.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfpga.compiler.mapping import HostStep, ModelInput, NetworkMapping, Stage, Tensor
from deepfpga.errors import InputError
from deepfpga.hw.arch import KERNEL
from deepfpga.ir import INPUT


def tensor_name(stage: str) -> str:
    """The DDR tensor the host writes for `stage` (what the stage reads)."""
    return f"{stage}.s2d"


@dataclass(frozen=True)
class InputTransform:
    """How the host writes a map into DDR for a space-to-depth layer."""

    source: tuple[int, int, int]     # (C, H, W): the map rearranged
    stride: int                      # s: the original layer's stride, the step of the samples
    padding: tuple[int, int]         # the original layer's zero padding (py, px)
    offsets: tuple[int, int]         # (Dy, Dx): samples per axis of each output position
    shape: tuple[int, int, int]      # (C·Dy·Dx, H', W'): the tensor written to DDR
    tensor: str                      # its name in the manifest
    reads: str = INPUT               # the tensor rearranged (the network input or a host layer's)

    def __post_init__(self) -> None:
        c, h, w = self.source
        if min(self.source) < 1 or self.stride < 1 or min(self.offsets) < 1 \
                or min(self.padding) < 0 or min(self.shape) < 1:
            raise InputError(f"input transform: bad geometry {self.to_dict()}")
        if self.shape[0] != c * self.offsets[0] * self.offsets[1]:
            raise InputError(f"input transform: {self.shape[0]} channels, expected"
                             f" {c}·{self.offsets[0]}·{self.offsets[1]}")

    @property
    def kind(self) -> str:
        """"phases" (D = s: every pixel once) or "samples" (D > s: pixels repeated; D < s,
        a kernel narrower than the stride: pixels skipped)."""
        return "phases" if self.offsets == (self.stride, self.stride) else "samples"

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) integers → (N, C·Dy·Dx, H', W'), channels ordered (c, dy, dx)."""
        x = np.asarray(x)
        if x.shape[1:] != self.source:
            raise InputError(f"input transform: input has shape {x.shape[1:]}, expected"
                             f" {self.source}")
        n, c = x.shape[0], self.source[0]
        (dy_n, dx_n), s = self.offsets, self.stride
        _, h2, w2 = self.shape
        py, px = self.padding
        rows, cols = s * (h2 - 1) + dy_n, s * (w2 - 1) + dx_n     # padded extent read
        pad = np.zeros((n, c, max(rows, py + x.shape[2]), max(cols, px + x.shape[3])),
                       dtype=x.dtype)
        pad[:, :, py:py + x.shape[2], px:px + x.shape[3]] = x
        out = np.empty((n, c, dy_n, dx_n, h2, w2), dtype=x.dtype)
        for dy in range(dy_n):
            for dx in range(dx_n):
                out[:, :, dy, dx] = pad[:, :, dy:dy + s * (h2 - 1) + 1:s,
                                        dx:dx + s * (w2 - 1) + 1:s]
        return out.reshape(n, *self.shape)

    def kernel(self, k: tuple[int, int]) -> tuple[int, int]:
        """K' of the transformed layer for the original kernel `k`."""
        return (_new_kernel(k[0], self.stride, self.offsets[0]),
                _new_kernel(k[1], self.stride, self.offsets[1]))

    def weights(self, w: np.ndarray) -> np.ndarray:
        """(O, C, kh, kw) → (O, C·Dy·Dx, K'y, K'x): every tap once, zeros elsewhere."""
        w = np.asarray(w)
        o, c, kh, kw = w.shape
        (ky_n, kx_n), (dy_n, dx_n) = self.kernel((kh, kw)), self.offsets
        out = np.zeros((o, c, dy_n, dx_n, ky_n, kx_n), dtype=w.dtype)
        for ky in range(kh):
            big_y, dy = _tap(ky, self.stride, ky_n)
            for kx in range(kw):
                big_x, dx = _tap(kx, self.stride, kx_n)
                out[:, :, dy, dx, big_y, big_x] = w[:, :, ky, kx]
        return out.reshape(o, c * dy_n * dx_n, ky_n, kx_n)

    def host_bytes(self, data_bytes: int) -> int:
        """DDR bytes the host moves for it per frame: the input read, the tensor written."""
        return (math.prod(self.source) + math.prod(self.shape)) * data_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"source": list(self.source), "stride": self.stride,
                "padding": list(self.padding), "offsets": list(self.offsets),
                "shape": list(self.shape), "tensor": self.tensor, "reads": self.reads,
                "kind": self.kind}

    @staticmethod
    def from_dict(d: Any) -> InputTransform:
        w = "manifest: host_transforms[]"
        if not isinstance(d, Mapping):
            raise InputError(f"{w} must be a JSON object")

        def ints(key: str, n: int) -> tuple[int, ...]:
            v = d.get(key)
            if not isinstance(v, list) or len(v) != n or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in v):
                raise InputError(f"{w}.{key} must be a list of {n} integers, got {v!r}")
            return tuple(v)

        s, t, r = d.get("stride"), d.get("tensor"), d.get("reads")
        if not isinstance(s, int) or isinstance(s, bool):
            raise InputError(f"{w}.stride must be an integer, got {s!r}")
        for key, v in (("tensor", t), ("reads", r)):
            if not isinstance(v, str):
                raise InputError(f"{w}.{key} must be a string, got {v!r}")
        src, shape = ints("source", 3), ints("shape", 3)
        pad, offs = ints("padding", 2), ints("offsets", 2)
        return InputTransform((src[0], src[1], src[2]), s, (pad[0], pad[1]),
                              (offs[0], offs[1]), (shape[0], shape[1], shape[2]), str(t),
                              str(r))


def _new_kernel(k: int, s: int, d: int) -> int:
    return max(1, -(-(k - d) // s) + 1)


def _tap(k: int, s: int, kn: int) -> tuple[int, int]:
    """(K, d) of original tap `k`: k = s·K + d with K = min(k // s, kn − 1)."""
    big = min(k // s, kn - 1)
    return big, k - s * big


# --- which layer, which variants ---------------------------------------------------------------

def candidates(m: NetworkMapping) -> list[Stage]:
    """The stages whose input the host can lay out: CONVs reading a map the host writes (the
    network input or a host layer's result; not a stage's SAVE), not already 1×1 at stride 1."""
    out = []
    for st in m.stages:
        t = m.tensors.get(st.input)
        if st.kind != "conv" or t is None or not t.on_ddr:
            continue
        if t.producer >= 0 and not isinstance(m.schedule[t.producer], HostStep):
            continue
        if st.stride == 1 and st.kernel == (1, 1):
            continue
        out.append(st)
    return out


def offsets_options(k: int, s: int) -> list[int]:
    """D per axis worth trying: the least D that brings K' down to 3·j (j sub-kernels of 3 per
    axis), for j = 1, 2, … until D = s (the phases), and D = k (im2col, a CONV1)."""
    out = {k}
    j = 1
    while True:
        d = max(min(s, k), k - s * (KERNEL * j - 1))
        out.add(d)
        if d <= min(s, k):
            break
        j += 1
    return sorted(out)


def variants(st: Stage) -> list[InputTransform]:
    """Every input transform of `st` worth timing (not the identity)."""
    c, h, w = st.in_shape
    (kh, kw), s, pad = st.kernel, st.stride, st.padding
    ho, wo = st.conv_out
    out = []
    for dy in offsets_options(kh, s):
        for dx in offsets_options(kw, s):
            ky, kx = _new_kernel(kh, s, dy), _new_kernel(kw, s, dx)
            if s == 1 and (dy, dx) == (1, 1):
                continue                      # the layer itself
            if (dy == kh) != (dx == kw):
                continue                      # a CONV1 only when both axes are im2col
            out.append(InputTransform((c, h, w), s, pad, (dy, dx),
                                      (c * dy * dx, ho + ky - 1, wo + kx - 1),
                                      tensor_name(st.name), st.input))
    return out


def transformed_stage(st: Stage, tr: InputTransform) -> Stage:
    """The stage as the accelerator runs it on the transformed input."""
    return dataclasses.replace(st, input=tr.tensor, in_shape=tr.shape,
                               kernel=tr.kernel(st.kernel), stride=1, padding=(0, 0))


def apply(m: NetworkMapping, model: ModelInput, st: Stage, tr: InputTransform
          ) -> tuple[NetworkMapping, ModelInput]:
    """The mapping and model with stage `st` on the transformed map: the new tensor written by
    the host, the original on DDR only while another stage reads it as it is, the stage's
    weights rearranged."""
    new = transformed_stage(st, tr)
    stages = tuple(new if s.index == st.index else s for s in m.stages)
    schedule = tuple(new if isinstance(item, Stage) and item.index == st.index else item
                     for item in m.schedule)
    pos = m.positions[st.name]
    t = m.tensors[st.input]
    tensors = dict(m.tensors)
    tensors[t.name] = dataclasses.replace(
        t, readers=tuple(r for r in t.readers if r != pos),
        on_ddr=any(s.input == t.name for s in stages))
    tensors[tr.tensor] = Tensor(tr.tensor, tr.shape, t.fmt, t.producer, (pos,), True)
    weights = model.weights
    if weights is not None:
        weights = dict(weights)
        arrays = dict(weights[st.name])
        arrays["weight"] = tr.weights(arrays["weight"])
        weights[st.name] = arrays
    return (dataclasses.replace(m, stages=stages, schedule=schedule, tensors=tensors),
            dataclasses.replace(model, weights=weights))
