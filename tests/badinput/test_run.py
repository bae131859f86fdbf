"""`deepfpga run`: everything wrong is found before the flow runs."""

from __future__ import annotations

import time

import pytest

DIR_KINDS = ("file/", "ro", "empty", "long", "isfile")


@pytest.mark.parametrize("kind", DIR_KINDS)
def test_bad_out_found_before_the_flow(kind, work, bad_location, refused):
    path, match = bad_location(kind, "")
    t0 = time.perf_counter()
    refused(["run", f"--out={path}", "--json"], match, keep=[work / "existing.npz"])
    assert time.perf_counter() - t0 < 5  # the flow (a minute) did not run


@pytest.mark.parametrize("args,match", [
    (["--images", "0"], "positive"), (["--calib-size=-1"], "positive"),
    (["--batch-size", "x"], "positive"), (["--bits", "4"], "invalid choice"),
    (["--target", "zc707"], "neither a preset"), (["--data", "mnist"], "mnist"),
    (["nope-net"], "unknown model"), ([""], "must not be empty"),
])
def test_bad_arguments(args, match, work, refused):
    refused(["run", *args, "--out", work / "out"], match)


def test_bad_target_value(files, work, refused):
    (work / "t.toml").write_text(files.target.read_text().replace("clock_mhz = 100.0",
                                                                   "clock_mhz = nan"))
    refused(["run", "--target", work / "t.toml", "--out", work / "out"], "clock_mhz")


def test_calib_size_beyond_memory_found_before_the_flow(work, refused, monkeypatch):
    monkeypatch.setattr("deepfpga.data.memory.available_bytes", lambda: 256 << 20)
    t0 = time.perf_counter()
    refused(["run", "--calib-size", "100000", "--out", work / "out"], ["--calib-size", "GiB"])
    assert time.perf_counter() - t0 < 30
