"""The interval access records of `sim.hazards.EntryHazards` against a per-entry model."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.sim.hazards import CALC, LOAD, EntryHazards


class _Fail(Exception):
    pass


class _M:
    """The machine as the checks see it."""

    def __init__(self) -> None:
        self.index, self.engine = -1, LOAD
        self.vc = np.full(3, -1, dtype=np.int64)
        self.check_races = True

    def fail(self, message: str):
        raise _Fail(message)


class _PerEntry:
    """The records kept per entry (the previous implementation), as the reference."""

    def __init__(self, n: int):
        self.valid = np.zeros(n, dtype=bool)
        self.wr = np.full(n, -1)
        self.rd = np.full(n, -1)

    def read(self, m: _M, idx, name: str, what: str) -> None:
        ok = self.valid[idx]
        if not ok.all():
            pos = np.asarray(np.arange(len(self.valid))[idx])[np.flatnonzero(~ok)[0]]
            m.fail(f"reads {name} entry {pos} ({what}) that was never written")
        if m.engine == CALC:
            j = int(self.wr[idx].max(initial=-1))
            if j > m.vc[LOAD]:
                m.fail(f"reads {name} entries written by instruction {j} (LOAD) without a"
                       " dependency on it (race)")
            self.rd[idx] = m.index

    def write(self, m: _M, idx, name: str) -> None:
        j = int(self.rd[idx].max(initial=-1))
        if j > m.vc[CALC]:
            m.fail(f"overwrites {name} entries still read by instruction {j} (CALC) without a"
                   " dependency on it (race)")
        self.wr[idx] = m.index
        self.valid[idx] = True


def _state(h: EntryHazards, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    wr, rd = np.full(n, -1), np.full(n, -1)
    for a, b, w, r in h.iv:
        wr[a:b], rd[a:b] = w, r
    return h.written(), wr, rd


@pytest.mark.parametrize("seed", range(6))
def test_intervals_match_per_entry_records(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 80))
    h, ref, m = EntryHazards("INPUT", n, LOAD, CALC), _PerEntry(n), _M()
    failures = 0
    for i in range(400):
        m.index = i
        m.engine = CALC if rng.random() < 0.5 else LOAD
        m.vc = rng.integers(-1, i + 1, 3) if rng.random() < 0.7 else np.full(3, i)
        a = int(rng.integers(0, n))
        b = int(rng.integers(a, n + 1))
        idx: slice | np.ndarray = slice(a, b)
        hidx: slice | np.ndarray | list[tuple[int, int]] = idx
        u = rng.random()
        if u < 0.2:                 # scattered entries
            idx = hidx = np.unique(rng.integers(0, n, int(rng.integers(0, 12))))
        elif u < 0.4:               # ranges with a pitch (finalized outputs), maybe overlapping
            ln, pitch = int(rng.integers(0, 6)), int(rng.integers(1, 8))
            hidx = [(s, min(n, s + ln)) for s in range(a, b, pitch)]
            idx = np.unique(np.concatenate([np.arange(s, e) for s, e in hidx] + [[]])
                            ).astype(np.int64)
        got = want = None
        try:
            if m.engine == LOAD:
                h.write(m, hidx)
            else:
                h.read(m, hidx, "tile")
        except _Fail as e:
            got = str(e)
        try:
            if m.engine == LOAD:
                ref.write(m, idx, "INPUT")
            else:
                ref.read(m, idx, "INPUT", "tile")
        except _Fail as e:
            want = str(e)
        if want is not None:
            failures += 1
            assert got == want
            h, ref = EntryHazards("INPUT", n, LOAD, CALC), _PerEntry(n)   # the run stops
            continue
        assert got is None
        valid, wr, rd = _state(h, n)
        assert np.array_equal(valid, ref.valid)
        assert np.array_equal(wr[valid], ref.wr[valid])
        assert np.array_equal(rd[valid], ref.rd[valid])
        assert all(e[1] <= f[0] for e, f in zip(h.iv, h.iv[1:], strict=False))
        assert h.starts == [e[0] for e in h.iv]
    assert failures > 10      # both kinds of outcome were compared
