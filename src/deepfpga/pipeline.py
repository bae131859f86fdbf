"""The end-to-end pipeline behind `deepfpga run`, as a list of named steps (FINN-style).

Each step is a function `step(run: RunConfig, state: RunState) -> (RunState, note)` that returns
a new state with its results added; `run_flow` runs the steps in order, records each step's wall
time and note, and does nothing else. Each step calls one module that does the work:
deepfpga.quant.bits (bit-width planning), deepfpga.sim.check (bit-exactness),
deepfpga.report.summary (the summary). The default steps:

 1. target      load the accelerator config (preset or TOML)
 2. model       load the float model (zoo name, .onnx, float-model .npz, pkg.mod:factory)
 3. data        calibration images (training split) and test images (test split)
 4. quantize    dynamic-precision quantization (paper §5) on the calibration images, at widths
                that fit the target
 5. compile     map, tile, allocate, generate the program and the DDR image
 6. float       the float model's accuracy on the test images (the comparison baseline)
 7. simulate    the test images through the functional simulator in batches; every tensor the
                accelerator writes is compared value by value with the bit-exact reference
                executor; accuracy of the simulated outputs
 8. timing      the timing simulator: per-layer latency, compute vs transfer, GOP/s, fps
 9. summary     everything above as one JSON-ready dict (what `summary.json` holds)
10. report      `report.html` and `summary.json` in the output directory

A step never mutates the state; a failing step raises (bad input: `InputError`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfpga.errors import InputError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled
    from deepfpga.compiler.compile import SpaceToDepth
    from deepfpga.data.dataset import Dataset
    from deepfpga.hw.accelerator import AcceleratorConfig
    from deepfpga.ir.graph import Graph
    from deepfpga.quant.evaluate import EvalResult
    from deepfpga.quant.qmodel import QuantizedModel
    from deepfpga.report.breakdown import TimeSplit
    from deepfpga.sim.check import SimResult
    from deepfpga.sim.timing import Timing

DEFAULT_MODEL = "fmnist-vgg"
DEFAULT_TARGET = "zedboard"
DEFAULT_DATA = "fashion-mnist"
DEFAULT_IMAGES = 500
DEFAULT_CALIB = 200
DEFAULT_BATCH = 100


@dataclass(frozen=True)
class RunConfig:
    """Everything `deepfpga run` was asked to do."""

    model: str = DEFAULT_MODEL
    target: str = DEFAULT_TARGET
    data: str = DEFAULT_DATA
    images: int = DEFAULT_IMAGES
    bits: str = "8"
    calib_size: int = DEFAULT_CALIB
    batch_size: int = DEFAULT_BATCH
    out: Path | None = Path("out")
    progress: bool = False
    command: str = ""
    space_to_depth: SpaceToDepth = "auto"     # compile_model's (auto, off, on)

    def request(self) -> dict[str, Any]:
        """What the run was asked, as the summary records it."""
        return {"model": self.model, "target": self.target, "data": self.data,
                "images": self.images, "bits": self.bits, "calib_size": self.calib_size,
                "batch_size": self.batch_size, "space_to_depth": self.space_to_depth}

    def __post_init__(self) -> None:
        if self.space_to_depth not in ("auto", "off", "on"):
            raise InputError(f"space-to-depth must be auto, off or on, got"
                             f" {self.space_to_depth!r}")
        for key in ("images", "calib_size", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InputError(f"{key.replace('_', '-')} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class StepRecord:
    name: str
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class RunState:
    """What the steps have produced so far (None: not yet)."""

    hw: AcceleratorConfig | None = None
    graph: Graph | None = None              # the float model
    calib: Dataset | None = None
    test: Dataset | None = None
    qmodel: QuantizedModel | None = None
    compiled: Compiled | None = None
    float_eval: EvalResult | None = None
    sim: SimResult | None = None
    timing: Timing | None = None
    splits: tuple[TimeSplit, ...] = ()      # per timed layer
    summary: dict[str, Any] | None = None
    files: Mapping[str, Path] = field(default_factory=dict)
    steps: tuple[StepRecord, ...] = ()

    def add(self, **changes: Any) -> RunState:
        return dataclasses.replace(self, **changes)

    def need(self, *names: str) -> tuple[Any, ...]:
        """The named results, refusing to go on when an earlier step has not produced one."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise InputError(f"pipeline: step needs {', '.join(missing)} from an earlier step")
        return tuple(getattr(self, n) for n in names)


Step = Callable[[RunConfig, RunState], tuple[RunState, str]]


# --- steps ---------------------------------------------------------------------------------------

