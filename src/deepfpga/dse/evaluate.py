"""Evaluating one point for real: compile the network for the config, time it with the timing
simulator. This is the expensive part (0.2–1 s for VGG16-SVD) and the only part that runs on
workers, so its arguments and result are plain data (a graph description, a config dict).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from deepfpga.errors import InputError
from deepfpga.ir.graph import Graph


def graph_setup(graph: Mapping[str, Any]) -> Graph:
    """A worker's state: the network, rebuilt once from its description."""
    return Graph.from_dict(graph)


def evaluate_config(graph: Graph, config: Mapping[str, Any]) -> dict[str, Any]:
    """{"status", "reason", "metrics", "eval_s"} of `config` (an AcceleratorConfig as a dict):
    status "ok" with the timing simulator's figures, "no-compile" when the compiler refuses
    the network on this config (a tile that fits no buffer, ...), "timing-error" when the
    simulator refuses the program."""
    from deepfpga.compiler import compile_architecture
    from deepfpga.dse.build import NO_COMPILE, OK, TIMING_ERROR
    from deepfpga.hw.config import config_from_dict
    from deepfpga.sim.timing import simulate_timing

    t0 = time.perf_counter()
    cfg = config_from_dict(dict(config), "point")
    try:
        compiled = compile_architecture(graph, cfg)
    except InputError as e:
        return {"status": NO_COMPILE, "reason": str(e), "eval_s": time.perf_counter() - t0}
    try:
        t = simulate_timing(compiled)
    except InputError as e:
        return {"status": TIMING_ERROR, "reason": str(e), "eval_s": time.perf_counter() - t0}
    if t.fps is None:
        return {"status": NO_COMPILE, "reason": "nothing of the network runs on the"
                " accelerator", "eval_s": time.perf_counter() - t0}
    metrics = {"fps": t.fps, "frame_ms": t.seconds * 1e3, "gops": t.gops,
               "conv_gops": t.conv_gops, "cycles": t.cycles, "peak_gops": cfg.peak_gops,
               "mult_util": t.gops / cfg.peak_gops,
               "instructions": len(compiled.program.instructions)}
    return {"status": OK, "reason": "", "metrics": metrics, "eval_s": time.perf_counter() - t0}
