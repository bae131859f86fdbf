"""Per-layer utilisation of the accelerator's product slots, and where the rest goes.

A layer's utilisation is its useful MACs (the model's, from the manifest) over the product slots
of its exclusive cycles: products_per_cycle (engines.grid_multipliers: grid_channels × bank_count) ×
the layer's cycles in the timing model. The lost slots are split into causes that the engines'
cycle rules attribute exactly (engines.calc_slots per CALC), so the parts add up to the slots:

- idle convolvers: output channels of the last grid group beyond `to`; FC using B of the
  grid's lanes, and its last wide read beyond ti;
- window: pixel lanes a grid block leaves empty (stride > 1, the row's edge), the one-product
  loop (terms beyond the staging depth), taps formed but not useful (padding, the zeros of a
  kernel other than 1×1 or 3×3 cut into 3×3 sub-kernels);
- pass overhead: the cycles of each CALC around its products: the grid's weight staging
  (9·ti, a 1×1 layer's ti, per output channel), its per-block accumulator reads, pixel drains
  and one write per output channel, the finalize (bias, ReLU, shift, pool: B values of one
  channel per cycle, `engines.fin_chunks`), and the rest (setup, MAC drain, issue);
- bandwidth: the layer's cycles with its CALC engine idle (DMA exposed beyond CALC).

Host layers run on the CPU outside the timing model: they have no accelerator cycles and are
listed apart (cause "host").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfpga.hw import engines
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.isa import Calc, Instruction
from deepfpga.sim.timing import CALC_FIELDS, Timing

# fine part → the cause it is reported under
CAUSE_OF = {
    "idle_channels": "idle_convolvers", "fc_idle_convolvers": "idle_convolvers",
    "fc_lane_remainder": "idle_convolvers",
    "idle_pixel_lanes": "window", "loop_path": "window", "unused_taps": "window",
    "pass_staging": "pass_overhead", "pass_block_io": "pass_overhead",
    "pass_finalize": "pass_overhead",
    "pass_fixed": "pass_overhead", "dma_exposed": "bandwidth",
}
CAUSES = ("idle_convolvers", "window", "bandwidth", "pass_overhead")


@dataclass(frozen=True)
class LayerUtilisation:
    name: str
    kind: str
    cycles: int                  # the layer's exclusive cycles (its latency)
    products_per_cycle: int
    useful_macs: int
    lost: Mapping[str, int]      # slots lost, by fine part (CAUSE_OF's keys)

    @property
    def slots(self) -> int:
        return self.cycles * self.products_per_cycle

    @property
    def utilisation(self) -> float:
        return self.useful_macs / self.slots if self.slots else 0.0

    @property
    def causes(self) -> dict[str, float]:
        """Share of the slots lost to each cause (with utilisation, they add up to 1)."""
        out = dict.fromkeys(CAUSES, 0.0)
        for part, v in self.lost.items():
            out[CAUSE_OF[part]] += v / self.slots if self.slots else 0.0
        return out

    @property
    def dominant(self) -> tuple[str, float] | None:
        """The cause that loses most, and its share; None when nothing is lost."""
        c = self.causes
        name = max(c, key=c.__getitem__)
        return (name, c[name]) if c[name] > 0 else None

    def note(self) -> str:
        """The short "why not 100 %": the dominant cause and its share."""
        d = self.dominant
        return "" if d is None else f"{d[0].replace('_', ' ')} {100 * d[1]:.0f} %"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "cycles": self.cycles,
                "products_per_cycle": self.products_per_cycle, "slots": self.slots,
                "useful_macs": self.useful_macs, "utilisation": self.utilisation,
                "causes": self.causes, "lost_slots": dict(self.lost),
                "why_not_100": self.note()}


def _calc_parts(instructions: Sequence[Instruction], cfg: AcceleratorConfig
                ) -> dict[int, dict[str, int]]:
    """Per layer index: the CALC slots by engines.CALC_SLOT_PARTS, plus the CALC cycles."""
    calcs = [i for i in instructions if isinstance(i, Calc)]
    if not calcs:
        return {}
    f = np.array([CALC_FIELDS(i) for i in calcs], np.int64).T
    lid = np.array([i.layer for i in calcs], np.int64)
    parts = engines.calc_slots(cfg, *f)
    parts["calc_cycles"] = engines.calc_engine_cycles(cfg, *f)
    m = int(lid.max()) + 1
    sums = {k: np.bincount(lid, weights=v, minlength=m) for k, v in parts.items()}
    return {int(i): {k: int(round(v[i])) for k, v in sums.items()} for i in np.unique(lid)}


def layer_utilisation(timing: Timing, instructions: Sequence[Instruction],
                      cfg: AcceleratorConfig) -> tuple[LayerUtilisation, ...]:
    """The utilisation and its lost slots, for every layer of `timing` (timed from
    `instructions` on `cfg`)."""
    p = engines.grid_multipliers(cfg)
    hz = timing.clock_mhz * 1e6
    calc = _calc_parts(instructions, cfg)
    out = []
    for lt in timing.layers:
        c = calc.get(lt.index, {})
        cycles = int(round(lt.time_s * hz))
        useful = lt.ops // 2
        lost = {k: c.get(k, 0) for k in engines.CALC_SLOT_PARTS if k != "products"}
        lost["unused_taps"] = c.get("products", 0) - useful
        # cycles of the layer in which its CALC engine did nothing (no CALC: all of them)
        lost["dma_exposed"] = p * (cycles - c.get("calc_cycles", 0))
        out.append(LayerUtilisation(lt.name, lt.kind, cycles, p, useful, lost))
    return tuple(out)


def host_notes(host_layers: Sequence[str]) -> list[dict[str, Any]]:
    """Host layers: no accelerator cycles, the whole layer is the host's."""
    return [{"name": h, "kind": "host", "utilisation": 0.0, "why_not_100": "host 100 %"}
            for h in host_layers]
