"""The compiler: quantized network (or architecture) + accelerator config → program, DDR image,
manifest. Steps: map (fuse, partition), tile (choose per stage), allocate DDR, arrange weights,
generate instructions, describe everything in the manifest."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from deepfpga.compiler import layout, s2d
from deepfpga.compiler.alloc import Region, check_no_overlap, first_fit
from deepfpga.compiler.artifact import (
    AccelStep,
    Compiled,
    ConfigRef,
    HostEntry,
    Manifest,
    Partition,
    ProgramStats,
    ScheduleStep,
    StageEntry,
    StageFormats,
    TensorEntry,
)
from deepfpga.compiler.builder import Builder
from deepfpga.compiler.codegen import Placement, emit_conv, emit_fc
from deepfpga.compiler.mapping import HostStep, ModelInput, NetworkMapping, Stage, map_network
from deepfpga.compiler.tiling import Choice, Tiling, choose
from deepfpga.errors import InputError
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.arch import DDR_BYTES_MAX
from deepfpga.hw.isa import Program, program_stats
from deepfpga.ir import INPUT, Conv2d, Graph, Linear
from deepfpga.ir.passes import fold_batchnorm
from deepfpga.quant.bits import BitPreset
from deepfpga.quant.fixedpoint import FixedFormat
from deepfpga.quant.qmodel import PASSTHROUGH_KINDS, LayerFormats, QuantizedModel

__all__ = ["Compiled", "architecture_model", "compile_architecture", "compile_model", "plan"]


Force = Mapping[str, Tiling]
SpaceToDepth = Literal["auto", "off", "on"]


def compile_model(qmodel: QuantizedModel, cfg: AcceleratorConfig, *,
                  force: Force | None = None, space_to_depth: SpaceToDepth = "auto"
                  ) -> Compiled:
    """Compile a quantized model with its weights. `force` maps stage (CONV/FC layer) names to
    tilings to use instead of the tiler's choice (tests, experiments); each is checked.
    `space_to_depth`: run the first layer on a host-arranged input (deepfpga.compiler.s2d)
    when the cost model says it is faster ("auto"), never ("off"), or whenever it can ("on",
    the fastest variant)."""
    model = ModelInput(qmodel.graph, qmodel.input_format, qmodel.formats, qmodel.weights)
    return _compile(model, cfg, force or {}, space_to_depth)


def architecture_model(graph: Graph, cfg: AcceleratorConfig, bits: BitPreset | None = None
                       ) -> ModelInput:
    """A graph without weights as a model: every tensor at the config's widths, fl 0 (shifts 0),
    weights all zero. Enough for compilation and timing, not for execution. Batch norms are
    folded into their convolutions, as quantization would. `bits`: CONV and FC weights at the
    preset's widths (capped at the config's), e.g. 8/4's 4-bit FC weights."""
    graph = fold_batchnorm(graph)
    fmt_d = FixedFormat(cfg.data_bits, 0)
    formats: dict[str, LayerFormats] = {}
    out_fmt = {INPUT: fmt_d}
    for layer in graph.layers:
        fin = out_fmt[layer.inputs[0]] if layer.inputs else fmt_d
        if isinstance(layer, Conv2d | Linear):
            wbits = cfg.weight_bits
            if bits is not None:
                wbits = min(wbits, bits.fc_weight if isinstance(layer, Linear)
                            else bits.conv_weight)
            f = LayerFormats(fin, fmt_d, FixedFormat(wbits, 0),
                             FixedFormat(cfg.bias_bits, 0) if layer.bias else None)
        elif layer.kind in PASSTHROUGH_KINDS:
            f = LayerFormats(fin, fin)
        else:
            f = LayerFormats(fin, fmt_d)
        formats[layer.name] = f
        out_fmt[layer.name] = f.output
    return ModelInput(graph.without_weights(), fmt_d, formats, None)


def compile_architecture(graph: Graph, cfg: AcceleratorConfig, *,
                         force: Force | None = None, bits: BitPreset | None = None,
                         space_to_depth: SpaceToDepth = "auto") -> Compiled:
    """Compile a network's structure only (zoo architectures): zero weights, config widths
    (weights at `bits`' widths when given)."""
    return _compile(architecture_model(graph, cfg, bits), cfg, force or {}, space_to_depth)


