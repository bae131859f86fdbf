"""The report module: time breakdown, charts, HTML, written files."""

import base64
import json
import re

import numpy as np
import pytest

from deepfpga.hw.isa import Calc, End, Load, Save
from deepfpga.report import REPORT_NAME, SUMMARY_NAME, write_report
from deepfpga.report.breakdown import time_splits
from deepfpga.report.figures import roofline_png, time_chart_png
from deepfpga.report.html import render_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_time_splits_add_up_to_the_window():
    ins = [Load(layer=0), Calc(layer=0), Save(layer=0), Load(layer=1), Calc(layer=1), End()]
    start = np.array([0, 5, 20, 25, 40, 50])
    end = np.array([10, 20, 25, 30, 50, 50])
    s0, s1 = time_splits(ins, start, end)
    # layer 0: window [0, 25); CALC [5, 20); DMA [0, 10) ∪ [20, 25)
    assert (s0.window_cycles, s0.compute_only, s0.overlap, s0.transfer_only, s0.waiting) == \
        (25, 10, 5, 10, 0)
    # layer 1: window [25, 50); DMA [25, 30); CALC [40, 50); 10 cycles idle between
    assert (s1.window_cycles, s1.compute_only, s1.overlap, s1.transfer_only, s1.waiting) == \
        (25, 10, 0, 5, 10)
    for s in (s0, s1):
        assert s.compute_only + s.overlap + s.transfer_only + s.waiting == s.window_cycles


def test_time_splits_clip_prefetch_into_the_previous_window():
    # Layer 1's LOAD runs during layer 0 (prefetch): only its part after layer 0 ends counts.
    ins = [Calc(layer=0), Load(layer=1), Calc(layer=1), End()]
    start = np.array([0, 5, 12, 20])
    end = np.array([10, 15, 20, 20])
    s0, s1 = time_splits(ins, start, end)
    assert s0.window_cycles == 10 and s0.compute_only == 10
    assert s1.window_cycles == 10
    # window [10, 20): LOAD clipped to [10, 15), CALC [12, 20), both [12, 15)
    assert s1.transfer_busy == 5 and s1.compute_busy == 8 and s1.overlap == 3
    assert (s1.transfer_only, s1.compute_only, s1.waiting) == (2, 5, 0)
    assert s1.compute_only + s1.overlap + s1.transfer_only + s1.waiting == 10


def test_time_splits_refuse_mismatched_arrays():
    with pytest.raises(ValueError):
        time_splits([Calc(), End()], np.array([0]), np.array([1, 2]))


def _row(name, kind, ms, gops, oi, exact=True):
    return {
        "name": name, "kind": kind, "fused": [name, "relu"], "tiling": "8x8 rows·cols, 4→4 ch",
        "latency_ms": ms, "compute_ms": ms * 0.8, "transfer_ms": ms * 0.4,
        "split_ms": {"compute_only": ms * 0.6, "overlap": ms * 0.2, "transfer_only": ms * 0.2,
                     "waiting": 0.0},
        "ops": int(gops * ms * 1e6), "gops": gops, "bound": "compute", "utilisation": 0.5,
        "bytes": int(gops * ms * 1e6 / oi), "op_intensity": oi, "bit_exact": exact,
        "mismatches": 0 if exact else 3, "slot_utilisation": 0.25,
        "why_not_100": "window 40 %",
        "lost_causes": {"idle_convolvers": 0.2, "window": 0.4, "bandwidth": 0.0,
                        "pass_overhead": 0.15},
    }


