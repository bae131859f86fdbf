"""`deepfpga dse` as a function: a request in, the summary and its files out.

Order of work: everything that can be refused is checked first (model, device, widths, space,
search settings, the output directory, a results file to resume); then the sweep; then the
device's hand-made presets through the same evaluation, for comparison; then the files. On
Ctrl-C the points done so far are in `points.jsonl` already; a summary and report of them are
written and the interrupt is raised again.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepfpga.dse.build import (
    DEFAULT_MARGIN,
    OK,
    PRESET_KEY,
    Builder,
    Built,
    make_base,
    preset_built,
    variant_built,
)
from deepfpga.dse.explore import Search, Sweep
from deepfpga.dse.space import Space, default_space, load_space
from deepfpga.dse.store import PointStore
from deepfpga.dse.summary import build_summary, row, write_outputs
from deepfpga.errors import InputError
from deepfpga.hw.config import PRESETS, config_to_toml, load_config
from deepfpga.ir.graph import Graph
from deepfpga.parallel import Executor


@dataclass(frozen=True)
class Request:
    model: str
    device: str
    bits: int = 8
    clock_mhz: float = 150.0
    space: str | None = None            # a space TOML file; None: the default space
    budget: int = 500
    search: str = "auto"
    seed: int = 0
    population: int = 24
    margin: float = DEFAULT_MARGIN
    base: str | None = None             # board figures; None: the device's preset
    ddr_gbps: float | None = None
    out: Path = Path("dse-out")
    resume: bool = False
    paper: dict[str, Any] | None = None  # a published figure to show beside the front
    argv: tuple[str, ...] = field(default=())


def load_graph(spec: str) -> Graph:
    """The network's structure: from a quantized model file, or anything `load_model` takes."""
    from deepfpga.quant.qfile import is_qmodel_file, load_qmodel

    if is_qmodel_file(spec):
        return load_qmodel(spec).graph.without_weights()
    from deepfpga.models import load_model

    return load_model(spec).without_weights()


@dataclass(frozen=True)
class Prepared:
    graph: dict[str, Any]
    builder: Builder
    search: Search
    strategy: str
    header: dict[str, Any]


def prepare(req: Request) -> Prepared:
    """Everything checked and built before any point is evaluated."""
    from deepfpga.hw.config import AcceleratorConfig

    if not 1 <= req.clock_mhz <= 10_000:
        raise InputError(f"--clock must be 1..10000 MHz, got {req.clock_mhz:g}")
    base: AcceleratorConfig = make_base(req.device, req.bits, req.clock_mhz, req.base,
                                        req.ddr_gbps)
    space: Space = load_space(req.space) if req.space else default_space()
    builder = Builder(base, space, req.margin)
    search = Search(req.budget, req.search, req.seed, req.population)
    graph = load_graph(req.model).to_dict()
    strategy = search.resolve(space.size)
    base_d = base.to_dict()
    base_d.pop("notes")
    header = {"model": req.model,
              "graph_sha256": hashlib.sha256(json.dumps(graph, sort_keys=True).encode())
              .hexdigest(),
              "base": base_d, "margin": req.margin, "space": space.to_dict(),
              "strategy": strategy, "seed": req.seed if strategy == "genetic" else None,
              "population": req.population if strategy == "genetic" else None}
    return Prepared(graph, builder, search, strategy, header)


def presets_on(device: str) -> list[str]:
    return [p for p in PRESETS if load_config(p).device == device]


def _comparison(builder: Builder) -> list[Built]:
    """The device's presets as they are, and at the sweep's widths when theirs differ."""
    base = builder.base
    out = []
    for p in presets_on(base.device):
        out.append(preset_built(p))
        if load_config(p).data_bits != base.data_bits:
            out.append(variant_built(p, base))
    return out


