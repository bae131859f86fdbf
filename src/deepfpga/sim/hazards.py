"""Hazard and race checking for the functional simulator (`deepfpga.sim.functional`).

The machine executes the program in program order — one valid interleaving of the three
engines. This module proves the program safe in *every* interleaving its dependency tokens
allow: each engine carries a vector clock (the last instruction of each engine it provably
follows, propagated through tokens, `Dependencies`), and an access that conflicts with an
instruction of another engine the accessor does not provably follow is a race. Per interval of
buffer entries (`EntryHazards`) and per DDR byte of the feature-map arena (`DdrHazards`) it
records the last write and read; it also checks reads of never-written data, DDR accesses
outside the regions live at a layer, token underflow and tokens left at an END.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import numpy as np

from deepfpga.compiler.alloc import Region
from deepfpga.errors import InputError
from deepfpga.hw import arch
from deepfpga.hw.isa import Instruction, Load, Save
from deepfpga.sim.dma import Gather, Geom

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Manifest

# Engines, channels and which flag pops or pushes which channel: the accelerator's one table
LOAD, CALC, SAVE = arch.LOAD, arch.CALC, arch.SAVE
ENGINES = arch.ENGINES
ENGINE_OF = arch.ENGINE_OF
CHANNELS = arch.CHANNELS
# per engine: flag → (channel, is_pop); a flag absent here has no neighbour on that side
_FLAGS = {e: arch.flag_channels(e) for e in (LOAD, CALC, SAVE)}


class SimulationError(InputError):
    """The program did something the hardware must not do; `index` names the instruction."""

    def __init__(self, index: int, ins: Instruction | None, message: str):
        self.index = index
        what = type(ins).__name__.upper() if ins is not None else "?"
        super().__init__(f"instruction {index} ({what}): {message}")


class Checked(Protocol):
    """What the checks need of the machine: the instruction being executed, its engine, the
    vector clock it runs under, whether races are checked, and how to fail."""

    index: int
    engine: int
    vc: np.ndarray
    check_races: bool

    def fail(self, message: str) -> NoReturn: ...


class Dependencies:
    """The dependency tokens between the engines and each engine's vector clock."""

    def __init__(self) -> None:
        self.engine_vc = [np.full(3, -1, dtype=np.int64) for _ in range(3)]
        self.tokens: list[deque[np.ndarray]] = [deque() for _ in range(4)]

    def begin(self, m: Checked, eng: int, ins: Instruction) -> tuple[np.ndarray, list[int]]:
        """Pop the instruction's tokens: its vector clock, and the channels it pushes to."""
        vc = self.engine_vc[eng].copy()
        pushes = []
        for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
            if not getattr(ins, flag):
                continue
            spec = _FLAGS[eng].get(flag)
            if spec is None:
                m.fail(f"{flag}=1 but the {ENGINES[eng]} engine has no neighbour there")
            ch, is_pop = spec
            if is_pop:
                if not self.tokens[ch]:
                    m.fail(f"token underflow: {flag} waits for a {CHANNELS[ch]} token that no"
                           " earlier instruction pushed (can never be satisfied in program"
                           " order)")
                vc = np.maximum(vc, self.tokens[ch].popleft())
            else:
                pushes.append(ch)
        return vc, pushes

    def commit(self, eng: int, index: int, vc: np.ndarray, pushes: list[int]) -> None:
        """The instruction is done: its engine has run it, its pushes carry that knowledge."""
        vc[eng] = index
        self.engine_vc[eng] = vc
        for ch in pushes:
            self.tokens[ch].append(vc.copy())

    def end(self, m: Checked, ins: Instruction) -> None:
        left = {CHANNELS[c]: len(q) for c, q in enumerate(self.tokens) if q}
        if left:
            m.fail(f"tokens pushed but never popped at END: {left}")
        if ins.pop_prev or ins.pop_next or ins.push_prev or ins.push_next:
            m.fail("END carries dependency flags")
        for e in range(3):
            self.engine_vc[e][:] = m.index


