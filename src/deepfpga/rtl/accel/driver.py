"""Host driver: a compiled program (a `Compiled`) on the RTL under the Verilator harness, the
way a Zynq host would run it.

    with RtlRunner(compiled) as runner:            # build=build_accelerator(cfg) by default
        res = runner.run(x_int)                    # one sample or a batch (N, *shape)
    res = run_compiled(compiled, x_int)            # the same, in one call

`compiled` comes from `compile_model`/`compile_architecture`, or from a `deepfpga compile`
output directory through `deepfpga.compiler.load_compiled(path, cfg)`; its config is the
accelerator that runs (a test that damages a program passes
`dataclasses.replace(compiled, program=...)`). `build` is the Verilator model of that config
(`build_accelerator(compiled.config)`, cached); `max_cycles` bounds each segment. The result
(`RtlResult`) has the structure of the functional simulator's.

Per image: the compiler's DDR image goes to DDR address 0, the instruction words (the program
file without its 48-byte header) to the first 64-byte boundary after it, the input tensor to its
region (and rearranged for space-to-depth layers: Manifest.host_writes, as the functional
simulator writes it; host layers' results the same way). For each accelerator segment of the
manifest's schedule the driver writes PROG_ADDR (the segment's first word) and PROG_COUNT (the
words from there to the program's end), starts the accelerator, waits for irq and reads the
registers; between segments it runs the host layers with the functional simulator's own host code
(`sim.functional.host_step`) and writes their results into DDR. Every stage output is copied out
of DDR by the harness when the stage's last SAVE ends (a later stage may reuse the region in the
same segment), so the result has the structure of the functional simulator's: `layers[tensor]`,
`outputs`, `saturations[layer]`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfpga.compiler.artifact import AccelStep, StageEntry, TensorEntry
from deepfpga.compiler.layout import align, pack_array, unpack
from deepfpga.errors import InputError
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.isa import INSTRUCTION_BYTES, Calc, Instruction, Save
from deepfpga.rtl.accel.spec import ErrorCode, Reg, Status
from deepfpga.rtl.accel.verilator import Build, Harness, HarnessError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled

PROGRAM_ALIGN = 64
DEFAULT_MAX_CYCLES = 1 << 34      # per segment: a hung design stops here


def build_accelerator(cfg: AcceleratorConfig, verilog: str | None = None, **kwargs: Any) -> Build:
    """The Verilator model of the accelerator generated from `cfg` (cached); `verilog`: its
    Verilog when the caller already has it."""
    from deepfpga.rtl.accel.verilator import build_model

    if verilog is None:
        from deepfpga.rtl.accel.top import verilog_text

        verilog = verilog_text(cfg)
    return build_model(verilog, cfg.axi_data_bits, **kwargs)


@dataclass(frozen=True)
class Segment:
    """One accelerator segment's run (of one image): global instruction indices."""

    segment: int
    first: int
    end: int                 # the END that raised DONE (-1 if none)
    cycles: int              # CYCLES register
    sat_count: int           # SAT_COUNT register
    error: ErrorCode
    error_index: int         # global index of the failing instruction (-1: none)


@dataclass(frozen=True)
class RtlResult:
    """What the RTL computed, shaped like `sim.functional.FunctionalResult` (leading batch axis
    when the input had one), plus the hardware's view: final DDR images, the error register,
    cycles per stage (from the trace) and per image."""

    outputs: Mapping[str, np.ndarray]
    layers: Mapping[str, np.ndarray]
    saturations: Mapping[str, int]
    executed: int                               # instructions run (the first image)
    ddr: np.ndarray                             # (batch, ddr_size) or (ddr_size,)
    error: ErrorCode = ErrorCode.NONE
    error_index: int = -1
    error_message: str = ""
    cycles: tuple[int, ...] = ()                # accelerator cycles per image (sum of segments)
    layer_cycles: Mapping[str, int] = field(default_factory=dict)
    segments: tuple[Segment, ...] = ()          # of the first image
    trace: Mapping[str, np.ndarray] = field(default_factory=dict)   # first image, global

    @property
    def ok(self) -> bool:
        return self.error == ErrorCode.NONE and not self.error_message

    @property
    def output(self) -> np.ndarray:
        if len(self.outputs) != 1:
            raise InputError(f"graph has {len(self.outputs)} outputs: use .outputs")
        return next(iter(self.outputs.values()))


