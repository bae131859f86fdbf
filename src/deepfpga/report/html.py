"""The run report as one self-contained HTML file (inline CSS, charts embedded as base64 PNG).

`render_html(summary, images)` is a pure function of the run summary (the content of
`summary.json`, see `deepfpga.report.summary`) and the chart PNGs; every value is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.5em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e4e4e4; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #11702b; font-weight: 600; }
.bad { color: #b00020; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; min-width: 9em; }
.card .v { font-size: 1.35em; font-weight: 600; }
.card .k { color: #666; font-size: 0.85em; }
img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.25em; }
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def fmt(v: Any, digits: int = 3) -> str:
    """Numbers for humans: thousands separators for integers, `digits` significant decimals."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f} %"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], raw: Sequence[int] = (),
           css_id: str = "") -> str:
    """A table; numeric cells right-aligned; columns in `raw` are trusted HTML."""
    ident = f' id="{_e(css_id)}"' if css_id else ""
    out = [f"<table{ident}><thead><tr>"]
    out += [f"<th>{_e(h)}</th>" for h in headers]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            num = isinstance(cell, int | float) and not isinstance(cell, bool)
            text = str(cell) if i in raw else _e(fmt(cell))
            out.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _card(key: str, value: str, cls: str = "") -> str:
    c = f' class="v {cls}"' if cls else ' class="v"'
    return f'<div class="card"><div{c}>{_e(value)}</div><div class="k">{_e(key)}</div></div>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _yes_no(v: bool | None) -> str:
    if v is None:
        return "–"
    return '<span class="ok">yes</span>' if v else '<span class="bad">NO</span>'


def layer_table(layers: Sequence[Mapping[str, Any]]) -> str:
    headers = ["layer", "kind", "fused", "tiling Tr×Tc×Ti×To", "latency ms", "compute ms",
               "transfer ms", "MOP", "GOP/s", "bound", "utilisation", "slots used",
               "why not 100 %", "bytes", "op/B", "bit-exact"]
    rows = [
        [r["name"], r["kind"], " + ".join(r.get("fused") or [r["name"]]), r.get("tiling") or "–",
         r["latency_ms"], r["compute_ms"], r["transfer_ms"], r["ops"] / 1e6, r["gops"],
         r["bound"], pct(r["utilisation"]), pct(r.get("slot_utilisation")),
         _lost_text(r.get("lost_causes")), int(r["bytes"]), r["op_intensity"],
         _yes_no(r.get("bit_exact"))]
        for r in layers
    ]
    return _table(headers, rows, raw=(15,), css_id="layers")


def _lost_text(causes: Mapping[str, float] | None) -> str:
    """Every cause that loses product slots, largest first ("–" when none is known)."""
    if not causes:
        return "–"
    lost = sorted(((v, k) for k, v in causes.items() if v > 0), reverse=True)
    return ", ".join(f"{k.replace('_', ' ')} {100 * v:.1f} %" for v, k in lost) or "none"


def _fmt_format(f: Mapping[str, Any] | None) -> str:
    return "–" if not f else f"Q{f['bw']}.{f['fl']}"