def run(req: Request, executor: Executor | Callable[[], Executor],
        on_record: Callable[[dict[str, Any], bool], None] | None = None
        ) -> tuple[dict[str, Any], dict[str, Path]]:
    """The sweep of `req` on `executor`; given as a factory, the executor is made (a Ray
    started) only after every input has been checked, and closed at the end."""
    from deepfpga.fileio import check_output

    check_output(req.out, "--out", directory=True)
    prep = prepare(req)
    if not callable(executor):
        return _run(req, prep, executor, on_record)
    made = executor()
    try:
        return _run(req, prep, made, on_record)
    finally:
        made.close()


def _run(req: Request, prep: Prepared, executor: Executor,
         on_record: Callable[[dict[str, Any], bool], None] | None
         ) -> tuple[dict[str, Any], dict[str, Path]]:
    from deepfpga.dse.evaluate import graph_setup

    store = PointStore(req.out, prep.header, resume=req.resume)
    request = {"model": req.model, "device": prep.builder.base.device, "bits": req.bits,
               "clock_mhz": req.clock_mhz, "margin": req.margin,
               "created": datetime.now(UTC).isoformat(timespec="seconds"),
               "command": shlex.join(("deepfpga", *req.argv)) if req.argv else ""}
    pool = executor.pool(graph_setup, prep.graph)
    sweep = Sweep(prep.builder, prep.search, pool, store, on_record)
    t0 = time.perf_counter()
    presets: list[dict[str, Any]] = []
    interrupted = False
    try:
        sweep.run()
        seconds = time.perf_counter() - t0
        presets = _evaluate_presets(sweep, _comparison(prep.builder))
    except KeyboardInterrupt:
        interrupted = True
        seconds = time.perf_counter() - t0
    finally:
        pool.close()
    records = sweep.records
    if interrupted:     # every point finished, also those of the generation cut short
        records = [r for k, r in store.done.items() if not k.startswith(PRESET_KEY)]
    summary = build_summary(
        request=request, records=records, rejected=sweep.rejected,
        reasons=sweep.reasons, presets=presets,
        search={"strategy": prep.strategy, "seed": req.seed, "population": req.population,
                "budget": req.budget, "generations": sweep.generations,
                "exhausted": sweep.exhausted, "resumed_points": store.resumed},
        executor={"kind": executor.kind, "workers": executor.workers},
        space=prep.builder.space.to_dict(), seconds=seconds, fresh=sweep.fresh, paper=req.paper,
        interrupted=interrupted, files={"points": str(store.path)})
    top = summary["best"]
    toml = None if top is None or interrupted else best_toml(top, summary)
    files = write_outputs(req.out, summary, toml)
    if interrupted:
        raise KeyboardInterrupt
    return summary, files


def _evaluate_presets(sweep: Sweep, builts: list[Built]) -> list[dict[str, Any]]:
    out = []
    fits = [b for b in builts if b.status == OK]
    recs = {r["key"]: r for r in sweep.evaluate(fits, count=False)}
    for b in builts:
        name = b.point["preset"]
        if b.key in recs:
            out.append(row(recs[b.key], name))
        else:
            out.append({"name": name, "key": b.key, "status": b.status, "reason": b.reason,
                        "fps": None})
    return out


def best_toml(top: dict[str, Any], summary: dict[str, Any]) -> str:
    """The best point as a target file (validated by loading it back through the config)."""
    from deepfpga.hw.config import config_from_dict

    name = f"dse-{Path(summary['model']).stem}-{summary['device'].lower()}-{summary['bits']}bit"
    notes = {"dse": f"best of {summary['counts']['evaluated']} points by fps"
                    f" ({summary['search']['strategy']} search, seed {summary['search']['seed']})",
             "point": top["key"],
             "timing": f"{top['fps']:.3f} fps, {top['gops']:.1f} GOP/s on {summary['model']}"
                       " (timing simulator)"}
    cfg = config_from_dict({**top["config"], "name": name, "notes": notes}, "best point")
    comment = (f"{name}: found by `{summary['command'] or 'deepfpga dse'}`\n"
               f"{notes['timing']}; resources (estimate): "
               f"{top['resources']['dsps']} DSP, {top['resources']['bram36']:.0f} BRAM36,"
               f" {top['resources']['luts']:,} LUT")
    return config_to_toml(cfg, comment)