def step_target(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.hw.config import load_config
    from deepfpga.quant.bits import check_bits_fit

    hw = load_config(run.target)
    check_bits_fit(run.bits, hw)
    return st.add(hw=hw), (f"{hw.name}: {hw.device}, {hw.clock_mhz:g} MHz, {hw.num_pe}x"
                           f"{hw.convolvers_per_pe} convolvers, {hw.data_bits}-bit")


def step_model(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.interchange.onnx_quant import load_prequantized
    from deepfpga.models import load_model

    pre = load_prequantized(run.model)  # a QONNX / QDQ file: formats from the file
    if pre is not None:
        return st.add(graph=pre.graph, qmodel=pre.qmodel), (
            f"{pre.graph.name}: {len(pre.graph.layers)} layers, quantized ({pre.kind})")
    graph = load_model(run.model)
    graph.require_weights()
    return st.add(graph=graph), (f"{graph.name}: {len(graph.layers)} layers, input"
                                 f" {'x'.join(map(str, graph.input_shape))}")


def _dataset(spec: str, split: str, limit: int, shape: tuple[int, ...]) -> Dataset:
    from deepfpga.data import load_dataset

    kwargs: dict[str, Any] = {}
    if len(shape) == 3 and Path(spec).is_dir():  # image folders are converted to the model input
        kwargs = {"channels": shape[0], "size": (shape[1], shape[2])}
    ds = load_dataset(spec, split, limit, **kwargs)
    if ds.sample_shape != tuple(shape):
        raise InputError(f"data {spec!r} has images of shape {ds.sample_shape}; the model needs"
                         f" {tuple(shape)}")
    return ds


def step_data(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    (graph,) = st.need("graph")
    calib = _dataset(run.data, "train", run.calib_size, graph.input_shape)
    test = _dataset(run.data, "test", run.images, graph.input_shape)
    note = f"{len(calib)} calibration (train) + {len(test)} test images of {test.name}"
    if len(test) < run.images:
        note += f" (only {len(test)} available)"
    if calib.name == test.name:  # folders and .npz files have no train/test split
        note += "; one set without splits: calibration images are among the test images"
    return st.add(calib=calib, test=test), note


def step_quantize(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.quant.bits import bit_plan
    from deepfpga.quant.flow import quantize

    if st.qmodel is not None:
        return st, f"skipped: formats from the file, input {st.qmodel.input_format}"
    graph, calib, hw = st.need("graph", "calib", "hw")
    overrides = bit_plan(graph, run.bits, hw)
    q = quantize(graph, calib.x, bits=run.bits, overrides=overrides or None,
                 progress=run.progress)
    note = f"{run.bits}-bit dynamic precision, input {q.input_format}"
    if overrides:
        note += f", biases {hw.bias_bits}-bit to fit {hw.name}"
    return st.add(qmodel=q), note


def step_compile(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.compiler.compile import compile_model

    qmodel, hw = st.need("qmodel", "hw")
    c = compile_model(qmodel, hw, space_to_depth=run.space_to_depth)
    return st.add(compiled=c), (f"{len(c.manifest.layers)} stages,"
                                f" {len(c.program.instructions)} instructions, DDR image"
                                f" {len(c.ddr_image):,} bytes")


def step_float(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.quant.evaluate import evaluate

    graph, test = st.need("graph", "test")
    r = evaluate(graph, test.x, test.y, batch_size=run.batch_size, progress=run.progress)
    return st.add(float_eval=r), f"float32 top-1 {100 * r.top1:.2f} %"


def step_simulate(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.progress import progress
    from deepfpga.sim.check import check_bit_exact

    qmodel, compiled, test = st.need("qmodel", "compiled", "test")
    bar = progress(total=len(test), desc="simulating (images)", quiet=not run.progress)
    try:
        res = check_bit_exact(qmodel, compiled, test.x, test.y, run.batch_size, bar.update)
    finally:
        bar.close()
    verdict = "bit-exact" if res.bit_exact else f"{res.mismatches:,} mismatching values"
    return st.add(sim=res), (f"{res.images} images, {res.values_compared:,} values compared:"
                             f" {verdict}; top-1 {100 * res.correct1 / res.images:.2f} %")


def step_timing(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.report.breakdown import time_splits
    from deepfpga.sim.timing import simulate_timing

    (c,) = st.need("compiled")
    t = simulate_timing(c)
    splits = tuple(time_splits(c.program.instructions, t.start_cycles, t.end_cycles))
    return st.add(timing=t, splits=splits), (f"{t.seconds * 1e3:.3f} ms/frame, {t.fps:.1f} fps,"
                                             f" {t.gops:.2f} GOP/s")


def step_summary(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.report.summary import build_summary

    hw, graph, calib, test, qmodel, compiled, float_eval, sim, timing = st.need(
        "hw", "graph", "calib", "test", "qmodel", "compiled", "float_eval", "sim", "timing")
    s = build_summary(request=run.request(), command=run.command, hw=hw, graph=graph,
                      calib=calib, test=test, qmodel=qmodel, compiled=compiled,
                      float_eval=float_eval, sim=sim, timing=timing, splits=st.splits,
                      steps=[dataclasses.asdict(r) for r in st.steps])
    return st.add(summary=s), f"{len(s['layers'])} timed layers"


def step_report(run: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.report import write_report

    if run.out is None:
        return st, "skipped (no output directory)"
    (summary,) = st.need("summary")
    # the steps so far (the report step itself is still running, so it is not among them)
    summary = {**summary, "steps": [dataclasses.asdict(r) for r in st.steps]}
    files = write_report(run.out, summary)
    return st.add(summary=summary, files=files), f"{files['report']}, {files['summary']}"


STEPS: tuple[tuple[str, Step], ...] = (
    ("target", step_target),
    ("model", step_model),
    ("data", step_data),
    ("quantize", step_quantize),
    ("compile", step_compile),
    ("float", step_float),
    ("simulate", step_simulate),
    ("timing", step_timing),
    ("summary", step_summary),
    ("report", step_report),
)


def run_flow(run: RunConfig, steps: Sequence[tuple[str, Step]] = STEPS,
             on_step: Callable[[StepRecord], None] | None = None,
             state: RunState | None = None) -> RunState:
    """Run `steps` in order from `state` (empty by default); each step's time is recorded."""
    st = state or RunState()
    for name, fn in steps:
        t0 = time.perf_counter()
        st, note = fn(run, st)
        rec = StepRecord(name, time.perf_counter() - t0, note)
        st = st.add(steps=(*st.steps, rec))
        if on_step is not None:
            on_step(rec)
    return st
