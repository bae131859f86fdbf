"""The results file of a sweep: `points.jsonl` in the output directory, written as it goes.

Line 1 is a header naming the run (model, device, widths, space, search, seed, ...); every later
line is one evaluated point. A point is appended with a single `write` of one complete line to a
file opened for appending, then flushed to disk (`fsync`): a point is either entirely in the file
or not at all, and an interrupted sweep (Ctrl-C, a crash) keeps every point finished before it.
A torn last line (power lost in the middle of the write) has no newline; reading drops it and
cuts the file back to the last whole line, so the point is simply evaluated again.

`--resume` reads the file, checks that the header names the same run, and the search, which is
deterministic, skips every point the file already holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfpga.errors import InputError
from deepfpga.fileio import atomic_write_text, json_default

FILE = "points.jsonl"
FORMAT = "deepfpga-dse-points"
VERSION = 1


def _line(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=json_default, allow_nan=False) + "\n"


class PointStore:
    """The points of one run: those read back on resume (`done`) and those appended since."""

    def __init__(self, out_dir: str | os.PathLike[str], run: Mapping[str, Any], *,
                 resume: bool) -> None:
        self.path = Path(out_dir) / FILE
        self.run = json.loads(_line(dict(run)))       # as it reads back from the file
        self.done: dict[str, dict[str, Any]] = {}
        if resume and self.path.is_file():
            self._read()
        elif self.path.exists():
            raise InputError(f"{self.path} exists: pass --resume to continue that sweep, or"
                             " choose another --out")
        else:
            atomic_write_text(self.path, _line({"format": FORMAT, "version": VERSION,
                                                "run": self.run}))
        self.resumed = len(self.done)

    def _read(self) -> None:
        data = self.path.read_bytes()
        good = data.rfind(b"\n") + 1          # a torn last line has no newline
        lines = data[:good].decode("utf-8", errors="replace").splitlines()
        where = str(self.path)
        try:
            head = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            head = None
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise InputError(f"{where}: line 1 is not a deepfpga dse header")
        if head.get("version") != VERSION:
            raise InputError(f"{where}: format version {head.get('version')!r}, expected"
                             f" {VERSION}")
        theirs = head.get("run", {})
        for k in sorted(set(theirs) | set(self.run)):
            if theirs.get(k) != self.run.get(k):
                raise InputError(f"{where}: cannot resume: it was made with {k} ="
                                 f" {json.dumps(theirs.get(k))}, this run has"
                                 f" {json.dumps(self.run.get(k))}")
        for n, text in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(text)
                self.done[rec["key"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{where}: line {n} is not a point record") from None
        if good != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good)

    def append(self, record: Mapping[str, Any]) -> None:
        data = _line(dict(record)).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:                       # one write, unless the kernel takes less
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done[record["key"]] = json.loads(data)
