"""The timing model agrees with the accelerator RTL (issue 13's calibration goal): on a small
compiled program for `tiny`, every layer within 5 % and the frame within 3 % of the RTL's
instruction trace under Verilator. benchmarks/bench_calibration.py measures the larger models."""

from __future__ import annotations

import numpy as np

from deepfpga.compiler import compile_model
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.sim.calibration import compare
from deepfpga.sim.timing import simulate_timing

TINY = load_config("tiny")


def _net():
    # strides 1 and 2, pooling, a channel count above the grid's, two FC layers
    return chain("cal", (3, 16, 16), [
        Conv2d("c1", (), in_channels=3, out_channels=5, kernel=(3, 3), padding=(1, 1)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=5, out_channels=8, kernel=(3, 3), stride=(2, 2)),
        ReLU("r2", ()),
        Flatten("f", ()), Linear("l1", (), in_features=72, out_features=40), ReLU("r3", ()),
        Linear("l2", (), in_features=40, out_features=10)])


def test_model_within_5_percent_per_layer_and_3_per_frame(accel_build) -> None:
    from deepfpga.rtl.accel.driver import RtlRunner

    rng = np.random.default_rng(13)
    graph = _net()
    q = random_qmodel(graph, rng, bw_d=TINY.data_bits, bw_w=TINY.weight_bits)
    c = compile_model(q, TINY)
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=(1, *graph.input_shape),
                     endpoint=True)
    with RtlRunner(c, accel_build(TINY)) as r:
        res = r.run(x)
    assert res.ok, res.error_message
    cal = compare(c, res.trace, res.cycles[0], simulate_timing(c))
    assert [r.name for r in cal.layers] == ["c1", "c2", "l1", "l2"]
    for row in cal.layers:
        assert row.rtl > 0 and abs(row.error) <= 0.05, row
    assert abs(cal.frame.error) <= 0.03, cal.frame
    # every instruction ran and was timed on both sides
    assert (res.trace["end"] >= res.trace["start"]).all()
