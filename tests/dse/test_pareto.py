"""dse.pareto: dominance, NSGA-II sorting and crowding, the front and the best point."""

from __future__ import annotations

import random

from deepfpga.dse.pareto import (
    best,
    crowding,
    dominates,
    nondominated_sort,
    objectives,
    pareto_front,
)


def rec(key: str, fps: float, dsp: float, bram: float = 0.5, lut: float = 0.5,
        status: str = "ok") -> dict:
    return {"key": key, "status": status, "metrics": {"fps": fps},
            "resources": {"share": {"dsp": dsp, "bram36": bram, "lut": lut, "ff": 0.1}}}


def test_dominance_minimises_every_objective() -> None:
    assert dominates((-2, 0.5), (-1, 0.5)) and not dominates((-1, 0.5), (-2, 0.5))
    assert not dominates((-2, 0.6), (-1, 0.5)) and not dominates((-1, 0.5), (-1, 0.5))
    assert objectives(rec("a", 3.0, 0.2, 0.3, 0.4)) == (-3.0, 0.2, 0.3, 0.4)


def test_nondominated_sort_and_crowding() -> None:
    objs = [(0, 3), (1, 2), (2, 1), (1, 3), (3, 3), (2, 2)]
    assert nondominated_sort(objs) == [[0, 1, 2], [3, 5], [4]]
    d = crowding(objs, [0, 1, 2])
    assert d[0] == d[2] == float("inf") and d[1] == 2.0
    assert crowding(objs, [3, 5]) == {3: float("inf"), 5: float("inf")}


RECORDS = [rec("a", 10, 0.9), rec("b", 8, 0.5), rec("c", 8, 0.6), rec("d", 4, 0.2),
           rec("e", 12, 0.9, status="no-compile"), rec("f", 4, 0.2), rec("g", 10, 0.9, lut=0.1)]


def test_front_is_the_non_dominated_points_fastest_first() -> None:
    front = [r["key"] for r in pareto_front(RECORDS)]
    # g beats a (less LUT), b beats c; f equals d (d stands for it); e did not compile
    assert front == ["g", "b", "d"]
    assert best(RECORDS)["key"] == "g"           # 10 fps, less LUT than a
    assert best([RECORDS[4]]) is None and pareto_front([]) == []


def test_front_does_not_depend_on_the_order_of_evaluation() -> None:
    rng = random.Random(5)
    recs = [rec(f"p{i}", rng.choice([1, 2, 3, 4]), rng.random(), rng.random(), rng.random())
            for i in range(60)]
    want = pareto_front(recs)
    for _ in range(5):
        rng.shuffle(recs)
        assert pareto_front(recs) == want
    # every point off the front is dominated by (or equal to) a point on it
    objs = [objectives(r) for r in want]
    for r in recs:
        if r not in want:
            o = objectives(r)
            assert any(f == o or dominates(f, o) for f in objs)