# --- the pipeline --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """Everything decided before code generation: stages, tilings, DDR regions, and the
    model as compiled (its first layer's weights rearranged under an input transform)."""

    mapping: NetworkMapping
    choices: tuple[Choice, ...]
    regions: dict[str, Region]
    placements: dict[str, Placement]
    model: ModelInput
    host_transforms: tuple[s2d.InputTransform, ...] = ()

    @property
    def input_transform(self) -> s2d.InputTransform | None:
        return next((t for t in self.host_transforms if t.reads == INPUT), None)

    @property
    def ddr_size(self) -> int:
        return layout.align(max((r.end for r in self.regions.values()), default=0))


def plan(model: ModelInput, cfg: AcceleratorConfig, force: Force | None = None,
         space_to_depth: SpaceToDepth = "auto") -> Plan:
    """Map, choose the input transform, tile and allocate (no instructions yet). The transform
    is chosen without `force` (a forced tiling applies to the stage as planned without it)."""
    if space_to_depth not in ("auto", "off", "on"):
        raise InputError(f"space_to_depth must be 'auto', 'off' or 'on', got {space_to_depth!r}")
    force = force or {}
    m = map_network(model, cfg)
    unknown = set(force) - {s.name for s in m.stages}
    if unknown:
        raise InputError(f"forced tiling for unknown stage(s): {sorted(unknown)}"
                         f" (stages: {[s.name for s in m.stages]})")
    transforms = []
    plain = model
    for st in s2d.candidates(m) if space_to_depth != "off" else ():
        tr = _host_transform(st, cfg, space_to_depth)
        if tr is not None:
            m, model = s2d.apply(m, model, st, tr)
            transforms.append(tr)
    choices = tuple(choose(st, cfg, force.get(st.name)) for st in m.stages)
    try:
        regions, placements = _allocate(m, choices, cfg)
    except InputError:
        if not transforms:
            raise
        return plan(plain, cfg, force, "off")    # the rearranged copies do not fit the DDR
    return Plan(m, choices, regions, placements, model, tuple(transforms))


def _host_transform(st: Stage, cfg: AcceleratorConfig, mode: SpaceToDepth
                    ) -> s2d.InputTransform | None:
    """The variant of least modelled time (the stage's, plus the host's DDR traffic for the
    transform at the DDR bandwidth); None when the layer as it is wins ("auto") or no variant
    fits."""
    hz, bw = cfg.clock_mhz * 1e6, cfg.ddr_bandwidth_gbps * 1e9
    best, best_s = None, float("inf")
    if mode == "auto":
        with contextlib.suppress(InputError):      # if the layer does not fit, a variant may
            best_s = choose(st, cfg).costs["cycles"] / hz
    for tr in s2d.variants(st):
        try:
            c = choose(s2d.transformed_stage(st, tr), cfg)
        except InputError:
            continue
        t = c.costs["cycles"] / hz + tr.host_bytes(cfg.data_bytes) / bw
        if t < best_s:
            best, best_s = tr, t
    return best


def _compile(model: ModelInput, cfg: AcceleratorConfig, force: Force,
             space_to_depth: SpaceToDepth) -> Compiled:
    p = plan(model, cfg, force, space_to_depth)
    m, choices, regions, model = p.mapping, p.choices, p.regions, p.model
    image = _image(m, choices, regions, model, cfg)
    bld = Builder(_overlaps(regions))
    ranges: dict[str, tuple[int, int]] = {}
    schedule: list[ScheduleStep] = []
    seg_start, seg_stages, nseg = 0, [], 0

    def close_segment() -> None:
        nonlocal seg_start, seg_stages, nseg
        bld.end(layer=bld.layer)
        schedule.append(AccelStep(nseg, (seg_start, len(bld)), tuple(seg_stages)))
        seg_start, seg_stages, nseg = len(bld), [], nseg + 1

    for item in m.schedule:
        if isinstance(item, Stage):
            a = len(bld)
            bld.layer = item.index
            t = choices[item.index].tiling
            (emit_conv if item.kind == "conv" else emit_fc)(bld, item, t, cfg,
                                                            p.placements[item.name])
            ranges[item.name] = (a, len(bld))
            seg_stages.append(item.name)
        else:
            if seg_stages:
                close_segment()
            schedule.append(_host_entry(item))
    if seg_stages or not len(bld):
        close_segment()
    program = Program(cfg.hash(), tuple(bld.instructions()))
    manifest = _manifest(m, model, cfg, choices, regions, ranges, tuple(schedule), program,
                         bld.nops, p.host_transforms)
    check_no_overlap(manifest.regions, manifest.ddr_size)
    return Compiled(cfg, program, image, manifest, choices)


def _host_entry(h: HostStep) -> HostEntry:
    return HostEntry(h.layer, h.kind, h.inputs, h.input_shapes, h.output, h.spec, h.in_fmts,
                     h.out_fmt, h.graph_output, h.float_output)


def _allocate(m: NetworkMapping, choices: tuple[Choice, ...], cfg: AcceleratorConfig
              ) -> tuple[dict[str, Region], dict[str, Placement]]:
    end_pos = len(m.schedule)
    regions: dict[str, Region] = {}
    addr = 0
    for st in m.stages:
        size = layout.weight_region_bytes(st, choices[st.index].tiling,
                                          layout.WeightStore.of(st, cfg))
        regions[f"w:{st.name}"] = Region(f"w:{st.name}", "weights", addr, size, -1, end_pos,
                                         False)
        addr = layout.align(addr + size)
        if st.has_bias:
            size = st.out_channels * cfg.bias_bytes
            regions[f"b:{st.name}"] = Region(f"b:{st.name}", "bias", addr, size, -1, end_pos,
                                             False)
            addr = layout.align(addr + size)
    base = addr
    reqs = []
    for t in sorted((t for t in m.tensors.values() if t.on_ddr), key=lambda t: t.producer):
        last = end_pos if t.is_output else max((t.producer, *t.readers))
        reqs.append((f"t:{t.name}", t.size * cfg.data_bytes, t.producer, last))
    # largest first: big maps take the low addresses, small ones fill around them
    placed = first_fit(sorted(reqs, key=lambda r: (-r[1], r[2])), base)
    stage_outputs = {st.output for st in m.stages}
    for (name, size, first, last) in reqs:
        tname = name[2:]
        kind = ("input" if m.tensors[tname].producer < 0 else "output" if m.tensors[tname].is_output
                else "fmap" if tname in stage_outputs else "host")
        regions[name] = Region(name, kind, placed[name], size, first, last,
                               tname in stage_outputs)
    if max((r.end for r in regions.values()), default=0) >= DDR_BYTES_MAX:
        raise InputError(f"the model needs more than the {DDR_BYTES_MAX:,} bytes of DDR the"
                         " instructions' DDR addresses reach")
    placements = {}
    for st in m.stages:
        i, o = regions[f"t:{st.input}"], regions[f"t:{st.output}"]
        w = regions[f"w:{st.name}"]
        b = regions.get(f"b:{st.name}", w)
        placements[st.name] = Placement(i.name, i.start, o.name, o.start, w.name, w.start,
                                        b.name, b.start)
    return regions, placements


def _overlaps(regions: dict[str, Region]) -> dict[str, set[str]]:
    rs = list(regions.values())
    return {a.name: {b.name for b in rs if a.start < b.end and b.start < a.end} | {a.name}
            for a in rs}


def _image(m: NetworkMapping, choices: tuple[Choice, ...], regions: dict[str, Region],
           model: ModelInput, cfg: AcceleratorConfig) -> bytes:
    size = layout.align(max((r.end for r in regions.values()), default=0))
    if model.weights is None:
        return bytes(size)
    image = bytearray(size)
    view = np.frombuffer(image, dtype=np.uint8)
    for st in m.stages:
        arrays = model.weights[st.name]
        t = choices[st.index].tiling
        r = regions[f"w:{st.name}"]
        store = layout.WeightStore.of(st, cfg)
        offs = layout.block_offsets(st, t, store)
        for key, data in layout.encoded_blocks(st, t, arrays["weight"], store):
            view[r.start + offs[key]:r.start + offs[key] + len(data)] = data
        if st.has_bias:
            data = layout.pack_array(arrays["bias"], cfg.bias_bytes)
            r = regions[f"b:{st.name}"]
            view[r.start:r.start + len(data)] = data
    return bytes(image)


def _manifest(m: NetworkMapping, model: ModelInput, cfg: AcceleratorConfig,
              choices: tuple[Choice, ...], regions: dict[str, Region],
              ranges: dict[str, tuple[int, int]], schedule: tuple[ScheduleStep, ...],
              program: Program, nops: int, transforms: tuple[s2d.InputTransform, ...]
              ) -> Manifest:
    arena = [r for r in regions.values() if r.kind not in ("weights", "bias")]
    size = layout.align(max((r.end for r in regions.values()), default=0))
    tensors = {}
    for t in m.tensors.values():
        r = regions.get(f"t:{t.name}")
        tensors[t.name] = TensorEntry(t.name, t.shape, t.fmt, t.on_ddr,
                                      r.name if r else None, r.start if r else None,
                                      t.producer, t.readers, t.is_output)
    layers = []
    for st in m.stages:
        ch = choices[st.index]
        layers.append(StageEntry(
            st.index, st.name, st.kind, st.layers, st.input, st.output, st.in_shape,
            st.out_shape, st.conv_out, st.kernel, st.stride, st.padding, st.relu, st.pool,
            st.has_bias, StageFormats(st.in_fmt, st.w_fmt, st.b_fmt, st.out_fmt),
            st.bias_shift, st.data_shift, st.macs, ch.tiling, ranges[st.name],
            ch.costs["seconds"], ch.costs, m.positions[st.name]))
    stats = {k.lower(): v for k, v in program_stats(program.instructions).items()}
    return Manifest(
        model=model.graph.name,
        weights="real" if model.weights is not None else "zero (architecture only)",
        config=ConfigRef(cfg.name, cfg.device, cfg.hash().hex()),
        element_bytes={"data": cfg.data_bytes, "weight": cfg.weight_bytes,
                       "bias": cfg.bias_bytes},
        ddr_size=size,
        arena=(min((r.start for r in arena), default=size), size),
        regions=tuple(sorted(regions.values(), key=lambda r: r.start)),
        tensors=tensors, alias=dict(m.alias), input=INPUT,
        outputs=tuple((o, m.alias[o]) for o in m.outputs),
        layers=tuple(layers), schedule=schedule,
        partition=Partition(tuple(name for st in m.stages for name in st.layers),
                            m.host_layers, m.folded),
        program=ProgramStats(len(program.instructions), nops, stats["load"], stats["calc"],
                             stats["save"], stats["end"]),
        host_transforms=transforms,
    )
