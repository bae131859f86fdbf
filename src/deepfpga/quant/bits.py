"""Bit widths for quantization: the presets `16`, `8`, `8/4` and per-layer TOML overrides.

A plan gives every layer the width of its output feature map (`data`) and, for CONV/FC layers,
the widths of its weights and bias. Fractional lengths are chosen later by the quantizer; widths
are the user's decision.

Presets (data / CONV weights / FC weights / bias):
- `16`:  16 / 16 / 16 / 16
- `8`:    8 /  8 /  8 /  8
- `8/4`:  8 /  8 /  4 /  8

Bias width = data width, as in the paper (16-bit biases, extended to 32 bits by the Bias Shift
unit) and in the accelerator presets (`zc706-paper`: 16, `zedboard`: 8), so a quantized model
fits its target. The bias is aligned exactly to the accumulator (fl_b <= fl_in + fl_w), so the
only cost is the bias' own rounding: measured on the Fashion-MNIST models at 8 bits, 8-bit
biases (relative error ~1 %) gave the same top-1 as 16-bit ones (see docs/quantization.md). A
TOML file may widen them (`bias_bits = 32`; the contract allows 2..32).

Override file (TOML): one table per layer, keys `data_bits`, `weight_bits`, `bias_bits`:

    [layers.fc1]
    weight_bits = 4

    [layers.input]      # the network input (the graph's INPUT)
    data_bits = 16

`data_bits` of a layer is the width of its output map (the next layer reads it at that width).
Pass-through layers (relu, maxpool, flatten, dropout) keep their producer's format, so they take
no `data_bits`; layers without weights take no `weight_bits`/`bias_bits`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfpga.errors import InputError
from deepfpga.fileio import parse_toml
from deepfpga.ir import INPUT, Graph
from deepfpga.ir.passes import prepare_for_quantization
from deepfpga.quant.fixedpoint import MAX_BW, MIN_BW
from deepfpga.quant.qmodel import PASSTHROUGH_KINDS

if TYPE_CHECKING:
    from deepfpga.hw.accelerator import AcceleratorConfig

OVERRIDE_KEYS = ("data_bits", "weight_bits", "bias_bits")


@dataclass(frozen=True)
class BitPreset:
    name: str
    data: int
    conv_weight: int
    fc_weight: int
    bias: int


PRESETS: dict[str, BitPreset] = {
    "16": BitPreset("16", data=16, conv_weight=16, fc_weight=16, bias=16),
    "8": BitPreset("8", data=8, conv_weight=8, fc_weight=8, bias=8),
    "8/4": BitPreset("8/4", data=8, conv_weight=8, fc_weight=4, bias=8),
}


@dataclass(frozen=True)
class LayerBits:
    """Widths of one layer: its output map, and its weights and bias (None if it has none)."""

    data: int
    weight: int | None = None
    bias: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return {"data_bits": self.data, "weight_bits": self.weight, "bias_bits": self.bias}


Overrides = Mapping[str, Mapping[str, int]]


def get_preset(name: str | BitPreset) -> BitPreset:
    if isinstance(name, BitPreset):
        return name
    key = str(name).strip()
    if key not in PRESETS:
        raise InputError(f"unknown bit-width preset {key!r} (known: {', '.join(PRESETS)})")
    return PRESETS[key]


def _check_width(where: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{where} must be an integer bit width, got {v!r}")
    if not MIN_BW <= v <= MAX_BW:
        raise InputError(f"{where} = {v} is outside {MIN_BW}..{MAX_BW}")
    return v


def check_overrides(overrides: Any, source: str = "overrides") -> dict[str, dict[str, int]]:
    """Syntactic check of an override mapping {layer: {key: bits}}; returns a plain copy."""
    if not isinstance(overrides, Mapping):
        raise InputError(f"{source}: 'layers' must be a table of layer tables")
    out: dict[str, dict[str, int]] = {}
    for lname, table in overrides.items():
        where = f"{source}: layers.{lname}"
        if not isinstance(table, Mapping):
            raise InputError(f"{where} must be a table (e.g. [layers.{lname}])")
        entry: dict[str, int] = {}
        for key, v in table.items():
            if key not in OVERRIDE_KEYS:
                raise InputError(
                    f"{where}: unknown key {key!r} (known: {', '.join(OVERRIDE_KEYS)})"
                )
            entry[key] = _check_width(f"{where}.{key}", v)
        out[str(lname)] = entry
    return out


def parse_bits_toml(text: str, source: str = "bits file") -> dict[str, dict[str, int]]:
    """Parse override TOML text: only a `[layers.<name>]` table per layer is allowed."""
    doc = parse_toml(text, source)
    unknown = sorted(set(doc) - {"layers"})
    if unknown:
        raise InputError(
            f"{source}: unknown top-level key {unknown[0]!r} (only [layers.<name>] tables)"
        )
    return check_overrides(doc.get("layers", {}), source)


def load_bits_file(path: str | os.PathLike[str]) -> dict[str, dict[str, int]]:
    """Read and check an override TOML file (layer names are checked against a graph later)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"bits file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not UTF-8 text ({e})") from None
    return parse_bits_toml(text, str(p))


