"""Bit-exactness: every tensor the compiled program produces, compared value by value with the
reference executor (the oracle), over a set of images run through the functional simulator.

`check_bit_exact(qmodel, compiled, x, y)` runs the images in batches and returns a `SimResult`:
per checked tensor the values compared, the mismatches and the first one, and the simulated
top-1/top-k accuracy. A mismatch is a bug in the simulator, the compiler or the reference —
never a tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfpga.errors import InputError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled, Manifest
    from deepfpga.quant.qmodel import QuantizedModel


@dataclass(frozen=True)
class Mismatch:
    image: int
    index: tuple[int, ...]      # within the tensor of one image
    simulated: int | float
    reference: int | float

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "index": list(self.index), "simulated": self.simulated,
                "reference": self.reference}


@dataclass(frozen=True)
class LayerCheck:
    """Bit-exactness of one tensor the compiled program writes."""

    tensor: str
    written_by: str            # the stage (CONV/FC layer) that writes it, or "host: LAYER"
    values: int
    mismatches: int
    first_mismatch: Mismatch | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.tensor, "written_by": self.written_by, "values": self.values,
                "mismatches": self.mismatches,
                "first_mismatch": None if self.first_mismatch is None
                else self.first_mismatch.to_dict()}


@dataclass(frozen=True)
class SimResult:
    """The simulated run over the test images."""

    images: int
    correct1: int
    correct5: int
    k5: int
    checks: tuple[LayerCheck, ...]
    saturated: int             # values saturated over the run (reference executor's count)
    input_saturated: int

    @property
    def mismatches(self) -> int:
        return sum(c.mismatches for c in self.checks)

    @property
    def values_compared(self) -> int:
        return sum(c.values for c in self.checks)

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0


def checked_tensors(manifest: Manifest) -> list[tuple[str, str]]:
    """(tensor, writer) for every tensor the compiled program produces, in schedule order:
    each stage's output (written by the accelerator) and each host layer's output."""
    from deepfpga.compiler.artifact import AccelStep

    stages = {s.name: s for s in manifest.layers}
    out: list[tuple[str, str]] = []
    for step in manifest.schedule:
        if isinstance(step, AccelStep):
            out += [(stages[n].output, n) for n in step.stages]
        else:
            out.append((step.output, f"host: {step.layer}"))
    return out


def compare_batch(sim_tensors: Mapping[str, np.ndarray], ref_tensors: Mapping[str, np.ndarray],
                  wanted: Sequence[tuple[str, str]], offset: int
                  ) -> list[tuple[int, int, Mismatch | None]]:
    """Per wanted tensor: (values compared, mismatches, first mismatch) for one batch whose
    first image is image `offset` of the run."""
    out = []
    for tensor, _writer in wanted:
        if tensor not in sim_tensors:
            raise InputError(f"functional simulator returned no tensor {tensor!r}")
        a = np.asarray(sim_tensors[tensor])
        b = np.asarray(ref_tensors[tensor])
        if a.shape != b.shape:
            raise InputError(f"tensor {tensor!r}: simulator shape {a.shape} differs from the"
                             f" reference's {b.shape}")
        diff = a != b
        n = int(diff.sum())
        first = None
        if n:
            idx = np.unravel_index(int(np.flatnonzero(diff.reshape(-1))[0]), a.shape)
            first = Mismatch(offset + int(idx[0]), tuple(int(i) for i in idx[1:]),
                             a[idx].item(), b[idx].item())
        out.append((int(a.size), n, first))
    return out


def check_bit_exact(qmodel: QuantizedModel, compiled: Compiled, x: np.ndarray, y: np.ndarray,
                    batch_size: int, on_batch: Callable[[int], None] | None = None
                    ) -> SimResult:
    """Run images `x` (float, labels `y`) through the functional simulator and the reference
    executor; compare every produced tensor. `on_batch(n)` is called after each batch of n."""
    from deepfpga.quant.evaluate import score_layer, topk_hits
    from deepfpga.quant.reference import ReferenceExecutor, quantize_input
    from deepfpga.sim.functional import simulate

    manifest = compiled.manifest
    wanted = checked_tensors(manifest)
    score = score_layer(qmodel.graph)
    score_tensor = manifest.alias.get(score, score)
    ref = ReferenceExecutor.build(qmodel)
    keep = {t for t, _ in wanted} | {score}
    n = len(x)
    totals: list[list[Any]] = [[0, 0, None] for _ in wanted]
    c1 = c5 = k5 = sat = in_sat = 0
    for i in range(0, n, batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        x_int, ns = quantize_input(qmodel, xb)
        in_sat += ns
        r = ref.run(x_int, keep=keep)
        sat += r.total_saturations
        tensors = simulate(compiled, x_int).layers
        for tot, (vals, bad, first) in zip(totals, compare_batch(tensors, r.layers, wanted, i),
                                           strict=True):
            tot[0] += vals
            tot[1] += bad
            tot[2] = tot[2] or first
        if score_tensor not in tensors:
            raise InputError(f"functional simulator returned no scores (tensor {score_tensor!r})")
        scores = np.asarray(tensors[score_tensor])
        k5 = min(5, scores.shape[1])
        c1 += int(topk_hits(scores, yb, 1).sum())
        c5 += int(topk_hits(scores, yb, k5).sum())
        if on_batch is not None:
            on_batch(len(yb))
    checks = tuple(LayerCheck(t, s, v, b, f)
                   for (t, s), (v, b, f) in zip(wanted, totals, strict=True))
    return SimResult(n, c1, c5, k5, checks, sat, in_sat)
