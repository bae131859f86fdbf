"""The sweep: propose points (search.py), build and fit-check them here (build.py), evaluate the
ones that fit on a pool of workers (evaluate.py, parallel.py), record every evaluated point
(store.py), and feed the results back to the search in proposal order.

The budget counts evaluated points (compiled and timed, including those that turn out not to
compile); refused points (invalid configs, over the device or the margin) are free and only
counted. A point already in the results file (`--resume`) is not evaluated again but counts as
evaluated, so a resumed sweep follows exactly the path of one that was never interrupted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepfpga.dse.build import OK, Builder, Built
from deepfpga.dse.evaluate import evaluate_config
from deepfpga.dse.pareto import objectives
from deepfpga.dse.search import Genes, Genetic, exhaustive
from deepfpga.dse.space import point_key
from deepfpga.dse.store import PointStore
from deepfpga.errors import InputError
from deepfpga.parallel import Pool

STRATEGIES = ("auto", "exhaustive", "genetic")


@dataclass(frozen=True)
class Search:
    budget: int
    strategy: str = "auto"
    seed: int = 0
    population: int = 24

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise InputError(f"--budget must be a positive integer, got {self.budget!r}")
        if self.strategy not in STRATEGIES:
            raise InputError(f"--search must be one of {', '.join(STRATEGIES)}, got"
                             f" {self.strategy!r}")
        if not 2 <= self.population <= 10_000:
            raise InputError(f"--population must be 2..10000, got {self.population}")

    def resolve(self, space_size: int) -> str:
        """`auto`: exhaustive when the whole space is within the budget, else genetic."""
        if self.strategy != "auto":
            return self.strategy
        return "exhaustive" if space_size <= self.budget else "genetic"


def make_record(b: Built, result: dict[str, Any]) -> dict[str, Any]:
    assert b.config is not None
    cfg = b.config.to_dict()
    cfg.pop("notes")
    return {"key": b.key, "point": dict(b.point), "config": cfg, "resources": b.resources,
            **result}


@dataclass
class Sweep:
    """One sweep's state; readable after an interruption (what was done so far)."""

    builder: Builder
    search: Search
    pool: Pool
    store: PointStore
    on_record: Callable[[dict[str, Any], bool], None] | None = None   # (record, from the file)
    strategy: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)   # evaluated, proposal order
    rejected: Counter[str] = field(default_factory=Counter)       # refused, by status
    reasons: dict[str, str] = field(default_factory=dict)         # a first reason per status
    cached: int = 0                   # points of the sweep taken from the results file
    fresh: int = 0                    # points of the sweep evaluated now
    generations: int = 0
    exhausted: bool = False
    _built: dict[str, Built] = field(default_factory=dict)

    def run(self) -> Sweep:
        space = self.builder.space
        self.strategy = self.search.resolve(space.size)
        if self.strategy == "exhaustive":
            self._exhaustive()
        else:
            self._genetic()
        return self

    # --- building and evaluating ---------------------------------------------------------------
    def built(self, genes: Genes) -> tuple[Built, bool]:
        """(the point built, whether it is new in this sweep)."""
        point = self.builder.space.point(genes)
        key = point_key(point)
        if key in self._built:
            return self._built[key], False
        b = self.builder.build(point)
        self._built[key] = b
        if b.status != OK:
            self.rejected[b.status] += 1
            self.reasons.setdefault(b.status, f"{key}: {b.reason}")
        return b, True

    def evaluate(self, batch: Sequence[Built], count: bool = True) -> list[dict[str, Any]]:
        """Records of `batch` in its order: from the results file, or evaluated now. With
        `count` they are points of the sweep (in the budget and the front)."""
        out: dict[str, dict[str, Any]] = {}
        fresh = []
        for b in batch:
            if b.key in self.store.done:
                out[b.key] = self.store.done[b.key]
                self.cached += count
                if self.on_record and count:
                    self.on_record(out[b.key], True)
            else:
                fresh.append(b)
        items = [dict(b.config.to_dict(), notes={}) for b in fresh if b.config is not None]
        for i, result in self.pool.map_unordered(evaluate_config, items):
            rec = make_record(fresh[i], result)
            self.store.append(rec)
            self.fresh += count
            out[rec["key"]] = self.store.done[rec["key"]]
            if self.on_record and count:
                self.on_record(out[rec["key"]], False)
        recs = [out[b.key] for b in batch]
        if count:
            self.records.extend(recs)
        return recs

    @property
    def evaluated(self) -> int:
        return len(self.records)

    # --- strategies ----------------------------------------------------------------------------
    def _exhaustive(self) -> None:
        chunk = max(8, 4 * self.pool.workers)
        batch: list[Built] = []
        for genes in exhaustive(self.builder.space):
            if self.evaluated + len(batch) >= self.search.budget:
                break
            b, _ = self.built(genes)
            if b.status == OK:
                batch.append(b)
            if len(batch) == chunk:
                self.evaluate(batch)
                batch = []
        if batch:
            self.evaluate(batch)
        self.exhausted = self.evaluated < self.search.budget

    def _genetic(self) -> None:
        ga = Genetic(self.builder.space, self.search.seed, self.search.population)

        def accept(genes: Genes) -> bool:
            b, new = self.built(genes)
            return new and b.status == OK

        while self.evaluated < self.search.budget:
            want = min(self.search.population, self.search.budget - self.evaluated)
            genes = ga.propose(want, accept)
            if not genes:
                self.exhausted = True
                break
            recs = self.evaluate([self.built(g)[0] for g in genes])
            ga.update([(g, objectives(r) if r["status"] == OK else None)
                       for g, r in zip(genes, recs, strict=True)])
            self.generations += 1