class RtlRunner:
    """Runs one compiled program on the RTL, image after image, with one harness instance
    (the module docstring shows the use; close it, or use it as a context manager)."""

    def __init__(self, compiled: Compiled, build: Build | None = None, *,
                 max_cycles: int = DEFAULT_MAX_CYCLES):
        # `compiled` was checked (config hash, DDR image size) when it was built or loaded
        self.compiled = compiled
        self.program, self.manifest = compiled.program, compiled.manifest
        self.cfg: AcceleratorConfig = compiled.config
        cfg = self.cfg
        self.ddr_image = compiled.ddr_image
        program_bytes = compiled.program_bytes()
        n = len(self.program.instructions)
        self.words = program_bytes[len(program_bytes) - n * INSTRUCTION_BYTES:]
        self.prog_base = align(len(self.ddr_image), PROGRAM_ALIGN)
        self.max_cycles = max_cycles
        self.build = build or build_accelerator(cfg)
        size = align(self.prog_base + len(self.words), 4096)
        self.harness = Harness.for_config(self.build, cfg, size)

    def close(self) -> None:
        self.harness.close()

    def __enter__(self) -> RtlRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, x_int: np.ndarray) -> RtlResult:
        """`x_int`: integers in the input format, one sample or a batch (N, *shape)."""
        from deepfpga.sim.functional import check_input

        x, single = check_input(self.manifest, x_int)
        per = [self._image(x[i:i + 1].astype(np.int64)) for i in range(len(x))]
        first = per[0]
        bad = next((r for r in per if not r.ok), None)
        if bad is not None:
            return bad if not single else _unbatch(bad)
        names = list(first.layers)
        layers = {k: np.concatenate([r.layers[k] for r in per]) for k in names}
        outputs = {k: np.concatenate([r.outputs[k] for r in per]) for k in first.outputs}
        sats: dict[str, int] = {}
        for r in per:
            for k, v in r.saturations.items():
                sats[k] = sats.get(k, 0) + v
        res = RtlResult(outputs, layers, sats, first.executed, np.stack([r.ddr for r in per]),
                        cycles=tuple(c for r in per for c in r.cycles),
                        layer_cycles=first.layer_cycles, segments=first.segments,
                        trace=first.trace)
        return _unbatch(res) if single else res

    # --- one image ---------------------------------------------------------------------------
    def _image(self, x: np.ndarray) -> RtlResult:
        from deepfpga.sim.functional import host_step

        h, cfg, manifest = self.harness, self.cfg, self.manifest
        ins = self.program.instructions
        n_ins = len(ins)
        tensors = manifest.tensors
        db = cfg.data_bytes
        h.write_ddr(0, self.ddr_image)
        h.write_ddr(self.prog_base, self.words)
        for address, values in manifest.host_writes(manifest.input, x):  # as the program wants
            h.write_ddr(address, pack_array(values, db))
        host: dict[str, np.ndarray] = {manifest.input: x}
        layers: dict[str, np.ndarray] = {}
        sats: dict[str, int] = {}
        stages = {d.name: d for d in manifest.layers}
        n_trace = {k: np.full(n_ins, -1, dtype=np.int64) for k in ("start", "end")}
        n_trace["sat"] = np.zeros(n_ins, dtype=np.int64)
        n_trace["engine"] = np.full(n_ins, -1, dtype=np.int64)
        segments: list[Segment] = []
        layer_cycles: dict[str, int] = {}
        offset = executed = 0

        def from_ddr(name: str) -> np.ndarray:
            t = tensors[name]
            count = int(np.prod(t.shape))
            raw = h.read_ddr(t.address, count * db)
            return unpack(raw, db).reshape(1, *t.shape)

        def failed(code: ErrorCode, index: int, message: str) -> RtlResult:
            return RtlResult({}, layers, sats, executed, h.read_ddr(0, len(self.ddr_image)),
                             code, index, message, (offset,), layer_cycles, tuple(segments),
                             n_trace)

        for step in manifest.schedule:
            if not isinstance(step, AccelStep):
                y, nsat = host_step(step, tensors, host, from_ddr, 1)
                sats[step.layer] = nsat
                layers[step.output] = y
                host[step.output] = y
                for address, values in manifest.host_writes(step.output, np.asarray(y)):
                    h.write_ddr(address, pack_array(values, db))
                continue
            a, b = step.instructions
            watches = self._watch_stages(step, stages, a)
            h.write_reg(Reg.PROG_ADDR, self.prog_base + a * INSTRUCTION_BYTES)
            h.write_reg(Reg.PROG_COUNT, n_ins - a)
            run = h.run(b - a, self.max_cycles)
            if run.status != "irq":
                why = run.error if run.status == "refused" else \
                    f"no irq within {self.max_cycles:,} cycles"
                raise HarnessError(f"segment {step.segment} (instructions [{a}, {b})): {why}")
            status = h.read_reg(Reg.STATUS)
            code = ErrorCode(h.read_reg(Reg.ERROR_CODE)) if status & Status.ERROR else \
                ErrorCode.NONE
            cycles = h.read_reg(Reg.CYCLES_LO) | h.read_reg(Reg.CYCLES_HI) << 32
            end = a + h.read_reg(Reg.END_INDEX) if status & Status.DONE and not code else -1
            err_at = a + h.read_reg(Reg.ERROR_INDEX) if code else -1
            segments.append(Segment(step.segment, a, end, cycles,
                                    h.read_reg(Reg.SAT_COUNT), code, err_at))
            for k, arr in (("start", run.start), ("end", run.end)):
                n_trace[k][a:b] = np.where(arr >= 0, arr + offset, -1)
            n_trace["sat"][a:b] = run.sat
            n_trace["engine"][a:b] = run.engine
            offset += cycles
            if code:
                what = type(ins[err_at]).__name__.upper() if 0 <= err_at < n_ins else "?"
                return failed(code, err_at, f"instruction {err_at} ({what}): {code.name}")
            if end != b - 1:
                return failed(ErrorCode.NONE, end, f"segment {step.segment} ended at"
                              f" instruction {end}, the manifest says {b - 1}")
            executed += b - a
            for name in step.stages:
                d = stages[name]
                wid = watches.get(name)
                data = h.watched(wid) if wid is not None else None
                t = tensors[d.output]
                layers[d.output] = (unpack(data, db).reshape(1, *t.shape) if data is not None
                                    else from_ddr(d.output))
                s0, s1 = d.instructions
                layer_cycles[name] = _span(n_trace, s0, s1)
            _stage_saturations(ins, a, b, n_trace["sat"], stages, sats)
        outputs = {}
        for o, t in manifest.outputs:
            outputs[o] = layers[t] if t in layers else host[t] if t in host else from_ddr(t)
        return RtlResult(outputs, layers, sats, executed, h.read_ddr(0, len(self.ddr_image)),
                         cycles=(offset,), layer_cycles=layer_cycles, segments=tuple(segments),
                         trace=n_trace)

    def _watch_stages(self, step: AccelStep, stages: Mapping[str, StageEntry],
                      a: int) -> dict[str, int]:
        """Watch each stage output of this segment at the stage's last SAVE."""
        h = self.harness
        h.clear_watches()
        ins = self.program.instructions
        out = {}
        for name in step.stages:
            d = stages[name]
            s0, s1 = d.instructions
            last = next((k for k in range(s1 - 1, s0 - 1, -1) if isinstance(ins[k], Save)), None)
            t: TensorEntry = self.manifest.tensors[d.output]
            if last is None or not t.on_ddr:
                continue
            n = int(np.prod(t.shape)) * self.cfg.data_bytes
            out[name] = h.watch(last - a, t.address, n)
        return out


