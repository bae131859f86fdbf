"""The run summary: everything `deepfpga run` produced, as plain JSON values (summary.json).

`build_summary` joins the timing simulator's per-layer results with the manifest's stages and
the bit-exactness checks; the report page (deepfpga.report.html) is drawn from it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled, Manifest
    from deepfpga.compiler.tiling import Tiling
    from deepfpga.hw.accelerator import AcceleratorConfig
    from deepfpga.ir.graph import Graph
    from deepfpga.quant.evaluate import EvalResult
    from deepfpga.quant.qmodel import QuantizedModel
    from deepfpga.report.breakdown import TimeSplit
    from deepfpga.sim.check import LayerCheck, SimResult
    from deepfpga.sim.timing import Timing
    from deepfpga.sim.utilisation import LayerUtilisation


def _tiling_text(t: Tiling | None) -> str:
    if t is None:
        return ""
    return f"{t.tr}×{t.tc}×{t.ti}×{t.to} {t.order}"


def layer_rows(timing: Timing, splits: Sequence[TimeSplit], manifest: Manifest,
               checks: Mapping[str, LayerCheck], util: Sequence[LayerUtilisation] = ()
               ) -> list[dict[str, Any]]:
    """The per-layer table: timing joined with the manifest's stages, the bit-exact check and
    the product-slot utilisation (`util`, per layer of `timing`)."""
    slot_use = {u.name: u for u in util}
    stages = {s.index: s for s in manifest.layers}
    by_layer = {s.layer: s for s in splits}
    hz = timing.clock_mhz * 1e6

    def ms(cycles: float) -> float:
        return 1e3 * cycles / hz

    rows = []
    for lt in timing.layers:
        st = stages.get(lt.index)
        tiling = st.tiling if st else None
        sp = by_layer.get(lt.index)
        moved = lt.bytes_loaded + lt.bytes_saved
        chk = checks.get(st.output) if st else None
        u = slot_use.get(lt.name)
        rows.append({
            "name": lt.name, "kind": lt.kind, "fused": list(st.fused) if st else [lt.name],
            "tiling": _tiling_text(tiling), "tiling_raw": tiling.to_dict() if tiling else None,
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
            "slot_utilisation": None if u is None else u.utilisation,
            "why_not_100": None if u is None else u.note(),
            "lost_causes": None if u is None else u.causes,
            "lost_slots": None if u is None else dict(u.lost),
        })
    return rows


def _acc(correct1: int, correct5: int, n: int, k5: int) -> dict[str, Any]:
    return {"top1": correct1 / n, "top5": correct5 / n, "k5": k5, "correct1": correct1,
            "correct5": correct5}


def build_summary(*, request: Mapping[str, Any], command: str, hw: AcceleratorConfig,
                  graph: Graph, calib: Any, test: Any, qmodel: QuantizedModel,
                  compiled: Compiled, float_eval: EvalResult, sim: SimResult, timing: Timing,
                  splits: Sequence[TimeSplit], steps: Sequence[Mapping[str, Any]]
                  ) -> dict[str, Any]:
    """Everything a run produced, as plain JSON values (the content of summary.json).
    `request`: what the run was asked (model, target, data, images, bits, calib_size,
    batch_size); `calib`/`test`: the data sets (deepfpga.data.Dataset)."""
    from deepfpga import __version__
    from deepfpga.sim.host import host_costs
    from deepfpga.sim.utilisation import layer_utilisation

    manifest = compiled.manifest
    checks = {c.tensor: c for c in sim.checks}
    qmeta = dict(qmodel.meta.get("quantizer", {}))
    qlayers = []
    for layer in qmodel.graph.layers:
        f = qmodel.formats[layer.name]
        qlayers.append({"name": layer.name, "kind": layer.kind, **{
            k: (getattr(f, k).to_dict() if getattr(f, k) is not None else None)
            for k in ("input", "weight", "bias", "output")}})
    return {
        "format": "deepfpga-run-summary", "version": 1,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "deepfpga_version": __version__,
        "command": command,
        "config": dict(request),
        "model": {"name": graph.name, "spec": request["model"],
                  "input_shape": list(graph.input_shape), "layers": len(graph.layers)},
        "target": {
            "name": hw.name, "device": hw.device, "clock_mhz": hw.clock_mhz, "num_pe": hw.num_pe,
            "convolvers_per_pe": hw.convolvers_per_pe, "multipliers": hw.multipliers,
            "peak_gops": hw.peak_gops, "ddr_bandwidth_gbps": hw.ddr_bandwidth_gbps,
            "data_bits": hw.data_bits, "weight_bits": hw.weight_bits, "bias_bits": hw.bias_bits,
            "acc_bits": hw.acc_bits},
        "data": {"name": test.name, "test_images": len(test),
                 "calib_images": len(calib), "calib_split": "train", "test_split": "test"},
        "quantization": {
            "bits": request["bits"], "method": qmeta.get("method", "dynamic"),
            "calib_size": qmeta.get("calib_size", len(calib)),
            "input_format": qmodel.input_format.to_dict(), "layers": qlayers,
            "saturated_test": sim.saturated + sim.input_saturated,
            "calibration": qmodel.meta.get("calibration"),
        },
        "accuracy": {"images": sim.images,
                     "simulated": _acc(sim.correct1, sim.correct5, sim.images, sim.k5),
                     "float": _acc(float_eval.correct1, float_eval.correct5, float_eval.n,
                                   float_eval.k5)},
        "bit_exact": {"ok": sim.bit_exact, "values_compared": sim.values_compared,
                      "mismatches": sim.mismatches,
                      "layers": [c.to_dict() for c in sim.checks]},
        "performance": {"cycles": timing.cycles, "frame_ms": timing.seconds * 1e3,
                        "fps": timing.fps, "ops": timing.ops, "gops": timing.gops,
                        "conv_gops": timing.conv_gops, "fc_gops": timing.fc_gops,
                        "peak_gops": hw.peak_gops,
                        "source": "timing simulator (model, not a board measurement)"},
        "layers": layer_rows(timing, splits, manifest, checks,
                             layer_utilisation(timing, compiled.program.instructions, hw)),
        "host_layers": [h.layer for h in manifest.host_steps],
        "host_costs": [h.to_dict() for h in host_costs(compiled)],
        "compiled": {"stages": len(manifest.layers),
                     "instructions": len(compiled.program.instructions),
                     "ddr_bytes": len(compiled.ddr_image)},
        "steps": [dict(s) for s in steps],
    }
