"""Progress bars for long loops, usable from any layer (the CLI re-exports `progress`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             quiet: bool = False) -> Any:
    """A tqdm bar on stderr that disappears when stderr is not a terminal or `quiet` is set."""
    from tqdm import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, file=sys.stderr, leave=False)
