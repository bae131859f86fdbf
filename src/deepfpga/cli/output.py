"""Shared output conventions: JSON on stdout only, aligned tables, quiet progress bars."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from deepfpga.fileio import json_default
from deepfpga.progress import progress

__all__ = ["add_json_flag", "fmt_num", "print_json", "progress", "table"]


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout only")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=json_default) + "\n")


def fmt_num(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}" if abs(v) < 1e-3 else f"{v:.{digits}f}"
    return str(v)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    """An aligned text table: text columns left-aligned, numbers right-aligned."""
    raw = [list(r) for r in rows]
    cells = [[fmt_num(c, digits) for c in r] for r in raw]
    numeric = [
        all(isinstance(r[i], int | float | np.integer | np.floating) and not isinstance(r[i], bool)
            for r in raw if r[i] is not None) and bool(raw)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(vals, widths, numeric, strict=True)
        ).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)