Entries = slice | np.ndarray | list[tuple[int, int]]


def _runs(idx: Entries) -> list[tuple[int, int]]:
    """Entries (a slice, an index array or [start, end) ranges) as sorted, disjoint runs."""
    if isinstance(idx, slice):
        return [(idx.start, idx.stop)] if idx.stop > idx.start else []
    if isinstance(idx, list):
        out: list[tuple[int, int]] = []
        for a, b in sorted(r for r in idx if r[1] > r[0]):
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], b))
            else:
                out.append((a, b))
        return out
    u = np.unique(idx)
    if not len(u):
        return []
    brk = np.flatnonzero(np.diff(u) != 1) + 1
    starts = u[np.r_[0, brk]].tolist()
    ends = (u[np.r_[brk - 1, len(u) - 1]] + 1).tolist()
    return list(zip(starts, ends, strict=True))


class EntryHazards:
    """The access records of one buffer's entries, per interval: disjoint, sorted [start, end)
    ranges of ever-written entries, each with its last write (by the writer engine) and last
    read by the reader engine, split where an access starts or ends inside one and merged
    again with equal neighbours (exact: never widened, unlike the compiler's conservative
    records). LOAD writes INPUT/WEIGHT/BIAS and CALC reads them; CALC writes OUTPUT and SAVE
    reads it (CALC's own accumulator reads are ordered by its in-order engine)."""

    def __init__(self, name: str, entries: int, writer: int, reader: int):
        self.name = name
        self.entries = entries
        self.writer, self.reader = writer, reader
        self.starts: list[int] = []
        self.iv: list[list[int]] = []      # [start, end, last write, last read] (indices)

    def _overlapping(self, a: int, b: int) -> tuple[int, int]:
        """The index range [i0, i1) of the intervals meeting [a, b)."""
        i0 = bisect_right(self.starts, a) - 1
        if i0 < 0 or self.iv[i0][1] <= a:
            i0 += 1
        return i0, bisect_left(self.starts, b)

    def _split(self, a: int, b: int) -> tuple[int, int]:
        """Split the intervals crossing a or b; the index range of those inside [a, b)."""
        i0, i1 = self._overlapping(a, b)
        if i0 < i1 and self.iv[i0][0] < a:
            e = self.iv[i0]
            self.iv.insert(i0 + 1, [a, e[1], e[2], e[3]])
            self.starts.insert(i0 + 1, a)
            e[1] = a
            i0, i1 = i0 + 1, i1 + 1
        if i0 < i1 and self.iv[i1 - 1][1] > b:
            e = self.iv[i1 - 1]
            self.iv.insert(i1, [b, e[1], e[2], e[3]])
            self.starts.insert(i1, b)
            e[1] = b
        return i0, i1

    def _merge(self, i0: int, i1: int) -> None:
        """Merge equal touching neighbours among intervals i0 - 1 .. i1."""
        k = max(1, i0)
        stop = min(len(self.iv), i1 + 1)
        while k < stop:
            p, e = self.iv[k - 1], self.iv[k]
            if p[1] == e[0] and p[2] == e[2] and p[3] == e[3]:
                p[1] = e[1]
                del self.iv[k], self.starts[k]
                stop -= 1
            else:
                k += 1

    def read(self, m: Checked, idx: Entries, what: str) -> None:
        runs = _runs(idx)
        for a, b in runs:
            i0, i1 = self._overlapping(a, b)
            pos = a
            for e in self.iv[i0:i1]:
                if e[0] > pos:
                    break
                pos = e[1]
            if pos < b:
                m.fail(f"reads {self.name} entry {pos} ({what}) that was never written")
        if not (m.check_races and m.engine == self.reader):
            return
        j = self._last(runs, 2)
        if j > m.vc[self.writer]:
            m.fail(f"reads {self.name} entries written by instruction {j}"
                   f" ({ENGINES[self.writer]}) without a dependency on it (race)")
        for a, b in runs:
            i0, i1 = self._split(a, b)
            for e in self.iv[i0:i1]:
                e[3] = m.index                  # indices only grow: no max needed
            self._merge(i0, i1)

    def write(self, m: Checked, idx: Entries) -> None:
        runs = _runs(idx)
        if m.check_races:
            j = self._last(runs, 3)
            if j > m.vc[self.reader]:
                m.fail(f"overwrites {self.name} entries still read by instruction {j}"
                       f" ({ENGINES[self.reader]}) without a dependency on it (race)")
        for a, b in runs:
            # the write's own index only matters to race checks (as before: -1 without them)
            self._set(a, b, m.index if m.check_races else -1)

    def _last(self, runs: list[tuple[int, int]], field: int) -> int:
        """The latest write (field 2) or read (3) of any entry of the runs, -1 if none."""
        j = -1
        for a, b in runs:
            i0, i1 = self._overlapping(a, b)
            j = max(j, max((e[field] for e in self.iv[i0:i1]), default=-1))
        return j

    def _set(self, a: int, b: int, write: int) -> None:
        """[a, b) written by instruction `write`: gaps become intervals, reads are kept."""
        i0, i1 = self._split(a, b)
        pieces: list[list[int]] = []
        pos = a
        for e in self.iv[i0:i1]:
            if e[0] > pos:
                pieces.append([pos, e[0], write, -1])
            pieces.append([e[0], e[1], write, e[3]])
            pos = e[1]
        if pos < b:
            pieces.append([pos, b, write, -1])
        self.iv[i0:i1] = pieces
        self.starts[i0:i1] = [e[0] for e in pieces]
        self._merge(i0, i0 + len(pieces))

    def preset(self, n: int) -> None:
        """Entries [0, n) hold data written before the program (tests of one instruction)."""
        if n > 0:
            self._set(0, n, -1)

    def written(self) -> np.ndarray:
        """Per entry: whether anything ever wrote it."""
        out = np.zeros(self.entries, dtype=bool)
        for e in self.iv:
            out[e[0]:e[1]] = True
        return out