def synthetic_summary():
    layers = [_row("conv<1>", "conv", 0.5, 10.0, 40.0), _row("fc1", "fc", 0.2, 0.5, 1.0, False)]
    return {
        "created": "2024-01-01T00:00:00+00:00", "deepfpga_version": "0.1.0",
        "command": "deepfpga run m & co",
        "model": {"name": "m<x>", "input_shape": [1, 28, 28], "layers": 6, "spec": "m"},
        "target": {"name": "tiny", "device": "LFE5U-85F", "clock_mhz": 100.0, "num_pe": 1,
                   "convolvers_per_pe": 4, "peak_gops": 7.2, "ddr_bandwidth_gbps": 0.8},
        "data": {"name": "d", "test_images": 10, "calib_images": 5, "calib_split": "train"},
        "quantization": {"bits": "8", "method": "dynamic", "calib_size": 5,
                         "input_format": {"bw": 8, "fl": 7}, "saturated_test": 2,
                         "layers": [{"name": "conv<1>", "kind": "conv",
                                     "input": {"bw": 8, "fl": 7}, "weight": {"bw": 8, "fl": 6},
                                     "bias": {"bw": 16, "fl": 10},
                                     "output": {"bw": 8, "fl": 4}}]},
        "accuracy": {"images": 10,
                     "simulated": {"top1": 0.8, "top5": 1.0, "k5": 5, "correct1": 8,
                                   "correct5": 10},
                     "float": {"top1": 0.9, "top5": 1.0, "k5": 5, "correct1": 9,
                               "correct5": 10}},
        "bit_exact": {"ok": False, "values_compared": 1000, "mismatches": 3,
                      "layers": [{"layer": "relu", "written_by": "conv<1>", "values": 900,
                                  "mismatches": 0, "first_mismatch": None},
                                 {"layer": "fc1", "written_by": "fc1", "values": 100,
                                  "mismatches": 3, "first_mismatch": None}]},
        "performance": {"cycles": 70000, "frame_ms": 0.7, "fps": 1428.6, "ops": 5_100_000,
                        "gops": 7.3, "conv_gops": 10.0, "fc_gops": 0.5, "peak_gops": 7.2},
        "layers": layers,
        "host_layers": ["softmax"],
        "steps": [{"name": "target", "seconds": 0.1, "note": "tiny"}],
    }


def test_charts_are_png():
    s = synthetic_summary()
    for png in (time_chart_png(s["layers"]), roofline_png(s["layers"], 7.2, 0.8)):
        assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_html_holds_the_table_images_and_escapes():
    s = synthetic_summary()
    page = render_html(s, {"time": b"\x89PNGtime", "roofline": b"\x89PNGroof"})
    assert page.startswith("<!DOCTYPE html>")
    assert '<table id="layers">' in page
    assert page.count("data:image/png;base64,") == 2
    assert base64.b64encode(b"\x89PNGtime").decode() in page
    # user-controlled names are escaped, never raw markup
    assert "conv<1>" not in page and "conv&lt;1&gt;" in page
    assert "m &amp; co" in page
    # the mismatching layer is flagged, the good one is not
    assert page.count('<span class="bad">NO</span>') >= 2
    body = page.split('<table id="layers">')[1].split("</table>")[0].split("<tbody>")[1]
    rows = re.findall(r"<tr>.*?</tr>", body)
    assert len(rows) == 2
    assert "Q8.7" in page and "softmax" in page
    # the slots used and every cause that loses some, largest first
    assert "25.00 %" in rows[0]
    assert "window 40.0 %, idle convolvers 20.0 %, pass overhead 15.0 %" in rows[0]
    assert "bandwidth 0.0" not in rows[0]


def test_write_report_writes_both_files(tmp_path):
    s = synthetic_summary()
    s["layers"][0]["ops"] = np.int64(s["layers"][0]["ops"])  # numpy scalars are converted
    files = write_report(tmp_path / "out", s)
    assert files["report"] == tmp_path / "out" / REPORT_NAME
    page = files["report"].read_text()
    imgs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(imgs) == 2
    assert all(base64.b64decode(b).startswith(PNG_MAGIC) for b in imgs)
    back = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert back["layers"][0]["name"] == "conv<1>"
    assert back["bit_exact"]["mismatches"] == 3
    assert not list((tmp_path / "out").glob(".*.tmp"))
