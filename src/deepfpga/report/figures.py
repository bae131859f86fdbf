"""The report's two charts as PNG bytes: time per layer (compute vs transfer) and the roofline.

Both take the per-layer rows of a run summary (see `deepfpga.report.summary`), so a chart can be
redrawn from `summary.json` alone. Figures are built on matplotlib's object API with the Agg
canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

# Colours: compute blue, transfer orange, both purple, waiting grey (colour-blind safe pairs).
COLOURS = {
    "compute_only": "#1f77b4",
    "overlap": "#7b4fa6",
    "transfer_only": "#ff7f0e",
    "waiting": "#c7c7c7",
}
LABELS = {
    "compute_only": "compute only",
    "overlap": "compute + transfer overlapped",
    "transfer_only": "transfer only",
    "waiting": "waiting (pipeline fill, DDR busy elsewhere)",
}
KIND_MARKERS = {"conv": ("o", "#1f77b4"), "fc": ("s", "#d62728")}


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def time_chart_png(layers: Sequence[Mapping[str, Any]], title: str = "") -> bytes:
    """Horizontal stacked bars, one per layer: its latency split into compute only, overlapped,
    transfer only and waiting (milliseconds; the parts add up to the layer's latency)."""
    from matplotlib.figure import Figure

    names = [str(r["name"]) for r in layers]
    fig = Figure(figsize=(8.0, 1.6 + 0.32 * max(len(names), 1)), layout="constrained")
    ax = fig.add_subplot()
    y = list(range(len(names)))
    left = [0.0] * len(names)
    for part in ("compute_only", "overlap", "transfer_only", "waiting"):
        widths = [float(r["split_ms"][part]) for r in layers]
        ax.barh(y, widths, left=left, color=COLOURS[part], label=LABELS[part], height=0.7)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("time per frame (ms)")
    ax.set_title(title or "Time per layer: compute vs transfer")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=2, fontsize="small", frameon=False)
    return _png(fig)


def _label_offsets(pts: Sequence[Mapping[str, Any]], pt_per_decade_x: float,
                   pt_per_decade_y: float) -> list[int]:
    """Vertical label offsets (points) so labels of nearby points do not print on each other:
    labels are placed in order, each moved down a line while it would overlap an earlier one
    (label boxes estimated from the axes' scale, ~5 points per character, 9 points high)."""
    placed: list[tuple[float, float, float]] = []   # left, bottom, width in points
    out = []
    for r in pts:
        x = math.log10(float(r["op_intensity"])) * pt_per_decade_x + 5
        y0 = math.log10(float(r["gops"])) * pt_per_decade_y
        w = 5.0 * len(str(r["name"]))
        dy = 3
        while any(abs(y0 + dy - py) < 9 and x < px + pw and px < x + w
                  for px, py, pw in placed):
            dy -= 9
        placed.append((x, y0 + dy, w))
        out.append(dy)
    return out


def roofline_png(layers: Sequence[Mapping[str, Any]], peak_gops: float, bandwidth_gbps: float,
                 title: str = "") -> bytes:
    """Attainable GOP/s = min(peak, intensity × bandwidth) against operational intensity
    (operations per DDR byte), log-log, with one point per layer at its simulated GOP/s."""
    from matplotlib.figure import Figure

    pts = [r for r in layers if r.get("op_intensity") and r.get("gops")]
    ridge = peak_gops / bandwidth_gbps
    xs = [float(r["op_intensity"]) for r in pts] or [ridge]
    lo = min(min(xs), ridge) / 4
    hi = max(max(xs), ridge) * 4
    fig = Figure(figsize=(7.5, 5.0))
    ax = fig.add_subplot()
    n = 200
    grid = [lo * (hi / lo) ** (k / (n - 1)) for k in range(n)]
    ax.plot(grid, [min(peak_gops, x * bandwidth_gbps) for x in grid], color="black", lw=1.5,
            label=f"roof: peak {peak_gops:.1f} GOP/s, DDR {bandwidth_gbps:g} GB/s")
    ax.axvline(ridge, color="grey", ls=":", lw=1)
    ax.annotate(f"ridge {ridge:.1f} op/B", (ridge, peak_gops), textcoords="offset points",
                xytext=(4, -14), fontsize="small", color="grey")
    for kind, (marker, colour) in KIND_MARKERS.items():
        sel = [r for r in pts if r.get("kind") == kind]
        if sel:
            ax.scatter([float(r["op_intensity"]) for r in sel], [float(r["gops"]) for r in sel],
                       marker=marker, color=colour, zorder=3, label=f"{kind.upper()} layer")
    # ~400 × 270 points of axes: points per decade on each log axis, for label placement
    ys = [float(r["gops"]) for r in pts] or [peak_gops]
    ylo = min(min(ys), lo * bandwidth_gbps) / 2
    per_x = 400 / math.log10(hi / lo)
    per_y = 270 / math.log10(peak_gops * 2 / ylo)
    for r, dy in zip(pts, _label_offsets(pts, per_x, per_y), strict=True):
        moved = {"arrowprops": {"arrowstyle": "-", "lw": 0.5, "color": "grey"}} if dy < 3 else {}
        ax.annotate(str(r["name"]), (float(r["op_intensity"]), float(r["gops"])),
                    textcoords="offset points", xytext=(5, dy), fontsize="x-small", **moved)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(ylo, peak_gops * 2)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("operational intensity (operations per DDR byte)")
    ax.set_ylabel("GOP/s")
    ax.set_title(title or "Roofline (one point per layer, simulated)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)

