"""compiler.alloc: first-fit placement by lifetime, and the overlap proof of a manifest."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deepfpga.compiler.alloc import Region, check_no_overlap, first_fit
from deepfpga.compiler.compile import compile_architecture
from deepfpga.errors import InputError
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain


def test_first_fit_reuses_dead_space_and_aligns() -> None:
    placed = first_fit([("a", 100, 0, 1), ("b", 50, 2, 3), ("c", 10, 1, 2)], base=128)
    assert placed["a"] == 128
    assert placed["b"] == 128                    # a is dead by the time b lives
    assert placed["c"] == 128 + 128              # overlaps both lifetimes: after a, aligned
    assert all(v % 64 == 0 for v in placed.values())


def test_region_round_trip() -> None:
    r = Region("t:x", "fmap", 64, 10, 0, 3, True)
    assert Region.from_dict(0, r.to_dict()) == r and r.end == 74
    with pytest.raises(InputError, match=r"regions\[2\] is malformed"):
        Region.from_dict(2, {"name": "x"})


def test_check_no_overlap_detects_conflicts() -> None:
    g = chain("n", (3, 14, 14), [
        Conv2d("c1", (), in_channels=3, out_channels=6, kernel=(5, 5), padding=(2, 2)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=6, out_channels=5, kernel=(3, 3), stride=(2, 2)),
        Flatten("f", ()), Linear("l1", (), in_features=45, out_features=30)])
    c = compile_architecture(g, load_config("tiny"))
    regions, size = list(c.manifest.regions), c.manifest.ddr_size
    assert check_no_overlap(regions, size) > 0
    fm = [k for k, r in enumerate(regions) if r.kind in ("fmap", "input", "output")]
    r0, r1 = regions[fm[0]], regions[fm[1]]
    bad = list(regions)
    bad[fm[1]] = replace(r1, start=r0.start, first=r0.first)
    with pytest.raises(InputError, match="overlap while both are live"):
        check_no_overlap(bad, size)
    bad = [replace(regions[0], size=size + 1), *regions[1:]]
    with pytest.raises(InputError, match="outside the"):
        check_no_overlap(bad, size)
    bad = [replace(regions[0], first=3, last=1), *regions[1:]]
    with pytest.raises(InputError, match="empty lifetime"):
        check_no_overlap(bad, size)