@dataclass(frozen=True)
class DdrMap:
    """What the machine needs of a manifest: the feature-map arena (per-sample DDR bytes),
    the regions with their lifetimes, and each stage's schedule position (by stage index)."""

    arena: tuple[int, int]
    regions: Sequence[Region]
    positions: Mapping[int, int]

    @staticmethod
    def of(manifest: Manifest) -> DdrMap:
        return DdrMap(manifest.arena, manifest.regions,
                      {s.index: s.position for s in manifest.layers})


class DdrHazards:
    """DDR accesses: inside the image and the regions live at the layer; per byte of the
    feature-map arena, whether it was written and by which SAVE last, and its last LOAD."""

    def __init__(self, ddr_map: DdrMap, ddr_bytes: int):
        a0, a1 = ddr_map.arena
        self.arena = (a0, a1)
        self.ddr_bytes = ddr_bytes
        n = max(0, a1 - a0)
        self.written = np.zeros(n, dtype=bool)
        self.last_save = np.full(n, -1, dtype=np.int32)
        self.last_load = np.full(n, -1, dtype=np.int32)
        regs = ddr_map.regions
        self.reg_start = np.array([r.start for r in regs], dtype=np.int64)
        self.reg_end = self.reg_start + np.array([r.size for r in regs], dtype=np.int64)
        self.reg_first = np.array([r.first for r in regs], dtype=np.int64)
        self.reg_last = np.array([r.last for r in regs], dtype=np.int64)
        self.reg_writable = np.array([r.writable for r in regs], dtype=bool)
        self.position = dict(ddr_map.positions)
        self._live_cache: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}

    def _live(self, pos: int, writable: bool) -> tuple[np.ndarray, np.ndarray]:
        """Merged intervals of the regions live at schedule position `pos`."""
        key = (pos, writable)
        if key not in self._live_cache:
            sel = (self.reg_first <= pos) & (pos <= self.reg_last)
            if writable:
                sel &= self.reg_writable
            order = np.argsort(self.reg_start[sel])
            s, e = self.reg_start[sel][order], self.reg_end[sel][order]
            ms: list[int] = []
            me: list[int] = []
            for a, b in zip(s.tolist(), e.tolist(), strict=True):
                if ms and a <= me[-1]:
                    me[-1] = max(me[-1], b)
                else:
                    ms.append(a)
                    me.append(b)
            self._live_cache[key] = (np.array(ms, dtype=np.int64), np.array(me, dtype=np.int64))
        return self._live_cache[key]

    def segments(self, m: Checked, ins: Load | Save, eb: int, writing: bool,
                 seg: int | None = None) -> Geom:
        """The DMA geometry of an instruction (segments of `seg` bytes, default length·eb),
        after checking it against the DDR image and the regions live at this stage."""
        seg = ins.length * eb if seg is None else seg
        geom = Geom(ins.ddr_addr, ins.n2, ins.stride2, ins.n1, ins.stride1, seg)
        if geom.count == 0:
            return geom
        if geom.end > self.ddr_bytes:
            m.fail(f"DDR bytes up to {geom.end} outside the {self.ddr_bytes}-byte DDR image")
        pos = self.position.get(ins.layer)
        if pos is None:
            m.fail(f"layer {ins.layer} is not in the manifest's layer table")
        ms, me = self._live(int(pos), writing)
        starts = geom.starts()
        k = np.searchsorted(ms, starts, side="right") - 1
        ok = (k >= 0) & (starts + seg <= me[np.maximum(k, 0)]) if len(ms) else \
            np.zeros(len(starts), dtype=bool)
        if not ok.all():
            b = int(starts[np.flatnonzero(~ok)[0]])
            kind = "writable region" if writing else "region"
            m.fail(f"DDR bytes [{b}, {b + seg}) are outside every {kind} live at this layer")
        return geom

    def where(self, geom: Geom) -> str:
        """'const' (constants only), 'arena' (feature maps only) or 'both'."""
        a0, a1 = self.arena
        if geom.count == 0 or geom.end <= a0 or geom.start >= a1:
            return "const"
        return "arena" if geom.start >= a0 and geom.end <= a1 else "both"

    def _views(self, geom: Geom, where: str) -> tuple[Any, Any, Any] | None:
        """(written, last_save, last_load) views of the arena bytes a transfer touches."""
        if where == "const":
            return None
        a0, a1 = self.arena
        if where == "both":
            idx = geom.indices()
            sel = idx[(idx >= a0) & (idx < a1)] - a0
            return Gather(self.written, sel), Gather(self.last_save, sel), \
                Gather(self.last_load, sel)
        return (geom.view(self.written, a0), geom.view(self.last_save, a0),
                geom.view(self.last_load, a0))

    def load(self, m: Checked, geom: Geom, where: str) -> int:
        """Check and record a LOAD's DDR reads; returns the version of the data it reads (the
        last SAVE of those bytes, -1 for constants)."""
        views = self._views(geom, where)
        if views is None:
            return -1
        written, last_save, last_load = views
        if not written[...].all():
            m.fail(f"reads DDR bytes of the feature-map arena that no SAVE (or the host)"
                   f" has written (in [{geom.start}, {geom.end}))")
        version = int(last_save[...].max(initial=-1))
        if m.check_races:
            if version > m.vc[SAVE]:
                m.fail(f"reads DDR bytes saved by instruction {version} (SAVE) without a"
                       " dependency on it (race)")
            last_load[...] = m.index
        return version

    def save(self, m: Checked, geom: Geom, where: str) -> None:
        """Check and record a SAVE's DDR writes."""
        views = self._views(geom, where)
        if views is None:
            return
        written, last_save, last_load = views
        if m.check_races:
            j = int(last_load[...].max(initial=-1))
            if j > m.vc[LOAD]:
                m.fail(f"overwrites DDR bytes still read by instruction {j} (LOAD)"
                       " without a dependency on it (race)")
        last_save[...] = m.index     # also the data's version (tile identity)
        written[...] = True

    def host_wrote(self, start: int, count: int) -> None:
        a = start - self.arena[0]
        self.written[a:a + count] = True
