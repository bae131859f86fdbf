"""From a point of the space to an accelerator config that fits its device (or why not).

`make_base` fixes what the command line says (device, widths, clock) on top of a base target,
which gives the board's figures (DDR bandwidth, burst model, row width, ...). `build` applies a
point to it: axis values, then buffer sizes from the buffer shares (each buffer the largest whole
KiB the resource model fits in its share of block RAM), then the config's own validation, then
`check_fits` and the build limits: a point is kept only if `deepfpga rtl synth` would call its
estimate buildable (`hw.resources.BUILD_LIMITS`: DSP and BRAM 90 %, LUT 80 % of the device), and
`--margin` may keep more for the shell (BRAM, LUT and FF at most 1 − margin). Only the public
resource model (`deepfpga.hw.resources.estimate`, `check_fits`, `BUILD_LIMITS`) is used, so a
recalibrated model changes the search without a change here. Everything is cheap (microseconds
to milliseconds): the expensive part is `evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepfpga.dse.space import SHARES, Space, point_key
from deepfpga.errors import InputError
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.config import PRESETS, config_from_dict, load_config
from deepfpga.hw.devices import get_device
from deepfpga.hw.resources import BUILD_LIMITS, RESOURCE_LABELS, check_fits, estimate

# Accumulator width per data width when the base target has another data width: the presets'
# choices (zedboard 8-bit: 32, zc706-paper 16-bit: 48).
ACC_BITS = {8: 32, 16: 48}
BITS = tuple(ACC_BITS)
KIB = 1024
DEFAULT_MARGIN = 0.05
_BUFFERS = (("input", "input_buffer_bytes"), ("weight", "weight_buffer_bytes"),
            ("output", "output_buffer_bytes"))

# statuses of a point (docs/dse.md)
OK, INVALID, NO_FIT, NO_COMPILE, TIMING_ERROR = "ok", "invalid", "no-fit", "no-compile", \
    "timing-error"
REJECTED = (INVALID, NO_FIT)          # refused before compilation (free: not in the budget)
PRESET_KEY = "preset="                # keys of the presets evaluated for comparison


def device_preset(device: str) -> str | None:
    """The first preset built for `device`, or None."""
    name = get_device(device).name
    for p in PRESETS:
        if load_config(p).device == name:
            return p
    return None


def make_base(device: str, bits: int, clock_mhz: float, base: str | None = None,
              ddr_gbps: float | None = None) -> AcceleratorConfig:
    """The fixed part of every point: `base` (default: the device's preset) with the device,
    the widths and the clock of the command line."""
    dev = get_device(device)
    if bits not in ACC_BITS:
        raise InputError(f"--bits must be one of {', '.join(map(str, BITS))}, got {bits}")
    spec = base or device_preset(dev.name)
    if spec is None:
        raise InputError(f"no preset targets {dev.name}: give --base TARGET.toml for the"
                         " board's figures (DDR bandwidth, burst overhead)")
    cfg = load_config(spec)
    d = cfg.to_dict()
    acc = cfg.acc_bits if cfg.data_bits == bits else ACC_BITS[bits]
    d.update(name="dse-base", device=dev.name, clock_mhz=float(clock_mhz), data_bits=bits,
             weight_bits=bits, bias_bits=bits, acc_bits=acc,
             notes={"base": f"board figures from {cfg.name}"})
    if ddr_gbps is not None:
        d["ddr_bandwidth_gbps"] = float(ddr_gbps)
    return config_from_dict(d, f"base target {spec} on {dev.name} at {bits} bits")


@dataclass(frozen=True)
class Built:
    """A point made into a config: status OK (fits, to be evaluated), INVALID or NO_FIT."""

    key: str
    point: Mapping[str, Any]
    status: str
    reason: str = ""
    config: AcceleratorConfig | None = None
    resources: Mapping[str, Any] | None = None


@dataclass
class Builder:
    """Builds points of `space` on `base`; remembers buffer sizings (same port, same share)."""

    base: AcceleratorConfig
    space: Space
    margin: float = DEFAULT_MARGIN
    _sizes: dict[tuple[Any, ...], int | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise InputError(f"--margin must be in [0, 1), got {self.margin}")

    def build(self, point: Mapping[str, Any]) -> Built:
        key = point_key(point)
        values = {**dict(self.space.fixed), **point}
        d = self.base.to_dict()
        d.update({k: v for k, v in values.items() if k not in SHARES})
        d["name"] = "dse-point"
        d["notes"] = {}
        try:
            if self.space.uses_shares:
                d.update(self._buffers(d, {s: float(values[s]) for s in SHARES}))
            cfg = config_from_dict(d, f"point {key}")
        except InputError as e:
            return Built(key, point, NO_FIT if isinstance(e, _NoRoom) else INVALID, str(e))
        try:
            check_fits(cfg)
            est = self._limit_check(cfg)
        except InputError as e:
            return Built(key, point, NO_FIT, str(e))
        return Built(key, point, OK, "", cfg, resources_of(est))

    # --- buffers from shares -------------------------------------------------------------------
    def _buffers(self, d: dict[str, Any], s: Mapping[str, float]) -> dict[str, int]:
        out_share = 1.0 - s["input_share"] - s["weight_share"]
        if out_share <= 1e-9:
            raise InputError(f"input_share {s['input_share']:g} + weight_share"
                             f" {s['weight_share']:g} leave nothing for the output buffer")
        # every buffer at 1 KiB: valid, and its block count depends only on its own size
        trial = config_from_dict({**d, **{k: KIB for _, k in _BUFFERS}, "fc_buffer_bytes": KIB},
                                 "point")
        dev = get_device(trial.device)
        est = estimate(trial)
        # BRAM36-equivalents: the resource model counts 18- and 36-Kbit halves as Yosys maps them
        shared = {m for name, _ in _BUFFERS for m in _GROWS_WITH[name]}
        fixed = sum(b.bram36 for b in est.buffers if b.name not in shared)
        budget = s["bram_share"] * self.keep("bram36") * dev.bram36_equivalent - fixed
        shares = {"input": s["input_share"], "weight": s["weight_share"], "output": out_share}
        sizes = {}
        for name, key in _BUFFERS:
            blocks = shares[name] * budget
            size = self._largest(trial, name, key, blocks)
            if size is None:
                port = next(b.port_bits for b in est.buffers if b.name == name)
                raise _NoRoom(f"the {name} buffer ({port}-bit port) does not fit in its"
                              f" {max(blocks, 0):.1f} BRAM36-equivalent(s)")
            sizes[key] = size
        fc = max(KIB, math.floor(s["fc_share"] * sizes["input_buffer_bytes"] / KIB) * KIB)
        return {**sizes, "fc_buffer_bytes": fc}

    def _largest(self, trial: AcceleratorConfig, name: str, key: str,
                 blocks: float) -> int | None:
        """The most whole KiB for buffer `name` within `blocks` BRAM36-equivalents (None: not
        even one KiB). Block counts grow with the size, so a bisection finds it."""
        memo = (trial, name, blocks)
        if memo not in self._sizes:
            def fits(kib: int) -> bool:
                est = estimate(trial.replace(**{key: kib * KIB}))
                used = sum(b.bram36 for b in est.buffers if b.name in _GROWS_WITH[name])
                return used <= blocks + 1e-9

            hi = math.floor(blocks * _BRAM36_DATA_BYTES / KIB)   # no more than the blocks hold
            if hi < 1 or not fits(1):
                self._sizes[memo] = None
            else:
                lo = 1
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
                self._sizes[memo] = lo * KIB
        return self._sizes[memo]

    def keep(self, resource: str) -> float:
        """The share of the device a point may use: the build limit, and for BRAM, LUT and FF
        at most 1 − margin (the shell uses no DSPs)."""
        limit = BUILD_LIMITS[resource]
        return limit if resource == "dsps" else min(limit, 1 - self.margin)

    def _limit_check(self, cfg: AcceleratorConfig) -> Any:
        """The estimate, refused when a resource is over its build limit or eats into the
        shell's margin."""
        dev = get_device(cfg.device)
        est = estimate(cfg)
        for line in est.fit_report():
            keep = self.keep(line.resource)
            if line.used > keep * line.available:
                why = (f"the {100 * self.margin:g} % shell margin" if keep < line.limit
                       else f"the {100 * line.limit:g} % build limit")
                raise InputError(f"{RESOURCE_LABELS[line.resource]} {line.used:,.0f} >"
                                 f" {keep * line.available:,.0f} ({line.available:,.0f} of"
                                 f" {dev.name} at {why})")
        return est

_BRAM36_DATA_BYTES = 4096      # data bytes of one 36-Kbit block (the rest is parity)
# the memories a buffer's size decides: the weight staging is as deep as the WEIGHT buffer holds
# weights per grid channel
_GROWS_WITH = {"input": ("input",), "weight": ("weight", "staging"), "output": ("output",)}


class _NoRoom(InputError):
    """A buffer's share of block RAM is too small for its port: the point does not fit."""


def resources_of(est: Any) -> dict[str, Any]:
    """What a record keeps of a resource estimate."""
    return {"multipliers": est.multipliers, "dsps": est.dsps,
            "fabric_multipliers": est.fabric_multipliers, "bram36": est.bram36,
            "luts": est.luts, "ffs": est.ffs, "share": est.utilisation()}


def preset_built(spec: str) -> Built:
    """A hand-made target as a point of no space (for comparison beside the front)."""
    cfg = load_config(spec)
    return Built(f"{PRESET_KEY}{spec}", {"preset": spec}, OK, "", cfg, resources_of(estimate(cfg)))


def variant_built(spec: str, base: AcceleratorConfig) -> Built:
    """A preset's structure at the widths and clock of `base` (e.g. zc706-paper at 8 bits)."""
    cfg = load_config(spec)
    d = cfg.to_dict()
    d.update({k: getattr(base, k) for k in ("clock_mhz", "data_bits", "weight_bits",
                                             "bias_bits", "acc_bits")})
    d["name"] = f"{spec}@{base.data_bits}bit"
    key = f"{PRESET_KEY}{d['name']}"
    try:
        v = config_from_dict(d, d["name"])
        check_fits(v)
    except InputError as e:
        return Built(key, {"preset": d["name"]}, NO_FIT, str(e))
    return Built(key, {"preset": d["name"]}, OK, "", v, resources_of(estimate(v)))
