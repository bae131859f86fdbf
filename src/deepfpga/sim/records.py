"""The functional simulator's state records: the on-chip buffers and the deferred work (CALCs
whose accesses are checked but whose products are not yet computed, the tiles they read, SAVEs
waiting for them), and the bookkeeping of what a buffer extent holds (`deepfpga.sim.machine`
executes the instructions on them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepfpga.hw.isa import Calc, Save
from deepfpga.sim.dma import Geom
from deepfpga.sim.hazards import Checked, EntryHazards

# --- buffers -------------------------------------------------------------------------------------

class Buf:
    """A buffer: values (sample, entry) and, per entry, whether every sample holds the same
    value; its access records and checks are `hazards.EntryHazards`."""

    def __init__(self, name: str, entries: int, writer: int, reader: int, batch: int,
                 dtype: type):
        self.name = name
        # INPUT/WEIGHT/BIAS hold data, weights and biases in the narrowest signed integer
        # type of their elements (a LOAD copies bytes, no conversion); OUTPUT holds int64.
        self.val = np.zeros((batch, entries), dtype=dtype)
        self.uniform = np.zeros(entries, dtype=bool)
        self.h = EntryHazards(name, entries, writer, reader)

    @property
    def entries(self) -> int:
        return self.val.shape[1]

    def span(self, m: Checked, a: int, n: int, limit: int | None = None) -> slice:
        cap = self.entries if limit is None else limit
        if a < 0 or n < 0 or a + n > cap:
            area = "" if limit is None else " (FC weight area)"
            m.fail(f"{self.name} buffer entries [{a}, {a + n}) outside its {cap} entries{area}")
        return slice(a, a + n)

    def read(self, m: Checked, idx: slice | np.ndarray, what: str) -> None:
        """Check and record a read (the values are taken with `get`)."""
        self.h.read(m, idx, what)

    def get(self, idx: slice) -> np.ndarray:
        """The values, (n,) when every sample holds the same ones, else (batch, n)."""
        if self.uniform[idx].all():
            return self.val[0, idx]
        return self.val[:, idx]

    def written(self) -> np.ndarray:
        """Per entry: whether anything ever wrote it (a copy)."""
        return self.h.written()

    def preset(self, values: np.ndarray) -> None:
        """Fill the first len(values) entries as if loaded, the same for every sample (for
        checking one instruction on a given buffer state, as the RTL's tests do)."""
        n = len(values)
        self.val[:, :n] = values
        self.uniform[:n] = True
        self.h.preset(n)

    def write(self, m: Checked, idx: slice | np.ndarray | list[tuple[int, int]],
              values: np.ndarray | None, shared: bool = False) -> None:
        """Record a write (race check, valid bits); store `values` ((n,) shared by every
        sample, or (batch, n)) unless None: a deferred CALC stores its values later."""
        self.h.write(m, idx)
        if values is not None:
            self.val[:, idx] = values
            self.uniform[idx] = shared



# --- deferred work --------------------------------------------------------------------------------

@dataclass
class PendingCalc:
    """A CALC whose accesses are checked and recorded, its products not yet computed."""

    index: int
    ins: Calc
    key: tuple[int, ...]          # CALCs with equal keys read the same tile the same way
    tile: TileRef | None         # the input tile it reads (None for FC)
    w: np.ndarray                 # weights (to, K), or (batch, to, K) if they differ
    vec: np.ndarray | None        # FC input vector, (ti,) or (batch, ti)
    bias: np.ndarray | None       # (to,) or (batch, to)
    acc: slice
    out: slice | np.ndarray | None   # OUTPUT entries of its finalized values
    check: bool = True            # overflow possible (no static bound): check the sums
    wkey: tuple[Any, ...] | None = None   # what its CONV weights hold (`content_key`)


@dataclass(eq=False)
class TileRef:
    """An input tile read by deferred CALCs: live in the INPUT buffer at `span`, or (once the
    buffer was overwritten) its snapshot `data`, (batch, n)."""

    key: tuple[Any, ...]
    span: slice
    data: np.ndarray | None = None


@dataclass(eq=False)
class ConvChunk:
    """CONV CALC groups (on several tiles) whose products are one library product: the
    groups, their tiles, the bytes of their products; `key` as for `Machine._conv_weights`."""

    key: tuple[Any, ...]
    groups: list[list[PendingCalc]]
    tiles: list[np.ndarray]
    nbytes: int


@dataclass
class PendingSave:
    """A SAVE whose accesses are checked and recorded, its data not yet moved."""

    index: int
    ins: Save
    src: slice                    # OUTPUT entries it reads
    geom: Geom


def replace_extent(extents: list[tuple[int, int, tuple[Any, ...]]], dst: slice,
                    content: tuple[Any, ...]) -> list[tuple[int, int, tuple[Any, ...]]]:
    """Buffer extents after entries `dst` received `content` (a LOAD's source and data
    version): overlapped extents are forgotten."""
    a, b = dst.start, dst.stop
    return [e for e in extents if e[1] <= a or b <= e[0]] + [(a, b, content)]


def content_key(extents: list[tuple[int, int, tuple[Any, ...]]], span: slice
                 ) -> tuple[Any, ...] | None:
    """What buffer entries `span` hold, as (LOAD content, offset, length) when one LOAD
    filled them all (equal keys: equal values), else None."""
    for a, b, content in extents:
        if a <= span.start and span.stop <= b:
            return (content, span.start - a, span.stop - span.start)
    return None
