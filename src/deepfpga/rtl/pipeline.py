"""Pipelined adder trees for the PE's free-running datapath (convolvers and the lane tree)."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Module, Signal, Value


def add_tree(m: Module, values: Sequence[Value], name: str) -> tuple[Value, int]:
    """Pairwise sum of `values`, one register level per tree level (no clock enable).

    Returns the sum (grown one bit per level, so it never overflows) and the number of levels.
    """
    vals = list(values)
    levels = 0
    while len(vals) > 1:
        nxt = []
        for j in range(0, len(vals) - 1, 2):
            s = vals[j] + vals[j + 1]
            r = Signal(s.shape(), name=f"{name}_l{levels}_{j // 2}")
            m.d.sync += r.eq(s)
            nxt.append(r)
        if len(vals) % 2:
            # An odd one out waits one level in a register so every operand stays aligned.
            r = Signal(vals[-1].shape(), name=f"{name}_l{levels}_{len(vals) // 2}")
            m.d.sync += r.eq(vals[-1])
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
