"""Atomic output files: complete or absent, never half-written, ordinary permissions."""

import os

import numpy as np
import pytest

from deepfpga.fileio import atomic_save_npz, atomic_write_bytes, atomic_write_json


def test_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert os.listdir(p.parent) == ["out.bin"]
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_failed_write_keeps_old_file(tmp_path):
    p = tmp_path / "out.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"a": object()})
    assert p.read_text().strip().startswith("{")
    assert os.listdir(tmp_path) == ["out.json"]


def test_npz_loads_without_pickle(tmp_path):
    p = atomic_save_npz(tmp_path / "a.npz", {"w": np.arange(6).reshape(2, 3)})
    with np.load(p, allow_pickle=False) as z:
        assert z["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
