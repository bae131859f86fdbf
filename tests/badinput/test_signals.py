"""Interrupts and closed pipes: exit 130 / 1 with one line, never a traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", ["analyze", "simulate", "disasm"])
def test_keyboard_interrupt_exits_130(command, files, cli, monkeypatch):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("deepfpga.models.load_model", interrupt)
    monkeypatch.setattr("deepfpga.hw.config.load_config", interrupt)
    monkeypatch.setattr("deepfpga.hw.isa.decode_program", interrupt)
    argv = {"analyze": ["analyze", "fmnist-vgg"],
            "simulate": ["simulate", "fmnist-vgg", "--target", "tiny"],
            "disasm": ["disasm", files.program]}[command]
    rc, out, err = cli(argv)
    assert rc == 130
    assert err.strip() == f"deepfpga {command}: interrupted"


def test_broken_pipe_exits_1(cli, monkeypatch):
    def broken(*a, **k):
        raise BrokenPipeError

    monkeypatch.setattr("deepfpga.cli.analyze.print_json", broken)
    rc, out, err = cli(["analyze", "fmnist-vgg", "--json"])
    assert rc == 1 and "Traceback" not in err


def test_write_that_fails_mid_run_exits_2(files, work, cli, monkeypatch):
    """A location that turns unwritable after the early check: one line, exit 2."""
    def denied(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("deepfpga.compiler.artifact.atomic_write_bytes", denied)
    rc, out, err = cli(["compile", files.qmodel, "--target", "tiny", "-o", work / "b"])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Permission denied" in err
