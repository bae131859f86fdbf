"""The compiled artifact: `Compiled` (config, decoded program, DDR image, typed `Manifest`).

The manifest describes what the program does with DDR: regions, tensors, stages, and the
schedule of accelerator segments and host steps. It is typed in memory; JSON appears only at the
file boundary (`Manifest.to_dict` / `Manifest.from_dict`, `Compiled.write` / `load_compiled`),
with a format name and version: a file of another version is refused, naming both. The config
hash is checked once, when a `Compiled` is built or loaded. To change a manifest (tests of
damaged artifacts) use `dataclasses.replace` on it and its parts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfpga.compiler.alloc import Region
from deepfpga.compiler.s2d import InputTransform
from deepfpga.compiler.tiling import Choice, Tiling
from deepfpga.errors import InputError
from deepfpga.fileio import atomic_write_bytes, atomic_write_json
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.isa import Program, decode_program, encode_program
from deepfpga.ir.graph import layer_from_dict, layer_to_dict
from deepfpga.ir.layers import Layer
from deepfpga.quant.fixedpoint import FixedFormat

MANIFEST_FORMAT = "deepfpga-compiled"
# 2: typed manifest; host steps carry `float_output` (deepfpga.hw.arch.stays_float).
# 3: `host_transforms` (maps the host writes rearranged for space-to-depth layers,
#    deepfpga.compiler.s2d).
MANIFEST_VERSION = 3


# --- reading JSON with errors that name the key ------------------------------------------------

def _get(d: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, Mapping):
        raise InputError(f"manifest: {where} must be a JSON object")
    if key not in d:
        raise InputError(f"manifest: {where} has no key {key!r}")
    v = d[key]
    if kind is int and isinstance(v, bool) or not isinstance(v, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"manifest: {where}.{key} must be {name}, got {v!r}")
    return v


def _ints(v: Any, where: str, n: int | None = None) -> tuple[int, ...]:
    if not isinstance(v, list | tuple) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in v) \
            or (n is not None and len(v) != n):
        size = f"{n} " if n is not None else ""
        raise InputError(f"manifest: {where} must be a list of {size}integers, got {v!r}")
    return tuple(v)


def _strs(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
        raise InputError(f"manifest: {where} must be a list of strings, got {v!r}")
    return tuple(v)


def _fmt(v: Any, where: str) -> FixedFormat:
    return FixedFormat(_get(v, "bw", int, where), _get(v, "fl", int, where))


def _pair(v: tuple[int, ...]) -> tuple[int, int]:
    return v[0], v[1]


# --- the parts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigRef:
    name: str
    device: str
    hash: str             # hex SHA-256 of the AcceleratorConfig (AcceleratorConfig.hash)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "hash": self.hash}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    format: FixedFormat
    on_ddr: bool
    region: str | None
    start: int | None      # DDR byte address (None: not on DDR)
    producer: int          # schedule position; -1 for the network input
    readers: tuple[int, ...]
    graph_output: bool

    @property
    def layout(self) -> str:
        return "CHW" if len(self.shape) == 3 else "vector"

    @property
    def address(self) -> int:
        """The DDR byte address of a tensor on DDR."""
        if self.start is None:
            raise InputError(f"manifest: tensor {self.name!r} has no DDR address")
        return self.start

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "format": self.format.to_dict(),
                "layout": self.layout, "on_ddr": self.on_ddr, "region": self.region,
                "start": self.start, "producer": self.producer, "readers": list(self.readers),
                "graph_output": self.graph_output}

    @staticmethod
    def from_dict(name: str, d: Any) -> TensorEntry:
        w = f"tensors[{name!r}]"
        start = d.get("start") if isinstance(d, Mapping) else None
        region = d.get("region") if isinstance(d, Mapping) else None
        if _get(d, "on_ddr", bool, w) and (start is None or region is None):
            raise InputError(f"manifest: {w} is on DDR but has no start/region")
        return TensorEntry(name, _ints(_get(d, "shape", list, w), f"{w}.shape"),
                           _fmt(_get(d, "format", dict, w), f"{w}.format"),
                           _get(d, "on_ddr", bool, w),
                           None if region is None else _get(d, "region", str, w),
                           None if start is None else _get(d, "start", int, w),
                           _get(d, "producer", int, w),
                           _ints(_get(d, "readers", list, w), f"{w}.readers"),
                           _get(d, "graph_output", bool, w))


@dataclass(frozen=True)
class StageFormats:
    input: FixedFormat
    weight: FixedFormat
    bias: FixedFormat | None
    output: FixedFormat

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input.to_dict(), "weight": self.weight.to_dict(),
                "bias": self.bias.to_dict() if self.bias else None,
                "output": self.output.to_dict()}


@dataclass(frozen=True)
class StageEntry:
    """One accelerator stage (a CONV/FC layer and what is fused behind it) as compiled."""

    index: int
    name: str
    kind: str                       # "conv" | "fc"
    fused: tuple[str, ...]
    input: str                      # tensor read
    output: str                     # tensor written
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    conv_out: tuple[int, int]
    kernel: tuple[int, int]
    stride: int
    padding: tuple[int, int]
    relu: bool
    pool: bool
    has_bias: bool
    formats: StageFormats
    bias_shift: int
    data_shift: int
    macs: int
    tiling: Tiling
    instructions: tuple[int, int]   # [first, end) in the program
    estimate_s: float               # closed-form cost model
    cost: Mapping[str, float]
    position: int                   # in the schedule

    @property
    def ops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "kind": self.kind,
            "fused": list(self.fused), "input": self.input, "output": self.output,
            "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
            "conv_out": list(self.conv_out), "kernel": list(self.kernel), "stride": self.stride,
            "padding": list(self.padding), "relu": self.relu, "pool": self.pool,
            "has_bias": self.has_bias, "formats": self.formats.to_dict(),
            "bias_shift": self.bias_shift, "data_shift": self.data_shift,
            "macs": self.macs, "ops": self.ops, "tiling": self.tiling.to_dict(),
            "instructions": list(self.instructions), "estimate_s": self.estimate_s,
            "cost": dict(self.cost), "position": self.position,
        }

    @staticmethod
    def from_dict(k: int, d: Any) -> StageEntry:
        w = f"layers[{k}]"
        f = _get(d, "formats", dict, w)
        bias = f.get("bias")
        return StageEntry(
            _get(d, "index", int, w), _get(d, "name", str, w), _get(d, "kind", str, w),
            _strs(_get(d, "fused", list, w), f"{w}.fused"), _get(d, "input", str, w),
            _get(d, "output", str, w), _ints(_get(d, "in_shape", list, w), f"{w}.in_shape"),
            _ints(_get(d, "out_shape", list, w), f"{w}.out_shape"),
            _pair(_ints(_get(d, "conv_out", list, w), f"{w}.conv_out", 2)),
            _pair(_ints(_get(d, "kernel", list, w), f"{w}.kernel", 2)),
            _get(d, "stride", int, w), _pair(_ints(_get(d, "padding", list, w), f"{w}.padding",
                                                   2)),
            _get(d, "relu", bool, w), _get(d, "pool", bool, w), _get(d, "has_bias", bool, w),
            StageFormats(_fmt(_get(f, "input", dict, f"{w}.formats"), f"{w}.formats.input"),
                         _fmt(_get(f, "weight", dict, f"{w}.formats"), f"{w}.formats.weight"),
                         None if bias is None else _fmt(bias, f"{w}.formats.bias"),
                         _fmt(_get(f, "output", dict, f"{w}.formats"), f"{w}.formats.output")),
            _get(d, "bias_shift", int, w), _get(d, "data_shift", int, w),
            _get(d, "macs", int, w), Tiling.from_dict(_get(d, "tiling", dict, w)),
            _pair(_ints(_get(d, "instructions", list, w), f"{w}.instructions", 2)),
            float(_get(d, "estimate_s", (int, float), w)),
            dict(_get(d, "cost", dict, w)), _get(d, "position", int, w))


@dataclass(frozen=True)
class AccelStep:
    """An accelerator segment: instructions [first, end) ending with END."""

    segment: int
    instructions: tuple[int, int]
    stages: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "accel", "segment": self.segment,
                "instructions": list(self.instructions), "stages": list(self.stages)}


@dataclass(frozen=True)
class HostEntry:
    """A layer the host runs between segments."""

    layer: str
    op: str
    inputs: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    output: str
    spec: Layer                     # the layer itself (JSON: ir.graph.layer_to_dict)
    in_formats: tuple[FixedFormat, ...]
    out_format: FixedFormat
    graph_output: bool
    float_output: bool              # kept in float (deepfpga.hw.arch.stays_float)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "host", "layer": self.layer, "op": self.op,
                "inputs": list(self.inputs), "input_shapes": [list(s) for s in self.input_shapes],
                "output": self.output, "spec": layer_to_dict(self.spec),
                "formats": {"inputs": [f.to_dict() for f in self.in_formats],
                            "output": self.out_format.to_dict()},
                "graph_output": self.graph_output, "float_output": self.float_output}


# A step's type is its class (isinstance); "kind" exists only in the JSON form.
ScheduleStep = AccelStep | HostEntry


def _step_from_dict(k: int, d: Any) -> ScheduleStep:
    w = f"schedule[{k}]"
    kind = _get(d, "kind", str, w)
    if kind == "accel":
        return AccelStep(_get(d, "segment", int, w),
                         _pair(_ints(_get(d, "instructions", list, w), f"{w}.instructions", 2)),
                         _strs(_get(d, "stages", list, w), f"{w}.stages"))
    if kind != "host":
        raise InputError(f"manifest: {w}.kind must be 'accel' or 'host', got {kind!r}")
    f = _get(d, "formats", dict, w)
    shapes = _get(d, "input_shapes", list, w)
    try:
        spec = layer_from_dict(_get(d, "spec", dict, w))
    except InputError as e:
        raise InputError(f"manifest: {w}.spec: {e}") from None
    return HostEntry(
        _get(d, "layer", str, w), _get(d, "op", str, w),
        _strs(_get(d, "inputs", list, w), f"{w}.inputs"),
        tuple(_ints(s, f"{w}.input_shapes[{j}]") for j, s in enumerate(shapes)),
        _get(d, "output", str, w), spec,
        tuple(_fmt(x, f"{w}.formats.inputs[{j}]")
              for j, x in enumerate(_get(f, "inputs", list, f"{w}.formats"))),
        _fmt(_get(f, "output", dict, f"{w}.formats"), f"{w}.formats.output"),
        _get(d, "graph_output", bool, w), _get(d, "float_output", bool, w))


@dataclass(frozen=True)
class ProgramStats:
    instructions: int
    sync_nops: int
    load: int
    calc: int
    save: int
    end: int

    def to_dict(self) -> dict[str, int]:
        return {"instructions": self.instructions, "sync_nops": self.sync_nops,
                "load": self.load, "calc": self.calc, "save": self.save, "end": self.end}


@dataclass(frozen=True)
class Partition:
    accelerator: tuple[str, ...]    # graph layers run on the accelerator (fused into stages)
    host: tuple[str, ...]
    folded: tuple[str, ...]         # identities (flatten, dropout, repeated ReLU)

    def to_dict(self) -> dict[str, list[str]]:
        return {"accelerator": list(self.accelerator), "host": list(self.host),
                "folded": list(self.folded)}


# --- the manifest --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest:
    model: str
    weights: str                    # "real" or "zero (architecture only)"
    config: ConfigRef
    element_bytes: Mapping[str, int]
    ddr_size: int
    arena: tuple[int, int]          # DDR bytes the feature maps use (host writes/reads there)
    regions: tuple[Region, ...]
    tensors: Mapping[str, TensorEntry]
    alias: Mapping[str, str]        # graph node → tensor holding its value
    input: str                      # the network input's tensor
    outputs: tuple[tuple[str, str], ...]   # (graph output, tensor)
    layers: tuple[StageEntry, ...]
    schedule: tuple[ScheduleStep, ...]
    partition: Partition
    program: ProgramStats
    # the maps the host writes rearranged for space-to-depth layers (deepfpga.compiler.s2d),
    # besides (or instead of) the maps themselves
    host_transforms: tuple[InputTransform, ...] = ()

    def __post_init__(self) -> None:
        for name, tensor in self.outputs:
            if tensor not in self.tensors:
                raise InputError(f"manifest: output {name!r} names unknown tensor {tensor!r}")
        if self.input not in self.tensors:
            raise InputError(f"manifest: input tensor {self.input!r} is not in 'tensors'")
        for tr in self.host_transforms:
            t = self.tensors.get(tr.tensor)
            if t is None or not t.on_ddr or t.shape != tr.shape:
                raise InputError(f"manifest: host transform writes tensor {tr.tensor!r},"
                                 f" which is not a DDR tensor of shape {tr.shape}")
            src = self.tensors.get(tr.reads)
            if src is None or src.shape != tr.source:
                raise InputError(f"manifest: host transform of {tr.tensor!r} reads"
                                 f" {tr.reads!r} of shape {tr.source}, which is not a tensor"
                                 " of that shape")

    @property
    def input_transform(self) -> InputTransform | None:
        """The rearrangement of the network input (a space-to-depth first layer), if any."""
        return next((t for t in self.host_transforms if t.reads == self.input), None)

    def host_writes(self, tensor: str, values: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(DDR address, (N, count) values) the host writes for a batch `values` of the
        host-made `tensor` (the network input, a host layer's result): the tensor where it is
        on DDR, and its rearrangement for every space-to-depth stage that reads it (the
        functional simulator and the RTL driver both write these)."""
        n = len(values)
        v = np.asarray(values)
        out = []
        t = self.tensors[tensor]
        if t.on_ddr:
            out.append((t.address, v.reshape(n, -1)))
        for tr in self.host_transforms:
            if tr.reads == tensor:
                rearranged = tr.apply(v.reshape(n, *tr.source))
                out.append((self.tensors[tr.tensor].address, rearranged.reshape(n, -1)))
        return out

    # typed views
    @property
    def stages(self) -> tuple[StageEntry, ...]:
        return self.layers

    @property
    def segments(self) -> tuple[AccelStep, ...]:
        return tuple(s for s in self.schedule if isinstance(s, AccelStep))

    @property
    def host_steps(self) -> tuple[HostEntry, ...]:
        return tuple(s for s in self.schedule if isinstance(s, HostEntry))

    def stage(self, index: int) -> StageEntry:
        return self.layers[index]

    # JSON form
    def to_dict(self) -> dict[str, Any]:
        tensors = {n: t.to_dict() for n, t in self.tensors.items()}
        return {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
            "model": self.model, "weights": self.weights, "config": self.config.to_dict(),
            "element_bytes": dict(self.element_bytes), "ddr_size": self.ddr_size,
            "arena": list(self.arena), "regions": [r.to_dict() for r in self.regions],
            "tensors": tensors, "alias": dict(self.alias),
            "input": {"tensor": self.input, **tensors[self.input]},
            "outputs": [{"name": o, "tensor": t, **tensors[t]} for o, t in self.outputs],
            "layers": [s.to_dict() for s in self.layers],
            "host_layers": [{"name": h.layer, "kind": h.op} for h in self.host_steps],
            "schedule": [s.to_dict() for s in self.schedule],
            "partition": self.partition.to_dict(),
            "program": self.program.to_dict(),
            "host_transforms": [t.to_dict() for t in self.host_transforms],
        }

    @staticmethod
    def from_dict(d: Any) -> Manifest:
        """Parse a manifest's JSON form; refuses another format or version, naming both."""
        if not isinstance(d, Mapping):
            raise InputError("manifest: expected a JSON object")
        if d.get("format") != MANIFEST_FORMAT:
            raise InputError(f"manifest: format {d.get('format')!r} is not {MANIFEST_FORMAT!r}")
        if d.get("version") != MANIFEST_VERSION:
            raise InputError(f"manifest: version {d.get('version')!r} is not supported (this is"
                             f" version {MANIFEST_VERSION}; recompile the model)")
        c = _get(d, "config", dict, "manifest")
        eb = _get(d, "element_bytes", dict, "manifest")
        tensors = {str(n): TensorEntry.from_dict(str(n), t)
                   for n, t in _get(d, "tensors", dict, "manifest").items()}
        p = _get(d, "program", dict, "manifest")
        part = _get(d, "partition", dict, "manifest")
        return Manifest(
            model=_get(d, "model", str, "manifest"), weights=_get(d, "weights", str, "manifest"),
            config=ConfigRef(_get(c, "name", str, "config"), _get(c, "device", str, "config"),
                             _get(c, "hash", str, "config")),
            element_bytes={k: _get(eb, k, int, "element_bytes")
                           for k in ("data", "weight", "bias")},
            ddr_size=_get(d, "ddr_size", int, "manifest"),
            arena=_pair(_ints(_get(d, "arena", list, "manifest"), "arena", 2)),
            regions=tuple(Region.from_dict(k, r)
                          for k, r in enumerate(_get(d, "regions", list, "manifest"))),
            tensors=tensors,
            alias={str(k): str(v) for k, v in _get(d, "alias", dict, "manifest").items()},
            input=_get(_get(d, "input", dict, "manifest"), "tensor", str, "input"),
            outputs=tuple((_get(o, "name", str, f"outputs[{k}]"),
                           _get(o, "tensor", str, f"outputs[{k}]"))
                          for k, o in enumerate(_get(d, "outputs", list, "manifest"))),
            layers=tuple(StageEntry.from_dict(k, s)
                         for k, s in enumerate(_get(d, "layers", list, "manifest"))),
            schedule=tuple(_step_from_dict(k, s)
                           for k, s in enumerate(_get(d, "schedule", list, "manifest"))),
            partition=Partition(*(_strs(_get(part, k, list, "partition"), f"partition.{k}")
                                  for k in ("accelerator", "host", "folded"))),
            program=ProgramStats(*(_get(p, k, int, "program") for k in (
                "instructions", "sync_nops", "load", "calc", "save", "end"))),
            host_transforms=tuple(InputTransform.from_dict(t) for t in _get(
                d, "host_transforms", list, "manifest")),
        )


