"""The end-to-end flow behind `deepfpga run`, as a list of named steps (FINN-style).

Each step is a function `step(cfg: RunConfig, state: RunState) -> RunState` that returns a new
state with its results added; `run_flow` runs the steps in order and records each step's wall
time and a one-line note. The default flow:

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
import datetime as _dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfpga.errors import InputError

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

    def __post_init__(self) -> None:
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
class LayerCheck:
    """Bit-exactness of one tensor the accelerator writes (a stage output)."""

    tensor: str
    written_by: str            # the stage (CONV/FC layer) that writes it
    values: int
    mismatches: int
    first_mismatch: dict[str, Any] | None = None   # image, index, simulated, reference

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.tensor, "written_by": self.written_by, "values": self.values,
                "mismatches": self.mismatches, "first_mismatch": self.first_mismatch}


@dataclass(frozen=True)
class SimResult:
    """The simulated run over the test images."""

    images: int
    correct1: int
    correct5: int
    k5: int
    checks: tuple[LayerCheck, ...]
    saturated: int             # values saturated over the run (reference executor's count)
    input_saturated: int

    @property
    def mismatches(self) -> int:
        return sum(c.mismatches for c in self.checks)

    @property
    def values_compared(self) -> int:
        return sum(c.values for c in self.checks)

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0


@dataclass(frozen=True)
class RunState:
    """What the steps have produced so far (None: not yet)."""

    hw: Any = None              # AcceleratorConfig
    graph: Any = None           # float Graph
    calib: Any = None           # Dataset
    test: Any = None            # Dataset
    qmodel: Any = None          # QuantizedModel
    compiled: Any = None        # Compiled
    float_eval: Any = None      # quant.evaluate.EvalResult
    sim: SimResult | None = None
    timing: Any = None          # sim.timing.Timing
    splits: tuple[Any, ...] = ()  # report.breakdown.TimeSplit per timed layer
    summary: dict[str, Any] | None = None
    files: Mapping[str, Path] = field(default_factory=dict)
    steps: tuple[StepRecord, ...] = ()

    def add(self, **changes: Any) -> RunState:
        return dataclasses.replace(self, **changes)


Step = Callable[[RunConfig, RunState], tuple[RunState, str]]


# --- steps ---------------------------------------------------------------------------------------

def step_target(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.hw.config import load_config

    hw = load_config(cfg.target)
    check_bits_fit(cfg.bits, hw)
    return st.add(hw=hw), (f"{hw.name}: {hw.device}, {hw.clock_mhz:g} MHz, {hw.num_pe}x"
                           f"{hw.convolvers_per_pe} convolvers, {hw.data_bits}-bit")


def step_model(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.frontends import load_model
    from deepfpga.interchange.onnx_quant import load_prequantized

    pre = load_prequantized(cfg.model)  # a QONNX / QDQ file: formats from the file
    if pre is not None:
        return st.add(graph=pre.graph, qmodel=pre.qmodel), (
            f"{pre.graph.name}: {len(pre.graph.layers)} layers, quantized ({pre.kind})")
    graph = load_model(cfg.model)
    graph.require_weights()
    return st.add(graph=graph), (f"{graph.name}: {len(graph.layers)} layers, input"
                                 f" {'x'.join(map(str, graph.input_shape))}")


def _dataset(spec: str, split: str, limit: int, shape: tuple[int, ...]) -> Any:
    from deepfpga.data import load_dataset

    kwargs: dict[str, Any] = {}
    if len(shape) == 3 and Path(spec).is_dir():  # image folders are converted to the model input
        kwargs = {"channels": shape[0], "size": (shape[1], shape[2])}
    ds = load_dataset(spec, split, limit, **kwargs)
    if ds.sample_shape != tuple(shape):
        raise InputError(f"data {spec!r} has images of shape {ds.sample_shape}; the model needs"
                         f" {tuple(shape)}")
    return ds


def step_data(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    shape = st.graph.input_shape
    calib = _dataset(cfg.data, "train", cfg.calib_size, shape)
    test = _dataset(cfg.data, "test", cfg.images, shape)
    note = f"{len(calib)} calibration (train) + {len(test)} test images of {test.name}"
    if len(test) < cfg.images:
        note += f" (only {len(test)} available)"
    if calib.name == test.name:  # folders and .npz files have no train/test split
        note += "; one set without splits: calibration images are among the test images"
    return st.add(calib=calib, test=test), note


def check_bits_fit(bits: str, hw: Any) -> None:
    """Refuse a preset whose data or weights are wider than the target's."""
    from deepfpga.quant.bits import get_preset

    p = get_preset(bits)
    for what, need, have in (("data", p.data, hw.data_bits),
                             ("weights", max(p.conv_weight, p.fc_weight), hw.weight_bits)):
        if need > have:
            raise InputError(f"--bits {bits} needs {need}-bit {what}, but target {hw.name!r} has"
                             f" {have}-bit {what} (use a 16-bit target such as zc706-paper, or"
                             f" --bits {have})")


