"""What the layers placed on the host cost: the values they read and write, and the least time
their DDR traffic takes.

The timing simulator times the accelerator's instructions only. A map the host writes
rearranged for a space-to-depth layer (deepfpga.compiler.s2d: the input, a host layer's result)
costs reading it and writing the rearranged copy (InputTransform.host_bytes, the figure the
compiler weighs it by), listed after the layer that made it. A host layer (softmax, LRN,
average pooling, the residual add until the accelerator fuses it) reads its inputs from DDR
and writes its output back (the next accelerator segment reads it from there), so a frame
takes at least that traffic at the DDR bandwidth longer. The host CPU's own time is not
modelled (no host CPU is described by the config), so the figure is a lower bound, labelled so
wherever it is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from deepfpga.compiler.artifact import Compiled


@dataclass(frozen=True)
class HostLayerCost:
    layer: str
    op: str
    values_in: int                 # per frame, all inputs
    values_out: int
    bytes_moved: int               # DDR bytes read (accelerator results) and written (inputs
                                   # of the accelerator) per frame
    ddr_seconds: float             # bytes_moved at the config's DDR bandwidth: a lower bound

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "op": self.op, "values_in": self.values_in,
                "values_out": self.values_out, "bytes_moved": self.bytes_moved,
                "ddr_ms_lower_bound": self.ddr_seconds * 1e3}


def _value_bytes(bits: int) -> int:
    return -(-bits // 8)


def host_costs(compiled: Compiled) -> tuple[HostLayerCost, ...]:
    """The cost of every host layer of `compiled`, in schedule order. A host layer reads from
    DDR what the accelerator (or the input) left there and writes there what the accelerator
    reads next; what passes from one host layer to the next stays in the host's caches and is
    not counted."""
    m = compiled.manifest
    host_made = {h.output for h in m.host_steps}
    tensor_of = dict(m.alias)
    out = []
    bandwidth = compiled.config.ddr_bandwidth_gbps * 1e9

    def rearranged(tensor: str) -> list[HostLayerCost]:
        """The host's rearrangements of `tensor` for space-to-depth stages."""
        rows = []
        for tr in m.host_transforms:
            if tr.reads == tensor:
                moved = tr.host_bytes(compiled.config.data_bytes)
                rows.append(HostLayerCost(tr.tensor, "space-to-depth", math.prod(tr.source),
                                          math.prod(tr.shape), moved, moved / bandwidth))
        return rows

    out += rearranged(m.input)
    for h in m.host_steps:
        out_shape = h.spec.output_shape([tuple(s) for s in h.input_shapes])
        values_out = math.prod(out_shape)
        moved = 0
        for name, shape, f in zip(h.inputs, h.input_shapes, h.in_formats, strict=True):
            t = m.tensors.get(tensor_of.get(name, name))
            if t is not None and t.on_ddr and t.name not in host_made:
                moved += math.prod(shape) * _value_bytes(f.bw)
        t_out = m.tensors.get(h.output)
        if t_out is not None and t_out.on_ddr:      # a host result on DDR: a stage reads it
            moved += values_out * _value_bytes(h.out_format.bw)
        out.append(HostLayerCost(
            h.layer, h.op, sum(math.prod(s) for s in h.input_shapes), values_out, moved,
            moved / bandwidth))
        out += rearranged(h.output)
    return tuple(out)
