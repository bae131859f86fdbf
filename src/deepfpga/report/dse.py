"""The design-space exploration report: `dse.html` (one self-contained page) and its chart.

Both are pure functions of the sweep summary (`summary.json` of `deepfpga dse`, built by
`deepfpga.dse.summary`): the chart can be redrawn from that file alone. The chart has one panel
per resource (DSP, BRAM, LUT share of the device) with fps on the vertical axis: every evaluated
point in grey, the Pareto front in blue, the best point as a star, the hand-made presets as
labelled diamonds and, for VGG16-SVD, the paper's 4.45 fps as a dashed line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deepfpga.report.figures import _png
from deepfpga.report.html import CSS, _card, _e, _img, _table, fmt, pct

PANELS = (("dsp", "DSP share of the device"), ("bram36", "block-RAM share"),
          ("lut", "LUT share (rough estimate)"))


def _xy(rows: Sequence[Mapping[str, Any]], res: str) -> tuple[list[float], list[float]]:
    return ([100 * float(r["share"][res]) for r in rows], [float(r["fps"]) for r in rows])


def front_png(summary: Mapping[str, Any]) -> bytes:
    from matplotlib.figure import Figure

    points, front = summary["points"], summary["front"]
    presets = [p for p in summary["presets"] if p.get("fps") is not None]
    best = summary.get("best")
    paper = summary.get("paper")
    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    axes = fig.subplots(1, len(PANELS), sharey=True)
    for ax, (res, label) in zip(axes, PANELS, strict=True):
        ax.scatter(*_xy(points, res), s=9, color="#bdbdbd", label="evaluated point", zorder=1)
        ax.scatter(*_xy(front, res), s=22, color="#1f77b4", label="Pareto front", zorder=2)
        if best:
            ax.scatter(*_xy([best], res), s=160, marker="*", color="#d62728",
                       label="best (most fps)", zorder=4)
        for k, p in enumerate(presets):       # labels one line apart: presets often overlap
            x, y = _xy([p], res)
            ax.scatter(x, y, s=60, marker="D", color="#2ca02c", zorder=3,
                       label="hand-made preset" if k == 0 else None)
            ax.annotate(p["name"], (x[0], y[0]), textcoords="offset points",
                        xytext=(5, -10 - 9 * k), fontsize="x-small", color="#2ca02c")
        if paper:
            ax.axhline(paper["fps"], color="#7f7f7f", ls="--", lw=1,
                       label=f"paper: {paper['fps']} fps, {paper['source']}")
        ax.set_xlabel(f"{label} (%)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("frames per second (timing simulator)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize="small",
               frameon=False)
    fig.suptitle(f"{summary['model']} on {summary['device']}, {summary['bits']}-bit,"
                 f" {fmt(summary['clock_mhz'])} MHz: fps against resources")
    return _png(fig)


def _shape(r: Mapping[str, Any]) -> str:
    c = r["config"]
    return f"{c['num_pe']}×{c['convolvers_per_pe']}"


def _kib(b: int) -> str:
    return f"{b / 1024:g}"


def point_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        c = r["config"]
        out.append([r.get("name", ""), _shape(r), r["multipliers"],
                    f"{_kib(c['input_buffer_bytes'])}/{_kib(c['output_buffer_bytes'])}/"
                    f"{_kib(c['weight_buffer_bytes'])}/{_kib(c['fc_buffer_bytes'])}",
                    f"{c['datain_port_num']}/{c['weightin_port_num']}/{c['dataout_port_num']}",
                    r["fps"], r["gops"], pct(r["share"]["dsp"]), pct(r["share"]["bram36"]),
                    pct(r["share"]["lut"])])
    return out


POINT_HEADERS = ["", "PE × convolvers", "multipliers", "buffers in/out/weight/fc (KiB)",
                 "ports in/weight/out", "fps", "GOP/s", "DSP", "BRAM", "LUT"]


def render_dse_html(summary: Mapping[str, Any], chart: bytes) -> str:
    s = summary
    title = f"deepfpga dse: {s['model']} on {s['device']} ({s['bits']}-bit)"
    c = s["counts"]
    best = s.get("best")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(s.get("created", ""))} · <code>{_e(s.get("command", ""))}</code>'
        f"{' · <b>interrupted</b>' if s.get('interrupted') else ''}</p>",
    ]
    cards = [_card("best fps", fmt(best["fps"]) if best else "–"),
             _card("best GOP/s", fmt(best["gops"]) if best else "–"),
             _card("points evaluated", fmt(c["evaluated"])),
             _card("on the front", fmt(len(s["front"]))),
             _card("refused (invalid / no fit)", f"{c['invalid']} / {c['no-fit']}"),
             _card("wall time (s)", fmt(s["seconds"]))]
    parts.append('<h2>Summary</h2><div class="cards">' + "".join(cards) + "</div>")
    sr = s["search"]
    parts.append(
        f"<p>Search: {_e(sr['strategy'])} (seed {_e(sr['seed'])}, population"
        f" {_e(sr['population'])}, budget {_e(sr['budget'])}) over a space of"
        f" {_e(fmt(s['space']['size']))} points, on {_e(s['executor']['kind'])}"
        f" ({_e(s['executor']['workers'])} worker(s)), {_e(fmt(s['points_per_second']))}"
        " points/s. Every evaluated point was compiled and timed by the timing simulator;"
        f" resources are the resource model's estimate with a {_e(fmt(100 * s['margin']))} %"
        " margin of block RAM, LUT and FF kept for the shell (LUT/FF figures are rough).</p>")
    if best:
        parts.append(f"<p>Best point, written as <code>{_e(s['files'].get('best', ''))}</code>:"
                     f" <code>{_e(best['key'])}</code></p>")
    parts.append("<h2>Pareto front</h2>")
    parts.append(_img(chart, "fps against DSP, BRAM and LUT share"))
    parts.append("<p>Front: no other point has more fps and less of every resource.</p>")
    parts.append(_table(POINT_HEADERS, point_rows(s["front"]), css_id="front"))
    parts.append("<h2>Hand-made presets and the paper</h2>")
    parts.append(_table(POINT_HEADERS, point_rows([p for p in s["presets"]
                                                   if p.get("fps") is not None])))
    refused = [p for p in s["presets"] if p.get("fps") is None]
    for p in refused:
        parts.append(f"<p>{_e(p['name'])}: {_e(p['reason'])}</p>")
    if s.get("paper"):
        parts.append(f"<p>Paper: {_e(s['paper']['fps'])} fps ({_e(s['paper']['source'])}).</p>")
    parts.append("<h2>Counts</h2>")
    parts.append(_table(["status", "points", "first reason"],
                        [[k, c[k], s["reasons"].get(k, "")] for k in
                         ("ok", "no-compile", "timing-error", "invalid", "no-fit")]))
    parts.append("<h2>Space</h2>")
    parts.append(_table(["axis", "values"],
                        [[k, ", ".join(map(str, v))] for k, v in s["space"]["axes"].items()]
                        + [[f"{k} (fixed)", v] for k, v in s["space"]["fixed"].items()]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
