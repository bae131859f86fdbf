"""Helpers for the PE's pipelines.

Stalling stages are chains of registers that all advance together when `en` is high, with
`en = ~o.valid | o.ready` (the output register is empty or being taken) and `i.ready = en`.
Free-running stages pass `en=None`. Bubbles travel as valid = 0, so a stage never loses or
duplicates an item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amaranth.hdl import Module, Signal, Value


def register(m: Module, en: Value | None, *assigns: Any) -> None:
    """Clocked assignments, under `en` when it is given."""
    if en is None:
        m.d.sync += list(assigns)
    else:
        with m.If(en):
            m.d.sync += list(assigns)


def delay(m: Module, v: Value, en: Value | None, n: int, name: str) -> Value:
    """`v` delayed by `n` (enabled) clocks (registers named name_1..name_n)."""
    for k in range(n):
        r = Signal(v.shape(), name=f"{name}_{k + 1}")
        register(m, en, r.eq(v))
        v = r
    return v


def add_tree(m: Module, values: Sequence[Value], en: Value | None,
             name: str) -> tuple[Value, int]:
    """Pairwise sum of `values`, one register level per tree level.

    Returns the sum (grown one bit per level, so it never overflows) and the number of levels.
    """
    vals = list(values)
    levels = 0
    while len(vals) > 1:
        nxt = []
        for j in range(0, len(vals) - 1, 2):
            s = vals[j] + vals[j + 1]
            r = Signal(s.shape(), name=f"{name}_l{levels}_{j // 2}")
            register(m, en, r.eq(s))
            nxt.append(r)
        if len(vals) % 2:
            # An odd one out waits one level in a register so every operand stays aligned.
            r = Signal(vals[-1].shape(), name=f"{name}_l{levels}_{len(vals) // 2}")
            register(m, en, r.eq(vals[-1]))
            nxt.append(r)
        vals = nxt
        levels += 1
    return vals[0], levels


def tree_levels(n: int) -> int:
    """Register levels add_tree uses for n operands."""
    levels = 0
    while n > 1:
        n = (n + 1) // 2
        levels += 1
    return levels
