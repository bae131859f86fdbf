"""The closed-form bound of paper §8.1: a layer takes at least max(compute, transfer) time.

compute bound = operations ÷ peak operations per second (2 per multiplier per cycle);
transfer bound = bytes moved ÷ peak DDR bandwidth. No burst overhead, no port limit, no
pipeline fill: a lower bound every simulated schedule must respect.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepfpga.hw.config import AcceleratorConfig


@dataclass(frozen=True)
class Bound:
    compute_s: float
    transfer_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.transfer_s)

    @property
    def limit(self) -> str:
        """Which side binds: "compute" or "bandwidth"."""
        return "compute" if self.compute_s >= self.transfer_s else "bandwidth"


def layer_bound(ops: float, bytes_moved: float, cfg: AcceleratorConfig) -> Bound:
    return Bound(compute_s=ops / (cfg.peak_gops * 1e9),
                 transfer_s=bytes_moved / (cfg.ddr_bandwidth_gbps * 1e9))
