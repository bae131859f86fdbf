"""A sweep's outcome as one JSON-ready dict (`summary.json`), and the files written from it:
the summary, the HTML report (deepfpga.report.dse) and the best point as a TOML target."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepfpga.dse.build import INVALID, NO_COMPILE, NO_FIT, OK, TIMING_ERROR
from deepfpga.dse.pareto import best, pareto_front

SUMMARY, REPORT, BEST = "summary.json", "dse.html", "best.toml"


def row(record: Mapping[str, Any], name: str = "") -> dict[str, Any]:
    """What the tables and the chart show of an evaluated point."""
    m, res = record.get("metrics") or {}, record["resources"]
    return {"name": name, "key": record["key"], "point": record["point"],
            "config": record["config"], "multipliers": res["multipliers"],
            "fps": m.get("fps"), "gops": m.get("gops"), "conv_gops": m.get("conv_gops"),
            "frame_ms": m.get("frame_ms"), "share": res["share"], "resources": res,
            "status": record["status"], "reason": record.get("reason", "")}


def build_summary(*, request: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                  rejected: Mapping[str, int], reasons: Mapping[str, str],
                  presets: Sequence[Mapping[str, Any]], search: Mapping[str, Any],
                  executor: Mapping[str, Any], space: Mapping[str, Any], seconds: float,
                  fresh: int, paper: Mapping[str, Any] | None, interrupted: bool,
                  files: Mapping[str, str]) -> dict[str, Any]:
    statuses = [r["status"] for r in records]
    counts = {"evaluated": len(records), "fresh": fresh, "from_file": len(records) - fresh,
              **{s: statuses.count(s) for s in (OK, NO_COMPILE, TIMING_ERROR)},
              INVALID: int(rejected.get(INVALID, 0)), NO_FIT: int(rejected.get(NO_FIT, 0))}
    why = dict(reasons)
    for r in records:
        if r["status"] != OK:
            why.setdefault(r["status"], f"{r['key']}: {r.get('reason', '')}")
    front = pareto_front(records)
    top = best(records)
    return {
        **request, "interrupted": interrupted, "search": dict(search),
        "executor": dict(executor), "space": dict(space), "counts": counts, "reasons": why,
        "seconds": seconds, "points_per_second": fresh / seconds if seconds > 0 else None,
        "points": [{"key": r["key"], "fps": r["metrics"]["fps"],
                    "share": r["resources"]["share"]} for r in records if r["status"] == OK],
        "front": [row(r, f"#{i + 1}") for i, r in enumerate(front)],
        "best": row(top, "best") if top else None,
        "presets": list(presets), "paper": dict(paper) if paper else None,
        "files": dict(files),
    }


def write_outputs(out: Path, summary: dict[str, Any], best_toml: str | None) -> dict[str, Path]:
    """summary.json, dse.html and (when there is a best point) best.toml, each atomically."""
    from deepfpga.fileio import atomic_write_text, json_default
    from deepfpga.report.dse import front_png, render_dse_html

    files = {"summary": out / SUMMARY, "report": out / REPORT}
    if best_toml is not None:
        files["best"] = out / BEST
    summary["files"] = {**summary["files"], **{k: str(v) for k, v in files.items()}}
    if best_toml is not None:
        atomic_write_text(files["best"], best_toml)
    atomic_write_text(files["report"], render_dse_html(summary, front_png(summary)))
    atomic_write_text(files["summary"],
                      json.dumps(summary, indent=2, default=json_default) + "\n")
    return files