def render_html(summary: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """The report page. `images`: {"time": PNG, "roofline": PNG}."""
    s = summary
    model, target, data = s["model"], s["target"], s["data"]
    acc, perf, exact = s["accuracy"], s["performance"], s["bit_exact"]
    title = f"deepfpga run: {model['name']} on {target['name']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(s.get("created", ""))} · deepfpga {_e(s.get("deepfpga_version", ""))}'
        f" · <code>{_e(s.get('command', ''))}</code></p>",
    ]
    sim, flt = acc["simulated"], acc["float"]
    cards = [
        _card("bit-exact vs reference", "yes" if exact["ok"] else
              f"NO ({exact['mismatches']:,} values)", "ok" if exact["ok"] else "bad"),
        _card(f"top-1, simulated {s['quantization']['bits']}-bit", pct(sim["top1"])),
        _card("top-1, float32", pct(flt["top1"])),
        _card(f"top-{sim['k5']}, simulated", pct(sim["top5"])),
        _card("frames per second", fmt(perf["fps"])),
        _card("GOP/s (whole network)", fmt(perf["gops"])),
        _card("frame time (ms)", fmt(perf["frame_ms"])),
    ]
    parts.append('<h2>Summary</h2><div class="cards">' + "".join(cards) + "</div>")
    parts.append(
        f"<p>{_e(acc['images'])} test images of <code>{_e(data['name'])}</code> ran through the"
        f" functional simulator of <code>{_e(target['name'])}</code> ({_e(target['device'])},"
        f" {_e(fmt(target['clock_mhz']))} MHz, {_e(target['num_pe'])} PE ×"
        f" {_e(target['convolvers_per_pe'])} convolvers, peak {_e(fmt(target['peak_gops']))}"
        f" GOP/s, DDR {_e(fmt(target['ddr_bandwidth_gbps']))} GB/s); the model was quantized to"
        f" {_e(s['quantization']['bits'])} bits ({_e(s['quantization']['method'])} precision) on"
        f" {_e(data['calib_images'])} {_e(data.get('calib_split', 'train'))} images. Speed figures"
        " come from the timing simulator (a model, not a board measurement); accuracy from the"
        " simulated integer outputs against the labels.</p>"
    )
    parts.append("<h2>Accuracy</h2>")
    parts.append(_table(
        ["model", "images", "top-1", f"top-{sim['k5']}", "correct top-1"],
        [["fixed point, functional simulator", acc["images"], pct(sim["top1"]), pct(sim["top5"]),
          sim["correct1"]],
         ["float32 (same images)", acc["images"], pct(flt["top1"]), pct(flt["top5"]),
          flt["correct1"]]],
    ))
    parts.append("<h2>Per-layer performance</h2>")
    parts.append(
        f"<p>Frame: {_e(fmt(perf['cycles']))} cycles = {_e(fmt(perf['frame_ms']))} ms,"
        f" {_e(fmt(perf['fps']))} fps; {_e(fmt(perf['ops'] / 1e9))} GOP per frame on the"
        f" accelerator; {_e(fmt(perf['gops']))} GOP/s overall, CONV {_e(fmt(perf['conv_gops']))}"
        f" GOP/s, FC {_e(fmt(perf['fc_gops']))} GOP/s. <em>latency</em>: the layer's exclusive"
        " time; <em>compute/transfer</em>: time in that window with the PEs busy / the DDR port"
        " busy (they overlap); <em>bound</em>: the busier side; <em>utilisation</em>: GOP/s ÷"
        " peak; <em>slots used</em>: useful MACs ÷ (the grid's products per cycle × the layer's"
        " cycles); <em>why not 100 %</em>: the slots lost, by cause (idle convolvers: channels"
        " not filling the grid; window: empty pixel lanes, the one-product loop, padding and"
        " zero taps; bandwidth: cycles without CALC; pass overhead: setup, staging and drains);"
        " <em>bytes</em>: DDR traffic; <em>op/B</em>: operations per DDR byte.</p>"
    )
    parts.append(layer_table(s["layers"]))
    host = s.get("host_costs") or []
    if not host and s.get("host_layers"):      # a summary without costs
        parts.append(f"<p>Host layers (run on the CPU, not timed): "
                     f"{_e(', '.join(s['host_layers']))}.</p>")
    if host:
        extra = sum(h["ddr_ms_lower_bound"] for h in host)
        parts.append(
            "<p>Host layers run on the CPU, outside the accelerator's timing (softmax, LRN and"
            " average pooling in float, the residual add by its integer rule). Their DDR"
            f" traffic alone adds at least {_e(fmt(extra))} ms per frame; the CPU's own time"
            " is not modelled.</p>")
        parts.append(_table(["host layer", "op", "values in", "values out", "DDR bytes",
                             "≥ ms at DDR bandwidth"],
                            [[h["layer"], h["op"], h["values_in"], h["values_out"],
                              h["bytes_moved"], h["ddr_ms_lower_bound"]] for h in host]))
    parts.append("<h2>Time per layer</h2>")
    parts.append(_img(images["time"], "time per layer split into compute and transfer"))
    parts.append("<h2>Roofline</h2>")
    parts.append(_img(images["roofline"], "roofline: attainable GOP/s vs operational intensity"))
    parts.append(
        "<p>The roof is min(peak compute, intensity × DDR bandwidth) of the target (the paper's"
        " §8.1 bound); each point is a layer at its simulated GOP/s. Points far below the roof"
        " lose time to burst overhead, tile edges, idle convolvers or waiting.</p>"
    )
    from deepfpga.rtl.accel.flowstep import html_section  # `deepfpga run --rtl` only

    parts.append(html_section(s))
    parts.append("<h2>Bit-exactness: functional simulator vs reference executor</h2>")
    parts.append(
        f"<p>Every value written by the accelerator was compared with the bit-exact reference"
        f" executor on the same {_e(acc['images'])} images: {_e(fmt(exact['values_compared']))}"
        f" values, {_e(fmt(exact['mismatches']))} mismatches"
        f" — {'bit-exact' if exact['ok'] else 'NOT bit-exact'}.</p>"
    )
    parts.append(_table(
        ["tensor", "written by", "values", "mismatches", "bit-exact"],
        [[r["layer"], r.get("written_by", ""), r["values"], r["mismatches"],
          _yes_no(r["mismatches"] == 0)] for r in exact["layers"]],
        raw=(4,),
    ))
    q = s["quantization"]
    parts.append("<h2>Quantization</h2>")
    parts.append(
        f"<p>{_e(q['method'])} precision, {_e(q['bits'])}-bit preset, calibration on"
        f" {_e(q['calib_size'])} images; input format {_e(_fmt_format(q['input_format']))}"
        f" (Q<em>bw.fl</em>: bw-bit integers q standing for q·2<sup>−fl</sup>);"
        f" saturated values on the test images: {_e(fmt(q.get('saturated_test')))}.</p>"
    )
    parts.append(_table(
        ["layer", "kind", "input", "weights", "bias", "output"],
        [[r["name"], r["kind"], _fmt_format(r.get("input")), _fmt_format(r.get("weight")),
          _fmt_format(r.get("bias")), _fmt_format(r.get("output"))] for r in q["layers"]],
    ))
    parts.append("<h2>Target</h2>")
    parts.append(_table(["key", "value"], [[k, v] for k, v in target.items()]))
    parts.append("<h2>Steps</h2>")
    parts.append(_table(["step", "seconds", "result"],
                        [[st["name"], st["seconds"], st.get("note", "")] for st in s["steps"]]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
