"""Fixtures of the accelerator RTL tests: Verilator builds (one per design per session, cached
on disk across sessions) and the test-only stand-in top level `copy_dut`."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest


def _load_copy_dut() -> ModuleType:
    path = Path(__file__).with_name("copy_dut.py")
    spec = importlib.util.spec_from_file_location("deepfpga_tests_copy_dut", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def copy_dut() -> ModuleType:
    return _load_copy_dut()


@pytest.fixture(scope="session")
def copy_build(copy_dut):
    """Build the stand-in for an AXI data width, once per width per session."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed")
    from deepfpga.rtl.accel.verilator import build_model

    builds = {}

    def get(data_bits: int = 32):
        if data_bits not in builds:
            builds[data_bits] = build_model(copy_dut.verilog_text(data_bits), data_bits)
        return builds[data_bits]

    return get


@pytest.fixture(scope="session")
def accel_build():
    """The real accelerator's Verilator model per config, once per session (skips while the
    top level does not exist yet)."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed")
    pytest.importorskip("deepfpga.rtl.accel.top", reason="accelerator top level not present")
    from deepfpga.rtl.accel.driver import build_accelerator

    builds = {}

    def get(cfg):
        key = cfg.hash()
        if key not in builds:
            builds[key] = build_accelerator(cfg)
        return builds[key]

    return get
