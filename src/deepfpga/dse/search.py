"""Search strategies: which points to evaluate next.

- Exhaustive: every point in enumeration order (the last axis fastest), up to the budget.
- Genetic (NSGA-II, Deb et al. 2002, with (μ+λ) survival): a population of `population`
  points; each generation breeds as many new points by binary tournaments (lower front first,
  then larger crowding distance), uniform crossover (probability 0.9) and mutation (each gene
  with probability 1/#axes, at least one gene: a step to a neighbouring value, or with
  probability 0.3 any value), then keeps the best `population` of parents and children by
  non-dominated sorting and crowding. The first generation is drawn uniformly at random.
  Only points that are new and fit the device are proposed (`accept`), so the budget goes to
  compilations, not to refusals.

Both are deterministic: the genetic search draws every random number from one
`numpy.random.Generator(PCG64(seed))`, and depends on results only through their values, never
through their arrival order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from deepfpga.dse.pareto import Objectives, crowding, nondominated_sort
from deepfpga.dse.space import Space

Genes = tuple[int, ...]
CROSSOVER = 0.9
RESET = 0.3               # a mutated gene takes any value (else a neighbouring one)
ATTEMPTS = 200            # proposals tried per wanted point before the space counts as spent


def exhaustive(space: Space) -> Iterator[Genes]:
    for i in range(space.size):
        yield space.genes(i)


class Genetic:
    def __init__(self, space: Space, seed: int, population: int) -> None:
        self.space = space
        self.population = population
        self.rng = np.random.default_rng(seed)
        self.parents: list[tuple[Genes, Objectives]] = []
        self._rank: list[tuple[int, float]] = []     # per parent: (front, −crowding)

    def propose(self, n: int, accept: Callable[[Genes], bool]) -> list[Genes]:
        """Up to `n` new points that `accept` takes (fewer when they cannot be found)."""
        out: list[Genes] = []
        for _ in range(ATTEMPTS * n):
            if len(out) == n:
                break
            g = self._child() if self.parents else self._random()
            if accept(g):
                out.append(g)
        return out

    def update(self, evaluated: Sequence[tuple[Genes, Objectives | None]]) -> None:
        """Survival of the best `population` among parents and the children that compiled
        (`None`: the point did not compile or time, it has no objectives)."""
        pool = self.parents + [(g, o) for g, o in evaluated if o is not None]
        objs = [o for _, o in pool]
        keep: list[int] = []
        rank: list[tuple[int, float]] = []
        for level, front in enumerate(nondominated_sort(objs)):
            dist = crowding(objs, front)
            order = sorted(front, key=lambda i: (-dist[i], i))
            for i in order[:self.population - len(keep)]:
                keep.append(i)
                rank.append((level, -dist[i]))
            if len(keep) == self.population:
                break
        self.parents = [pool[i] for i in keep]
        self._rank = rank

    # --- breeding ------------------------------------------------------------------------------
    def _random(self) -> Genes:
        return tuple(int(self.rng.integers(n)) for n in self.space.sizes)

    def _tournament(self) -> Genes:
        a, b = (int(i) for i in self.rng.integers(len(self.parents), size=2))
        return self.parents[min(a, b, key=lambda i: (self._rank[i], i))][0]

    def _child(self) -> Genes:
        a, b = self._tournament(), self._tournament()
        if self.rng.random() < CROSSOVER:
            pick = self.rng.random(len(a)) < 0.5
            child = [y if p else x for x, y, p in zip(a, b, pick, strict=True)]
        else:
            child = list(a)
        sizes = self.space.sizes
        mutable = [i for i, n in enumerate(sizes) if n > 1]
        if not mutable:
            return tuple(child)
        flips = [i for i in mutable if self.rng.random() < 1 / len(sizes)]
        if not flips:
            flips = [mutable[int(self.rng.integers(len(mutable)))]]
        for i in flips:
            if self.rng.random() < RESET:
                child[i] = int(self.rng.integers(sizes[i]))
            else:
                step = 1 if self.rng.random() < 0.5 else -1
                child[i] = int(min(max(child[i] + step, 0), sizes[i] - 1))
        return tuple(child)
