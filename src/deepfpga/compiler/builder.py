"""Program builder: emits instructions and derives their dependency flags from what they touch.

Every instruction declares the buffer ranges it reads and writes and the DDR regions it loads
from or saves to. The builder finds the last conflicting instruction of another engine (a LOAD
overwriting entries a CALC still reads, a CALC reading entries a LOAD writes, a CALC writing
staging entries a SAVE still reads, a SAVE reading what a CALC finalized, a LOAD reading a
region a SAVE wrote, a SAVE overwriting a dead region a LOAD still reads) and links the two with
a token — unless the consumer already waits for it transitively (vector clocks over the three
engines). LOAD and SAVE have no channel of their own, so a dependency between them goes through
a no-operation CALC (to = 0).

Token matching: on each channel the k-th pop is satisfied by the k-th push. The builder only
adds an edge when its producer comes after every producer the consumer's engine already waited
for, so pushes and pops pair up in order, each instruction pushes and pops at most once per
channel, and every dependency points backwards in program order: the program is deadlock-free
and correct in any interleaving the tokens allow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from deepfpga.hw.arch import CALC, CHANNEL_FLAGS, ENGINE_OF, LOAD, SAVE
from deepfpga.hw.isa import Calc, End, Instruction, Load, Save

_MAX_INTERVALS = 48


@dataclass
class _Rec:
    cls: type[Instruction]
    fields: dict[str, int]
    engine: int
    flags: dict[str, int] = field(default_factory=dict)


class _Intervals:
    """Ranges of one buffer with their last writer and last reader (conservative when merged)."""

    def __init__(self) -> None:
        self.items: list[list[int]] = []    # [start, end, last_write, last_read]

    def last(self, a: int, b: int, which: int) -> int:
        return max((e[which] for e in self.items if e[0] < b and a < e[1]), default=-1)

    def write(self, a: int, b: int, idx: int) -> None:
        # The writer has already waited for every earlier access to [a, b), so that part of the
        # history is subsumed; trimming partly overlapped ranges (not only dropping covered ones)
        # keeps stale readers from making later writes wait for unrelated SAVEs.
        kept: list[list[int]] = []
        for e in self.items:
            if e[1] <= a or b <= e[0]:
                kept.append(e)
                continue
            if e[0] < a:
                kept.append([e[0], a, e[2], e[3]])
            if b < e[1]:
                kept.append([b, e[1], e[2], e[3]])
        self.items = kept
        self.items.append([a, b, idx, -1])
        if len(self.items) > _MAX_INTERVALS:     # merge the two oldest: over-synchronises only
            e0, e1 = self.items[0], self.items[1]
            self.items[:2] = [[min(e0[0], e1[0]), max(e0[1], e1[1]), max(e0[2], e1[2]),
                               max(e0[3], e1[3])]]

    def read(self, a: int, b: int, idx: int) -> None:
        for e in self.items:
            if e[0] < b and a < e[1]:
                e[3] = max(e[3], idx)


class Builder:
    def __init__(self, overlaps: dict[str, set[str]] | None = None) -> None:
        self.recs: list[_Rec] = []
        self.vc: list[tuple[int, int, int]] = []
        self.engine_vc = [[-1, -1, -1] for _ in range(3)]
        self.last = [-1, -1, -1]
        self.bufs = {name: _Intervals() for name in ("INPUT", "WEIGHT", "BIAS", "OUTPUT")}
        self.ddr_saved: dict[str, int] = {}
        self.ddr_loaded: dict[str, int] = {}
        self.overlaps = overlaps or {}
        self.nops = 0
        self.layer = 0          # `layer` field of synchronisation NOPs (the stage being emitted)

    def __len__(self) -> int:
        return len(self.recs)

    # --- core -----------------------------------------------------------------------------
    def _emit(self, cls: type[Instruction], fields: dict[str, int],
              needs: Iterable[int]) -> int:
        engine = ENGINE_OF[cls]
        vc = list(self.engine_vc[engine])
        rec = _Rec(cls, fields, engine)
        # one edge per producer engine: the latest needed instruction
        latest: dict[int, int] = {}
        for idx in needs:
            if idx < 0:
                continue
            p = self.recs[idx].engine
            if p != engine and vc[p] < idx:
                latest[p] = max(latest.get(p, -1), idx)
        for p, idx in latest.items():
            push, pop = CHANNEL_FLAGS[(p, engine)]
            prod = self.recs[idx]
            assert not prod.flags.get(push), "a producer pushes once per channel"
            prod.flags[push] = 1
            rec.flags[pop] = 1
            vc = [max(x, y) for x, y in zip(vc, self.vc[idx], strict=True)]
        i = len(self.recs)
        vc[engine] = i
        self.recs.append(rec)
        self.vc.append((vc[0], vc[1], vc[2]))
        self.engine_vc[engine] = vc
        self.last[engine] = i
        return i

    def _relay(self, consumer: int, producer_idx: int) -> int:
        """An instruction of a neighbour of `consumer` that completes after `producer_idx`
        (LOAD↔SAVE go through CALC): the latest CALC if it already knows, else a NOP CALC."""
        if producer_idx < 0 or self.engine_vc[consumer][self.recs[producer_idx].engine] \
                >= producer_idx:
            return -1
        if self.engine_vc[CALC][self.recs[producer_idx].engine] >= producer_idx:
            return self.last[CALC]
        self.nops += 1
        return self._emit(Calc, {"ti": 0, "to": 0, "layer": self.layer}, [producer_idx])

    # --- instructions ---------------------------------------------------------------------
    def load(self, buffer: str, buf_addr: int, entries: int, region: str,
             fields: dict[str, int]) -> int:
        bufs = self.bufs[buffer]
        war = bufs.last(buf_addr, buf_addr + entries, 3)
        raw = self._relay(LOAD, self.ddr_saved.get(region, -1))
        i = self._emit(Load, fields, [war, raw])
        bufs.write(buf_addr, buf_addr + entries, i)
        self.ddr_loaded[region] = i
        return i

    def calc(self, reads: list[tuple[str, int, int]], writes: list[tuple[int, int]],
             fields: dict[str, int]) -> int:
        needs = [self.bufs[b].last(a, e, 2) for b, a, e in reads if b != "OUTPUT"]
        needs += [self.bufs["OUTPUT"].last(a, e, 3) for a, e in writes]
        i = self._emit(Calc, fields, needs)
        for b, a, e in reads:
            if b != "OUTPUT":
                self.bufs[b].read(a, e, i)
        for a, e in writes:
            self.bufs["OUTPUT"].write(a, e, i)
        return i

    def save(self, ob_addr: int, entries: int, region: str, fields: dict[str, int]) -> int:
        raw = self.bufs["OUTPUT"].last(ob_addr, ob_addr + entries, 2)
        war = max((self.ddr_loaded.get(r, -1) for r in self.overlaps.get(region, {region})),
                  default=-1)
        relay = self._relay(SAVE, war)
        i = self._emit(Save, fields, [raw, relay])
        self.bufs["OUTPUT"].read(ob_addr, ob_addr + entries, i)
        self.ddr_saved[region] = i
        return i

    def end(self, layer: int = 0) -> int:
        """END: a barrier; everything before it is complete when the next segment starts."""
        i = len(self.recs)
        self.recs.append(_Rec(End, {"layer": layer}, -1))
        self.vc.append((i, i, i))
        self.engine_vc = [[i, i, i] for _ in range(3)]
        return i

    def instructions(self) -> list[Instruction]:
        return [_make(r.cls, {**r.fields, **r.flags}) for r in self.recs]


def _field_table(cls: type[Instruction]) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    ranges = {name: cls.field_range(name) for name, _, _ in cls.all_fields() if name != "opcode"}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    return ranges, defaults  # type: ignore[return-value]


_TABLES = {cls: _field_table(cls) for cls in ENGINE_OF} | {End: _field_table(End)}


def _make(cls: type[Instruction], values: dict[str, int]) -> Instruction:
    """`cls(**values)` with the same range checks, several times faster (programs have
    10⁴–10⁶ instructions): valid values fill a frozen instance directly; anything else goes
    through the dataclass constructor, which raises the usual error."""
    ranges, defaults = _TABLES[cls]
    for k, v in values.items():
        r = ranges.get(k)
        if r is None or type(v) is not int or not r[0] <= v <= r[1]:
            return cls(**values)
    obj = object.__new__(cls)
    obj.__dict__.update(defaults)
    obj.__dict__.update(values)
    return obj
