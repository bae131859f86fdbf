"""The small network the compiler tests share: CONV with a 5×5 kernel (sub-kernels), fused
ReLU + pool, a strided CONV, and two FC layers."""

from __future__ import annotations

import pytest

from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.ir.graph import Graph


@pytest.fixture
def small_net() -> Graph:
    return chain("n", (3, 14, 14), [
        Conv2d("c1", (), in_channels=3, out_channels=6, kernel=(5, 5), padding=(2, 2)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=6, out_channels=5, kernel=(3, 3), stride=(2, 2)),
        Flatten("f", ()), Linear("l1", (), in_features=45, out_features=30), ReLU("r2", ()),
        Linear("l2", (), in_features=30, out_features=7)])
