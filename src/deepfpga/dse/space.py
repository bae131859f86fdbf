"""The design space: which accelerator parameters vary, over which values (docs/dse.md).

An axis is an `AcceleratorConfig` key (`num_pe`, `convolvers_per_pe`, the port widths, ...) or
one of the four *buffer shares*, which size the on-chip buffers from the device's block RAM:

- `bram_share`: part of the block RAM left after the shell margin that the buffers may take;
- `input_share`, `weight_share`: parts of that for the input and weight buffers; the output
  buffer takes the rest (1 - input_share - weight_share, which must be positive);
- `fc_share`: part of the input buffer for FC weight blocks.

A point is one value per axis, named by `point_key`. Keys that are not axes come from `fixed`
or, failing that, the base target. The widths and the clock come from the command line, so a
space may not set them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfpga.errors import InputError
from deepfpga.fileio import read_toml
from deepfpga.hw.accelerator import AcceleratorConfig

SHARES = ("bram_share", "input_share", "weight_share", "fc_share")
BUFFER_KEYS = ("input_buffer_bytes", "output_buffer_bytes", "weight_buffer_bytes",
               "fc_buffer_bytes")
# Set by the command line (--device, --bits, --clock) or not a parameter at all.
NOT_EXPLORED = ("name", "device", "notes", "kernel", "clock_mhz", "data_bits", "weight_bits",
                "bias_bits")
MAX_VALUES = 256            # per axis: a longer list is a typo (or a job for another tool)

_FIELDS = {f.name: f for f in dataclasses.fields(AcceleratorConfig)}

# The default space (every device): PE shapes from 4 to 6,144 convolvers (grids beyond the
# DSPs are refused by the resource model; at 8 bits two products share a DSP48E1, so the
# XC7Z045's 900 take ~1,600 lanes, zc706-8's 48 × 32), ports of 4..16
# values per cycle, buffers from 70 % to all of the block RAM the margin leaves, split 4 ways.
DEFAULT_AXES: dict[str, tuple[float, ...]] = {
    "num_pe": (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48),
    "convolvers_per_pe": (4, 8, 12, 16, 24, 32, 48, 64, 96, 128),
    "datain_port_num": (4, 8, 16),
    "weightin_port_num": (4, 8, 16),
    "dataout_port_num": (4, 8, 16),
    "bram_share": (0.7, 0.85, 1.0),
    "input_share": (0.3, 0.4, 0.5, 0.6),
    "weight_share": (0.1, 0.2, 0.3),
    "fc_share": (0.5, 0.75),
}


@dataclass(frozen=True)
class Space:
    axes: tuple[tuple[str, tuple[Any, ...]], ...]     # in order; each a non-empty value tuple
    fixed: tuple[tuple[str, Any], ...] = ()
    source: str = "default space"

    def __post_init__(self) -> None:
        _check(self)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for _, v in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.sizes)

    @property
    def uses_shares(self) -> bool:
        return any(name in SHARES for name in (*self.names, *(k for k, _ in self.fixed)))

    def point(self, genes: Sequence[int]) -> dict[str, Any]:
        """The values of the point with value indices `genes` (one per axis)."""
        return {name: values[g] for (name, values), g in zip(self.axes, genes, strict=True)}

    def genes(self, index: int) -> tuple[int, ...]:
        """The `index`-th point in enumeration order (the last axis varies fastest)."""
        out = []
        for n in reversed(self.sizes):
            index, g = divmod(index, n)
            out.append(g)
        return tuple(reversed(out))

    def to_dict(self) -> dict[str, Any]:
        return {"axes": {name: list(values) for name, values in self.axes},
                "fixed": dict(self.fixed), "size": self.size}


def point_key(point: Mapping[str, Any]) -> str:
    """A point's name: `key=value` in axis order (stable across runs, used to resume)."""
    return ",".join(f"{k}={v!r}" for k, v in point.items())


def default_space() -> Space:
    return Space(tuple(DEFAULT_AXES.items()))


