"""The timing model against the RTL: per layer, per instruction kind and per frame, from the
accelerator RTL's instruction trace (`deepfpga.rtl.accel.driver.RtlResult.trace`) and the timing
simulator's schedule of the same program (docs/timing.md, "Calibration").

Per layer both sides count the same span: from the first instruction's start (its tokens taken)
to the last one's end. Per instruction kind: the summed start → end durations of its
instructions. The frame: the RTL's CYCLES registers against the simulator's frame cycles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from deepfpga.hw.isa import Calc, Load, Save

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled
    from deepfpga.sim.timing import Timing


@dataclass(frozen=True)
class Row:
    name: str
    rtl: int
    model: int

    @property
    def error(self) -> float:
        """(model − RTL) / RTL."""
        return (self.model - self.rtl) / self.rtl if self.rtl else 0.0


@dataclass(frozen=True)
class Calibration:
    layers: tuple[Row, ...]
    kinds: tuple[Row, ...]       # LOAD, CALC, SAVE: summed instruction durations
    frame: Row

    def worst_layer(self) -> Row:
        return max(self.layers, key=lambda r: abs(r.error))


def _span(start: np.ndarray, end: np.ndarray) -> int:
    ok = (start >= 0) & (end >= 0)
    return int(end[ok].max() - start[ok].min()) if ok.any() else 0


def compare(compiled: Compiled, trace: Mapping[str, np.ndarray], rtl_cycles: int,
            timing: Timing) -> Calibration:
    """Compare the RTL's trace of one image (global instruction indices) with `timing`
    (`simulate_timing(compiled)`)."""
    st, en = np.asarray(trace["start"]), np.asarray(trace["end"])
    ms, me = timing.start_cycles, timing.end_cycles
    layers = []
    for s in compiled.manifest.layers:
        a, b = s.instructions
        layers.append(Row(s.name, _span(st[a:b], en[a:b]), _span(ms[a:b], me[a:b])))
    ins = compiled.program.instructions
    kinds = []
    for kind in (Load, Calc, Save):
        k = np.array([j for j, i in enumerate(ins) if isinstance(i, kind)], np.int64)
        rtl = int((en[k] - st[k]).sum()) if len(k) else 0
        model = int((me[k] - ms[k]).sum()) if len(k) else 0
        kinds.append(Row(kind.__name__.upper(), rtl, model))
    return Calibration(tuple(layers), tuple(kinds), Row("frame", rtl_cycles, timing.cycles))
