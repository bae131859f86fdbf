"""The run report: `report.html` (one self-contained file) and `summary.json`.

`write_report(out_dir, summary)` draws the charts from the summary's per-layer rows, renders the
page and writes both files atomically. The summary is produced by `deepfpga.report.summary`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPORT_NAME = "report.html"
SUMMARY_NAME = "summary.json"


def charts(summary: Mapping[str, Any]) -> dict[str, bytes]:
    """The two PNG charts of a run summary: {"time": ..., "roofline": ...}."""
    from deepfpga.report.figures import roofline_png, time_chart_png

    layers = summary["layers"]
    target = summary["target"]
    name = f"{summary['model']['name']} on {target['name']}"
    return {
        "time": time_chart_png(layers, f"Time per layer: compute vs transfer ({name})"),
        "roofline": roofline_png(layers, float(target["peak_gops"]),
                                 float(target["ddr_bandwidth_gbps"]), f"Roofline ({name})"),
    }


def write_report(out_dir: str | os.PathLike[str], summary: Mapping[str, Any]) -> dict[str, Path]:
    """Write `report.html` and `summary.json` into `out_dir` (created if needed)."""
    from deepfpga.fileio import atomic_write_text, json_default
    from deepfpga.report.html import render_html

    out = Path(out_dir)
    page = render_html(summary, charts(summary))
    text = json.dumps(summary, indent=2, default=json_default) + "\n"
    return {
        "report": atomic_write_text(out / REPORT_NAME, page),
        "summary": atomic_write_text(out / SUMMARY_NAME, text),
    }
