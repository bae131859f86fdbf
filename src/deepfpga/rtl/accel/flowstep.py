"""`deepfpga run --rtl`: a flow step that runs test images on the accelerator RTL (Verilator)
and checks every tensor the accelerator writes against the reference executor, value by value,
and the per-layer saturation counts against the functional simulator's.

The step runs after `summary` and before `report`: it adds `summary["rtl"]` (checks, cycles
per layer beside the timing simulator's, wall time) and the report renders it with
`html_section`. `with_rtl(steps, images)` inserts it into a step list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfpga.errors import InputError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Manifest
    from deepfpga.rtl.accel.driver import RtlResult
    from deepfpga.sim.timing import Timing

DEFAULT_IMAGES = 2


def with_rtl(steps: Sequence[tuple[str, Any]], images: int = DEFAULT_IMAGES
             ) -> tuple[tuple[str, Any], ...]:
    """`steps` with the RTL step inserted after "summary" (before "report")."""
    if isinstance(images, bool) or not isinstance(images, int) or images <= 0:
        raise InputError(f"rtl-images must be a positive integer, got {images!r}")
    names = [n for n, _ in steps]
    if "summary" not in names:
        raise InputError("the flow has no 'summary' step to put the RTL step after")
    k = names.index("summary") + 1
    return (*steps[:k], ("rtl", rtl_step(images)), *steps[k:])


def rtl_step(images: int) -> Callable[[Any, Any], tuple[Any, str]]:
    """A `deepfpga.pipeline` step (RunConfig, RunState) → (RunState, note); the pipeline's types
    are not imported here: the pipeline imports the report, which imports this module."""

    def step_rtl(run: Any, st: Any) -> tuple[Any, str]:
        rtl = run_rtl_check(st, images)
        note = (f"{rtl['images']} images on the RTL, {rtl['values_compared']:,} values:"
                f" {'bit-exact' if rtl['bit_exact'] else 'NOT bit-exact'}"
                f"{'' if rtl['saturations_equal'] else ', saturation counts differ'};"
                f" {rtl['cycles']:,} cycles/image, {rtl['seconds_per_image']:.2f} s/image"
                f" (build {rtl['build_seconds']:.1f} s{' cached' if rtl['build_cached'] else ''})")
        return st.add(summary={**(st.summary or {}), "rtl": rtl}), note

    return step_rtl


def run_rtl_check(st: Any, images: int) -> dict[str, Any]:
    """Run the first `images` test images on the RTL; compare with the reference executor
    (every tensor) and the functional simulator (saturation counts)."""
    from deepfpga.quant.reference import ReferenceExecutor, quantize_input
    from deepfpga.rtl.accel.driver import RtlRunner, build_accelerator
    from deepfpga.sim.check import checked_tensors, compare_batch
    from deepfpga.sim.functional import simulate

    q, c, hw = st.qmodel, st.compiled, st.hw
    manifest = c.manifest
    n = min(images, len(st.test))
    x_int, _ = quantize_input(q, st.test.x[:n])
    wanted = [(t, s) for t, s in checked_tensors(manifest) if not s.startswith("host: ")]
    build = build_accelerator(hw)
    t0, c0 = time.perf_counter(), time.process_time()
    with RtlRunner(c, build) as runner:
        res = runner.run(x_int)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not res.ok:
        raise InputError(f"the RTL stopped: {res.error_message or res.error.name}")
    ref = ReferenceExecutor.build(q).run(x_int, keep={t for t, _ in wanted})
    checks = []
    for (t, s), (vals, bad, first) in zip(wanted, compare_batch(res.layers, ref.layers, wanted, 0),
                                          strict=True):
        checks.append({"layer": t, "written_by": s, "values": vals, "mismatches": bad,
                       "first_mismatch": None if first is None else first.to_dict()})
    fsim = simulate(c, x_int)
    stage_names = [d.name for d in manifest.layers]
    sats = [{"layer": k, "rtl": int(res.saturations.get(k, 0)),
             "functional": int(fsim.saturations.get(k, 0))} for k in stage_names]
    mism = sum(ch["mismatches"] for ch in checks)
    return {
        "images": n, "bit_exact": mism == 0, "mismatches": mism,
        "values_compared": sum(ch["values"] for ch in checks), "checks": checks,
        "saturations": sats, "saturations_equal": all(s["rtl"] == s["functional"] for s in sats),
        "cycles": int(res.cycles[0]), "cycles_per_image": [int(v) for v in res.cycles],
        "clock_mhz": hw.clock_mhz,
        "layers": layer_cycles(st.timing, manifest, res),
        "build_seconds": build.seconds, "build_cached": build.cached,
        "seconds_per_image": wall / n, "cpu_seconds_per_image": cpu / n,
        "cycles_per_cpu_second": sum(res.cycles) / cpu if cpu > 0 else None,
        "ok": mism == 0 and all(s["rtl"] == s["functional"] for s in sats),
        "source": "Verilator co-simulation of the generated RTL with a behavioural DDR",
    }


def layer_cycles(timing: Timing | None, manifest: Manifest, res: RtlResult
                 ) -> list[dict[str, Any]]:
    """Per stage: the cycles from its first instruction's start to its last one's end, in the
    timing simulator and on the RTL (the same definition on both traces)."""
    rows = []
    for d in manifest.layers:
        a, b = d.instructions
        t_cyc = None
        if timing is not None and b > a:
            t_cyc = int(np.max(timing.end_cycles[a:b]) - np.min(timing.start_cycles[a:b]))
        r_cyc = int(res.layer_cycles.get(d.name, 0))
        rows.append({"name": d.name, "kind": d.kind, "timing_cycles": t_cyc,
                     "rtl_cycles": r_cyc,
                     "ratio": (r_cyc / t_cyc) if t_cyc else None})
    return rows


def html_section(summary: Mapping[str, Any]) -> str:
    """The report's RTL section ("" when the run had no RTL step)."""
    r = summary.get("rtl")
    if not r:
        return ""
    verdict = "bit-exact" if r["bit_exact"] else f"NOT bit-exact ({r['mismatches']:,} values)"
    sat = "equal" if r["saturations_equal"] else "DIFFERENT"
    def num(v: Any, spec: str = ",") -> str:
        return "–" if v is None else format(v, spec)

    rows = "".join(
        f"<tr><td>{escape(x['name'])}</td><td>{escape(x['kind'])}</td>"
        f"<td>{num(x['timing_cycles'])}</td><td>{num(x['rtl_cycles'])}</td>"
        f"<td>{num(x['ratio'], '.2f')}</td></tr>" for x in r["layers"])
    checks = "".join(
        f"<tr><td>{escape(c['layer'])}</td><td>{escape(c['written_by'])}</td>"
        f"<td>{c['values']:,}</td><td>{c['mismatches']:,}</td></tr>" for c in r["checks"])
    return (
        "<h2>RTL co-simulation (Verilator)</h2>"
        f"<p>{r['images']} test images ran on the generated RTL under Verilator with a"
        f" behavioural DDR (per-burst latency and the target's byte rate):"
        f" {r['values_compared']:,} values written by the accelerator compared with the"
        f" reference executor — <strong>{verdict}</strong>; saturation counts per layer vs the"
        f" functional simulator: {sat}. {r['cycles']:,} cycles per image ="
        f" {1e3 * r['cycles'] / (r['clock_mhz'] * 1e6):.3f} ms at {r['clock_mhz']:g} MHz;"
        f" simulated in {r['seconds_per_image']:.2f} s wall"
        f" ({r.get('cpu_seconds_per_image', 0.0):.2f} s CPU) per image.</p>"
        "<table><tr><th>layer</th><th>kind</th><th>timing simulator cycles</th>"
        f"<th>RTL cycles</th><th>RTL / timing</th></tr>{rows}</table>"
        "<table><tr><th>tensor</th><th>written by</th><th>values</th><th>mismatches</th></tr>"
        f"{checks}</table>"
    )
