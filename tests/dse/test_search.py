"""dse.search: exhaustive order, the genetic search's determinism and what it proposes."""

from __future__ import annotations

from deepfpga.dse.search import Genetic, exhaustive
from deepfpga.dse.space import Space

SPACE = Space((("num_pe", (1, 2, 3, 4, 6, 8)), ("convolvers_per_pe", (4, 8, 16, 32, 64)),
               ("datain_port_num", (4, 8, 16)), ("max_row_width", (56, 112, 224))))


def fake_objectives(genes):
    """A made-up trade-off: speed grows with the multipliers, and so does their cost."""
    p = SPACE.point(genes)
    mult = p["num_pe"] * p["convolvers_per_pe"]
    return (-mult * min(1.0, p["datain_port_num"] / 8), mult / 512, p["max_row_width"] / 224,
            0.1)


def run(seed, generations=6, population=8, refuse=lambda g: False):
    ga = Genetic(SPACE, seed, population)
    seen, history = set(), []

    def accept(g):
        if g in seen or refuse(g):
            return False
        seen.add(g)
        return True

    for _ in range(generations):
        batch = ga.propose(population, accept)
        history.append(batch)
        ga.update([(g, fake_objectives(g)) for g in batch])
    return history, ga


def test_exhaustive_is_the_enumeration() -> None:
    pts = list(exhaustive(SPACE))
    assert len(pts) == SPACE.size == 270 and len(set(pts)) == 270
    assert pts[0] == (0, 0, 0, 0) and pts[1] == (0, 0, 0, 1) and pts[-1] == (5, 4, 2, 2)


def test_same_seed_same_search_other_seed_other_search() -> None:
    a, _ = run(3)
    b, _ = run(3)
    c, _ = run(4)
    assert a == b and a != c
    flat = [g for batch in a for g in batch]
    assert len(flat) == len(set(flat)) == 48           # never a point twice


def test_only_accepted_points_and_survivors_are_the_best() -> None:
    history, ga = run(1, refuse=lambda g: g[0] == 5)     # no 8-PE point "fits"
    assert all(g[0] != 5 for batch in history for g in batch)
    assert len(ga.parents) == 8
    # the fastest point seen survives (an extreme of the front)
    seen = [g for batch in history for g in batch]
    fastest = min(fake_objectives(g)[0] for g in seen)
    assert min(o[0] for _, o in ga.parents) == fastest


def test_proposals_stop_when_nothing_new_is_accepted() -> None:
    ga = Genetic(Space((("num_pe", (1, 2)),)), 0, 4)
    seen = set()

    def accept(g):
        new = g not in seen
        seen.add(g)
        return new

    assert sorted(ga.propose(4, accept)) == [(0,), (1,)]
    assert ga.propose(4, accept) == []