def bit_plan(graph: Any, bits: str, hw: Any) -> dict[str, dict[str, int]]:
    """Per-layer overrides that make the `bits` preset fit the target: biases narrowed to the
    target's bias width. Data or weights wider than the target are refused."""
    from deepfpga.ir.passes import prepare_for_quantization
    from deepfpga.quant.bits import get_preset

    check_bits_fit(bits, hw)
    p = get_preset(bits)
    if p.bias <= hw.bias_bits:
        return {}
    g = prepare_for_quantization(graph)
    return {layer.name: {"bias_bits": hw.bias_bits} for layer in g.layers
            if "bias" in layer.param_shapes()}


def step_quantize(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.quant.flow import quantize

    if st.qmodel is not None:
        return st, f"skipped: formats from the file, input {st.qmodel.input_format}"
    overrides = bit_plan(st.graph, cfg.bits, st.hw)
    q = quantize(st.graph, st.calib.x, bits=cfg.bits, overrides=overrides or None,
                 progress=cfg.progress)
    note = f"{cfg.bits}-bit dynamic precision, input {q.input_format}"
    if overrides:
        note += f", biases {st.hw.bias_bits}-bit to fit {st.hw.name}"
    return st.add(qmodel=q), note


def step_compile(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.compiler import compile_model

    c = compile_model(st.qmodel, st.hw)
    m = c.manifest
    return st.add(compiled=c), (f"{len(m['layers'])} stages, {len(c.program.instructions)}"
                                f" instructions, DDR image {len(c.ddr_image):,} bytes")


def step_float(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.quant.evaluate import evaluate

    r = evaluate(st.graph, st.test.x, st.test.y, batch_size=cfg.batch_size,
                 progress=cfg.progress)
    return st.add(float_eval=r), f"float32 top-1 {100 * r.top1:.2f} %"


def checked_tensors(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(tensor, writer) for every tensor the compiled program produces, in schedule order:
    each stage's output (written by the accelerator) and each host layer's output."""
    stages = {d["name"]: d for d in manifest["layers"]}
    out: list[tuple[str, str]] = []
    for step in manifest["schedule"]:
        if step["kind"] == "accel":
            out += [(stages[n]["output"], n) for n in step["stages"]]
        else:
            out.append((step["output"], f"host: {step['layer']}"))
    return out


def check_batch(sim_tensors: Mapping[str, np.ndarray], ref_layers: Mapping[str, np.ndarray],
                wanted: Sequence[tuple[str, str]], offset: int
                ) -> list[tuple[int, int, dict[str, Any] | None]]:
    """Per wanted tensor: (values compared, mismatches, first mismatch) for one batch."""
    out = []
    for tensor, _stage in wanted:
        if tensor not in sim_tensors:
            raise InputError(f"functional simulator returned no tensor {tensor!r}")
        a = np.asarray(sim_tensors[tensor])
        b = np.asarray(ref_layers[tensor])
        if a.shape != b.shape:
            raise InputError(f"tensor {tensor!r}: simulator shape {a.shape} differs from the"
                             f" reference's {b.shape}")
        diff = a != b
        n = int(diff.sum())
        first = None
        if n:
            flat = int(np.flatnonzero(diff.reshape(-1))[0])
            idx = np.unravel_index(flat, a.shape)
            first = {"image": offset + int(idx[0]), "index": [int(i) for i in idx[1:]],
                     "simulated": a[idx].item(), "reference": b[idx].item()}
        out.append((int(a.size), n, first))
    return out


def step_simulate(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.cli.output import progress
    from deepfpga.quant.evaluate import score_layer, topk_hits
    from deepfpga.quant.reference import ReferenceExecutor, quantize_input
    from deepfpga.sim.functional import simulate

    q, c, hw = st.qmodel, st.compiled, st.hw
    manifest = c.manifest
    wanted = checked_tensors(manifest)
    score = score_layer(q.graph)
    score_tensor = manifest["alias"].get(score, score)
    program = c.program_bytes()
    ref = ReferenceExecutor.build(q)
    keep = {t for t, _ in wanted} | {score}
    n = len(st.test)
    totals = [[0, 0, None] for _ in wanted]
    c1 = c5 = k5 = sat = in_sat = 0
    bar = progress(total=n, desc="simulating (images)", quiet=not cfg.progress)
    for i in range(0, n, cfg.batch_size):
        xb, yb = st.test.x[i:i + cfg.batch_size], st.test.y[i:i + cfg.batch_size]
        x_int, ns = quantize_input(q, xb)
        in_sat += ns
        r = ref.run(x_int, keep=keep)
        sat += r.total_saturations
        sim = simulate(program, c.ddr_image, manifest, hw, x_int)
        tensors = sim.layers
        for tot, (vals, bad, first) in zip(totals, check_batch(tensors, r.layers, wanted, i),
                                           strict=True):
            tot[0] += vals
            tot[1] += bad
            tot[2] = tot[2] or first
        if score_tensor not in tensors:
            raise InputError(f"functional simulator returned no scores (tensor {score_tensor!r})")
        scores = np.asarray(tensors[score_tensor])
        k5 = min(5, scores.shape[1])
        c1 += int(topk_hits(scores, yb, 1).sum())
        c5 += int(topk_hits(scores, yb, k5).sum())
        bar.update(len(yb))
    bar.close()
    checks = tuple(LayerCheck(t, s, v, b, f) for (t, s), (v, b, f) in zip(wanted, totals,
                                                                          strict=True))
    res = SimResult(n, c1, c5, k5, checks, sat, in_sat)
    verdict = ("bit-exact" if res.bit_exact
               else f"{res.mismatches:,} mismatching values")
    return st.add(sim=res), (f"{n} images, {res.values_compared:,} values compared: {verdict};"
                             f" top-1 {100 * c1 / n:.2f} %")


def step_timing(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.report.breakdown import time_splits
    from deepfpga.sim.timing import simulate_timing

    c = st.compiled
    t = simulate_timing(c.program, st.hw, c.manifest)
    splits = tuple(time_splits(c.program.instructions, t.start_cycles, t.end_cycles))
    return st.add(timing=t, splits=splits), (f"{t.seconds * 1e3:.3f} ms/frame, {t.fps:.1f} fps,"
                                             f" {t.gops:.2f} GOP/s")


def step_summary(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    s = build_summary(cfg, st)
    return st.add(summary=s), f"{len(s['layers'])} timed layers"


def step_report(cfg: RunConfig, st: RunState) -> tuple[RunState, str]:
    from deepfpga.report import write_report

    if cfg.out is None:
        return st, "skipped (no output directory)"
    summary = dict(st.summary or {})
    # The report's step table includes the report step itself only by name (it is running).
    files = write_report(cfg.out, summary)
    return st.add(files=files), f"{files['report']}, {files['summary']}"


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


def run_flow(cfg: RunConfig, steps: Sequence[tuple[str, Step]] = STEPS,
             on_step: Callable[[StepRecord], None] | None = None,
             state: RunState | None = None) -> RunState:
    """Run `steps` in order from `state` (empty by default); each step's time is recorded."""
    st = state or RunState()
    for name, fn in steps:
        t0 = time.perf_counter()
        if name == "report" and st.summary is not None:
            # Record the steps so far in the summary the report is written from.
            st = st.add(summary={**st.summary, "steps": [dataclasses.asdict(r)
                                                          for r in st.steps]})
        st, note = fn(cfg, st)
        rec = StepRecord(name, time.perf_counter() - t0, note)
        st = st.add(steps=(*st.steps, rec))
        if on_step is not None:
            on_step(rec)
    return st


# --- the summary -----------------------------------------------------------------------------

def _tiling_text(t: Mapping[str, Any] | None) -> str:
    if not t:
        return ""
    return f"{t['tr']}×{t['tc']}×{t['ti']}×{t['to']} {t['order']}"


def layer_rows(timing: Any, splits: Sequence[Any], manifest: Mapping[str, Any],
               checks: Mapping[str, LayerCheck]) -> list[dict[str, Any]]:
    """The per-layer table: timing joined with the manifest's stages and the bit-exact check."""
    stages = {int(d["index"]): d for d in manifest["layers"]}
    by_layer = {s.layer: s for s in splits}
    hz = timing.clock_mhz * 1e6

    def ms(cycles: float) -> float:
        return 1e3 * cycles / hz

    rows = []
    for lt in timing.layers:
        d = stages.get(lt.index, {})
        sp = by_layer.get(lt.index)
        moved = lt.bytes_loaded + lt.bytes_saved
        chk = checks.get(d.get("output", ""))
        rows.append({
            "name": lt.name, "kind": lt.kind, "fused": list(d.get("fused", [lt.name])),
            "tiling": _tiling_text(d.get("tiling")), "tiling_raw": d.get("tiling"),
            "latency_ms": lt.time_s * 1e3,
            "compute_ms": ms(sp.compute_busy) if sp else 0.0,
            "transfer_ms": ms(sp.transfer_busy) if sp else 0.0,
            "split_ms": {k: ms(getattr(sp, k)) if sp else 0.0
                         for k in ("compute_only", "overlap", "transfer_only", "waiting")},
            "calc_busy_ms": ms(lt.calc_cycles), "dma_busy_ms": ms(lt.load_cycles + lt.save_cycles),
            "ops": lt.ops, "gops": lt.gops, "bound": lt.limit, "utilisation": lt.mult_util,
            "bytes": moved, "bytes_loaded": lt.bytes_loaded, "bytes_saved": lt.bytes_saved,
            "transactions": lt.transactions, "mean_burst_bytes": lt.mean_burst_bytes,
            "op_intensity": lt.ops / moved if moved else None,
            "bound_ms": lt.bound_s * 1e3,
            "bit_exact": None if chk is None else chk.mismatches == 0,
            "mismatches": None if chk is None else chk.mismatches,
        })
    return rows


def _acc(correct1: int, correct5: int, n: int, k5: int) -> dict[str, Any]:
    return {"top1": correct1 / n, "top5": correct5 / n, "k5": k5, "correct1": correct1,
            "correct5": correct5}


def build_summary(cfg: RunConfig, st: RunState) -> dict[str, Any]:
    """Everything a run produced, as plain JSON values (the content of summary.json)."""
    from deepfpga import __version__

    hw, q, sim, t, fe = st.hw, st.qmodel, st.sim, st.timing, st.float_eval
    manifest = st.compiled.manifest
    checks = {c.tensor: c for c in sim.checks}
    qmeta = dict(q.meta.get("quantizer", {}))
    qlayers = []
    for layer in q.graph.layers:
        f = q.formats[layer.name]
        qlayers.append({"name": layer.name, "kind": layer.kind, **{
            k: (getattr(f, k).to_dict() if getattr(f, k) is not None else None)
            for k in ("input", "weight", "bias", "output")}})
    return {
        "format": "deepfpga-run-summary", "version": 1,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "deepfpga_version": __version__,
        "command": cfg.command,
        "config": {"model": cfg.model, "target": cfg.target, "data": cfg.data,
                   "images": cfg.images, "bits": cfg.bits, "calib_size": cfg.calib_size,
                   "batch_size": cfg.batch_size},
        "model": {"name": st.graph.name, "spec": cfg.model,
                  "input_shape": list(st.graph.input_shape), "layers": len(st.graph.layers)},
        "target": {
            "name": hw.name, "device": hw.device, "clock_mhz": hw.clock_mhz, "num_pe": hw.num_pe,
            "convolvers_per_pe": hw.convolvers_per_pe, "multipliers": hw.multipliers,
            "peak_gops": hw.peak_gops, "ddr_bandwidth_gbps": hw.ddr_bandwidth_gbps,
            "data_bits": hw.data_bits, "weight_bits": hw.weight_bits, "bias_bits": hw.bias_bits,
            "acc_bits": hw.acc_bits},
        "data": {"name": st.test.name, "test_images": len(st.test),
                 "calib_images": len(st.calib), "calib_split": "train", "test_split": "test"},
        "quantization": {
            "bits": cfg.bits, "method": qmeta.get("method", "dynamic"),
            "calib_size": qmeta.get("calib_size", len(st.calib)),
            "input_format": q.input_format.to_dict(), "layers": qlayers,
            "saturated_test": sim.saturated + sim.input_saturated,
            "calibration": q.meta.get("calibration"),
        },
        "accuracy": {"images": sim.images,
                     "simulated": _acc(sim.correct1, sim.correct5, sim.images, sim.k5),
                     "float": _acc(fe.correct1, fe.correct5, fe.n, fe.k5)},
        "bit_exact": {"ok": sim.bit_exact, "values_compared": sim.values_compared,
                      "mismatches": sim.mismatches,
                      "layers": [c.to_dict() for c in sim.checks]},
        "performance": {"cycles": t.cycles, "frame_ms": t.seconds * 1e3, "fps": t.fps,
                        "ops": t.ops, "gops": t.gops, "conv_gops": t.conv_gops,
                        "fc_gops": t.fc_gops, "peak_gops": hw.peak_gops,
                        "source": "timing simulator (model, not a board measurement)"},
        "layers": layer_rows(t, st.splits, manifest, checks),
        "host_layers": [h["name"] for h in manifest.get("host_layers", [])],
        "compiled": {"stages": len(manifest["layers"]),
                     "instructions": len(st.compiled.program.instructions),
                     "ddr_bytes": len(st.compiled.ddr_image)},
        "steps": [dataclasses.asdict(r) for r in st.steps],
    }
