"""dse.store: the points file, appended point by point, and resuming it."""

from __future__ import annotations

import json

import pytest

from deepfpga.dse.store import FILE, PointStore
from deepfpga.errors import InputError

RUN = {"model": "m", "space": {"axes": {"num_pe": [1, 2]}}, "seed": 0}


def test_points_are_appended_and_read_back(tmp_path) -> None:
    s = PointStore(tmp_path, RUN, resume=False)
    s.append({"key": "a", "status": "ok", "metrics": {"fps": 1.5}})
    s.append({"key": "b", "status": "no-compile", "reason": "x"})
    lines = (tmp_path / FILE).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["run"] == RUN
    r = PointStore(tmp_path, RUN, resume=True)
    assert r.resumed == 2 and r.done["a"]["metrics"]["fps"] == 1.5
    # --resume without a file starts one
    assert PointStore(tmp_path / "new", RUN, resume=True).resumed == 0


def test_an_existing_file_needs_resume(tmp_path) -> None:
    PointStore(tmp_path, RUN, resume=False)
    with pytest.raises(InputError, match="exists: pass --resume"):
        PointStore(tmp_path, RUN, resume=False)


def test_resume_refuses_another_run_naming_the_key(tmp_path) -> None:
    PointStore(tmp_path, RUN, resume=False)
    with pytest.raises(InputError, match='made with seed = 0, this run has 1'):
        PointStore(tmp_path, {**RUN, "seed": 1}, resume=True)


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path) -> None:
    s = PointStore(tmp_path, RUN, resume=False)
    s.append({"key": "a", "status": "ok"})
    path = tmp_path / FILE
    with open(path, "ab") as fh:
        fh.write(b'{"key": "b", "sta')          # power lost mid-write
    r = PointStore(tmp_path, RUN, resume=True)
    assert list(r.done) == ["a"] and path.read_bytes().endswith(b"\n")
    r.append({"key": "b", "status": "ok"})
    assert list(PointStore(tmp_path, RUN, resume=True).done) == ["a", "b"]


def test_damaged_files_are_refused(tmp_path) -> None:
    s = PointStore(tmp_path, RUN, resume=False)
    s.append({"key": "a"})
    path = tmp_path / FILE
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\nnot json\n" + lines[1] + "\n")
    with pytest.raises(InputError, match="line 2 is not a point record"):
        PointStore(tmp_path, RUN, resume=True)
    path.write_text('{"hello": 1}\n')
    with pytest.raises(InputError, match="line 1 is not a deepfpga dse header"):
        PointStore(tmp_path, RUN, resume=True)
