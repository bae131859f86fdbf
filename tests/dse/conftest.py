"""Shared pieces of the DSE tests: a small space on a small network (fmnist-vgg compiles and
times in ~0.05 s), written as a space file."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_SPACE = """
# 2 × 3 PE shapes, two buffer splits: 12 points, all on XC7Z020 at 8 bits
[axes]
num_pe = [1, 2]
convolvers_per_pe = [4, 8, 16]
input_share = [0.4, 0.5]

[fixed]
bram_share = 0.9
weight_share = 0.2
fc_share = 0.5
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def small_space(tmp_path: Path) -> Path:
    return _write(tmp_path / "space.toml", SMALL_SPACE)


GA_SPACE = """
# 4 x 4 PE shapes, two port widths, four buffer splits: 128 points, for the genetic search
[axes]
num_pe = [1, 2, 3, 4]
convolvers_per_pe = [4, 8, 12, 16]
datain_port_num = [4, 8]
input_share = [0.3, 0.5]
weight_share = [0.1, 0.2]

[fixed]
bram_share = 1.0
fc_share = 0.5
"""


@pytest.fixture
def ga_space(tmp_path: Path) -> Path:
    return _write(tmp_path / "ga-space.toml", GA_SPACE)