def space_from_dict(d: Any, source: str) -> Space:
    """A space from a parsed TOML table: `[axes]` (key = [values]) and optional `[fixed]`."""
    if not isinstance(d, dict):
        raise InputError(f"{source}: expected a table")
    unknown = sorted(set(d) - {"axes", "fixed"})
    if unknown:
        raise InputError(f"{source}: unknown table {unknown[0]!r} (known: axes, fixed)")
    axes = d.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise InputError(f"{source}: needs an [axes] table with at least one key = [values]")
    fixed = d.get("fixed", {})
    if not isinstance(fixed, dict):
        raise InputError(f"{source}: [fixed] must be a table of key = value")
    out = []
    for name, values in axes.items():
        if not isinstance(values, list):
            raise InputError(f"{source}: axis {name!r} must be a list of values, got"
                             f" {values!r}")
        out.append((name, tuple(values)))
    return Space(tuple(out), tuple(fixed.items()), source)


def load_space(path: str | Path) -> Space:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--space {p}: no such file")
    return space_from_dict(read_toml(p, str(p)), str(p))


# --- validation ----------------------------------------------------------------------------------

def _kind(name: str, where: str) -> str:
    """'share', 'int' or 'float' for a key a space may set."""
    if name in SHARES:
        return "share"
    if name in NOT_EXPLORED:
        why = ("set by --device" if name == "device" else "set by --clock"
               if name == "clock_mhz" else "set by --bits" if name.endswith("_bits")
               else "not a parameter to explore")
        raise InputError(f"{where}: key {name!r} is {why}")
    f = _FIELDS.get(name)
    if f is None:
        known = sorted({*SHARES, *(k for k in _FIELDS if k not in NOT_EXPLORED)})
        raise InputError(f"{where}: unknown key {name!r} (known: {', '.join(known)})")
    return "int" if f.type == "int" else "float"


def _check_value(name: str, kind: str, v: Any, where: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError(f"{where}: {name!r} value {v!r} is not a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise InputError(f"{where}: {name!r} value {v!r} is not finite")
    if kind == "int" and not isinstance(v, int):
        raise InputError(f"{where}: {name!r} value {v!r} must be an integer")
    if kind == "share" and not 0 < v <= 1:
        raise InputError(f"{where}: {name!r} value {v!r} must be in (0, 1]")
    # the config's own plausible ranges are checked when each point is built


def _check(space: Space) -> None:
    where = space.source
    if not space.axes:
        raise InputError(f"{where}: no axes")
    seen: set[str] = set()
    for name, values in space.axes:
        if name in seen:
            raise InputError(f"{where}: axis {name!r} given twice")
        seen.add(name)
        kind = _kind(name, f"{where}: axis")
        if not values:
            raise InputError(f"{where}: axis {name!r} has no values")
        if len(values) > MAX_VALUES:
            raise InputError(f"{where}: axis {name!r} has {len(values)} values (at most"
                             f" {MAX_VALUES})")
        for v in values:
            _check_value(name, kind, v, where)
        if len(set(values)) != len(values):
            raise InputError(f"{where}: axis {name!r} repeats a value")
    for name, v in space.fixed:
        kind = _kind(name, f"{where}: [fixed]")
        if name in seen:
            raise InputError(f"{where}: key {name!r} is both an axis and fixed")
        seen.add(name)
        if kind != "share" and _FIELDS[name].type == "str":
            continue
        _check_value(name, kind, v, f"{where}: [fixed]")
    shares = [s for s in SHARES if s in seen]
    if shares:
        missing = [s for s in SHARES if s not in seen]
        if missing:
            raise InputError(f"{where}: buffer shares need all of {', '.join(SHARES)}; missing"
                             f" {missing[0]!r}")
        explicit = [k for k in BUFFER_KEYS if k in seen]
        if explicit:
            raise InputError(f"{where}: {explicit[0]!r} is set, but the buffer shares size the"
                             " buffers; give one or the other")