# --- the artifact --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compiled:
    """A program compiled for one AcceleratorConfig, with its DDR image and manifest.
    Built only when the three agree: config hash of program and manifest, DDR image size."""

    config: AcceleratorConfig
    program: Program
    ddr_image: bytes
    manifest: Manifest
    choices: tuple[Choice, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        h = self.config.hash()
        if self.program.config_hash != h:
            raise InputError(f"program was compiled for a different accelerator configuration"
                             f" than {self.config.name!r} (config hash mismatch)")
        if self.manifest.config.hash != h.hex():
            raise InputError(f"manifest was written for a different accelerator configuration"
                             f" than {self.config.name!r} (config hash mismatch)")
        if len(self.ddr_image) != self.manifest.ddr_size:
            raise InputError(f"DDR image is {len(self.ddr_image)} bytes, the manifest says"
                             f" {self.manifest.ddr_size}")
        if len(self.program.instructions) != self.manifest.program.instructions:
            raise InputError(f"program has {len(self.program.instructions)} instructions, the"
                             f" manifest says {self.manifest.program.instructions}")

    def program_bytes(self) -> bytes:
        return encode_program(self.program)

    def write(self, outdir: str | Path) -> dict[str, Path]:
        out = Path(outdir)
        return {"program": atomic_write_bytes(out / "program.bin", self.program_bytes()),
                "ddr": atomic_write_bytes(out / "ddr.bin", self.ddr_image),
                "manifest": atomic_write_json(out / "manifest.json", self.manifest.to_dict())}


_FILES = ("program.bin", "ddr.bin", "manifest.json")


def _files(outdir: str | Path) -> dict[str, Path]:
    path = Path(outdir)
    files = {name: path / name for name in _FILES}
    for name, f in files.items():
        if not f.is_file():
            raise InputError(f"{path}: not a compiled output directory ({name} missing)")
    return files


def read_manifest(outdir: str | Path) -> Manifest:
    """The manifest of a compiled output directory (e.g. to learn its config before loading)."""
    f = _files(outdir)["manifest.json"]
    try:
        d = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{f}: invalid JSON: {e}") from None
    return Manifest.from_dict(d)


def load_compiled(outdir: str | Path, cfg: AcceleratorConfig,
                  manifest: Manifest | None = None) -> Compiled:
    """Read a compiled output directory (program.bin, ddr.bin, manifest.json) for `cfg`;
    `manifest`: the directory's manifest when the caller has already read it."""
    files = _files(outdir)
    program = decode_program(files["program.bin"].read_bytes())   # Compiled checks the hash
    if manifest is None:
        manifest = read_manifest(outdir)
    return Compiled(cfg, program, files["ddr.bin"].read_bytes(), manifest)