def resolve_bits(graph: Graph, preset: str | BitPreset = "8",
                 overrides: Overrides | None = None) -> dict[str, LayerBits]:
    """Widths for INPUT and every layer of `graph`: the preset, then the overrides.

    Pass-through layers inherit their producer's data width. Refuses (naming the key) an override
    for an unknown layer or one the layer cannot take.
    """
    p = get_preset(preset)
    ov = check_overrides(overrides or {}, "overrides")
    names = [layer.name for layer in graph.layers]
    for lname in ov:
        if lname != INPUT and lname not in names:
            raise InputError(
                f"overrides: layers.{lname}: no layer {lname!r} in graph {graph.name!r}"
                f" (layers: {', '.join([INPUT, *names])}; dropout and batch-norm layers are"
                " removed before quantization)"
            )
    for key in ("weight_bits", "bias_bits"):
        if key in ov.get(INPUT, {}):
            raise InputError(f"overrides: layers.{INPUT}.{key}: the network input has no weights")

    plan: dict[str, LayerBits] = {INPUT: LayerBits(ov.get(INPUT, {}).get("data_bits", p.data))}
    for layer in graph.layers:
        o = ov.get(layer.name, {})
        where = f"overrides: layers.{layer.name}"
        if layer.kind in PASSTHROUGH_KINDS:
            if "data_bits" in o:
                raise InputError(
                    f"{where}.data_bits: a {layer.kind} layer keeps its input's format;"
                    f" set data_bits on the layer producing its input"
                )
            data = plan[layer.inputs[0]].data
        else:
            data = o.get("data_bits", p.data)
        shapes = layer.param_shapes()
        if "weight" not in shapes:
            for key in ("weight_bits", "bias_bits"):
                if key in o:
                    raise InputError(f"{where}.{key}: layer {layer.name!r} ({layer.kind})"
                                     " has no weights")
            plan[layer.name] = LayerBits(data)
            continue
        if "bias" not in shapes and "bias_bits" in o:
            raise InputError(f"{where}.bias_bits: layer {layer.name!r} has no bias")
        default_w = p.fc_weight if layer.kind == "fc" else p.conv_weight
        weight = o.get("weight_bits", default_w)
        bias = o.get("bias_bits", p.bias) if "bias" in shapes else None
        plan[layer.name] = LayerBits(data, weight, bias)
    return plan


# --- fitting a preset to an accelerator ---------------------------------------------------------

def check_bits_fit(bits: str | BitPreset, hw: AcceleratorConfig) -> None:
    """Refuse a preset whose data or weights are wider than the target's."""
    p = get_preset(bits)
    for what, need, have in (("data", p.data, hw.data_bits),
                             ("weights", max(p.conv_weight, p.fc_weight), hw.weight_bits)):
        if need > have:
            raise InputError(f"--bits {p.name} needs {need}-bit {what}, but target {hw.name!r}"
                             f" has {have}-bit {what} (use a 16-bit target such as zc706-paper,"
                             f" or --bits {have})")


def bit_plan(graph: Graph, bits: str | BitPreset, hw: AcceleratorConfig
             ) -> dict[str, dict[str, int]]:
    """Per-layer overrides that make the `bits` preset fit the target: biases narrowed to the
    target's bias width. Data or weights wider than the target are refused."""
    check_bits_fit(bits, hw)
    if get_preset(bits).bias <= hw.bias_bits:
        return {}
    g = prepare_for_quantization(graph)
    return {layer.name: {"bias_bits": hw.bias_bits} for layer in g.layers
            if "bias" in layer.param_shapes()}