def _span(trace: Mapping[str, np.ndarray], s0: int, s1: int) -> int:
    st, en = trace["start"][s0:s1], trace["end"][s0:s1]
    st, en = st[st >= 0], en[en >= 0]
    return int(en.max() - st.min() + 1) if len(st) and len(en) else 0


def _stage_saturations(ins: tuple[Instruction, ...], a: int, b: int, sat: np.ndarray,
                       stages: Mapping[str, StageEntry], out: dict[str, int]) -> None:
    by_index = {d.index: d.name for d in stages.values()}
    for k in range(a, b):
        if isinstance(ins[k], Calc) and ins[k].layer in by_index:
            name = by_index[ins[k].layer]
            out[name] = out.get(name, 0) + int(sat[k])
    for name in by_index.values():
        out.setdefault(name, 0)


def _unbatch(r: RtlResult) -> RtlResult:
    return dataclasses.replace(
        r, outputs={k: v[0] for k, v in r.outputs.items()},
        layers={k: v[0] for k, v in r.layers.items()},
        ddr=r.ddr[0] if r.ddr.ndim == 2 else r.ddr)


def run_compiled(compiled: Compiled, x_int: np.ndarray, build: Build | None = None, *,
                 max_cycles: int = DEFAULT_MAX_CYCLES) -> RtlResult:
    """One call: `RtlRunner(compiled, build, max_cycles=...).run(x_int)`, then closed."""
    with RtlRunner(compiled, build, max_cycles=max_cycles) as r:
        return r.run(x_int)
