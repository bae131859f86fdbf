"""compiler.builder: dependency flags derived from what instructions touch."""

from __future__ import annotations

from collections import Counter

from deepfpga.compiler.builder import Builder
from deepfpga.hw import arch
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Calc, Load, Save
from deepfpga.sim.timing import time_instructions

TINY = load_config("tiny")


def _balanced(ins) -> None:
    """Every push of a channel is popped exactly once (segments end at each END)."""
    pushes, pops = Counter(), Counter()
    for i in ins:
        e = arch.ENGINE_OF.get(type(i))
        if e is None:
            assert pushes == pops
            continue
        for flag, (ch, is_pop) in arch.flag_channels(e).items():
            if getattr(i, flag):
                (pops if is_pop else pushes)[ch] += 1


def _load(b: Builder, addr: int, n: int, region: str = "x") -> int:
    return b.load("INPUT", addr, n, region, {"buffer": 0, "buf_addr": addr, "length": n})


def test_read_after_load_is_one_token() -> None:
    b = Builder()
    _load(b, 0, 10)
    b.calc([("INPUT", 0, 10)], [(0, 4)], {"ti": 1, "to": 1})
    b.end()
    ld, calc, _ = b.instructions()
    assert (ld.push_next, calc.pop_prev) == (1, 1)
    assert (calc.push_prev, calc.push_next, calc.pop_next) == (0, 0, 0)


def test_no_token_without_a_conflict() -> None:
    b = Builder()
    _load(b, 0, 10)
    b.calc([("INPUT", 20, 30)], [(0, 4)], {"ti": 1, "to": 1})   # reads other entries
    b.end()
    ld, calc, _ = b.instructions()
    assert not (ld.push_next or calc.pop_prev)


def test_overwrite_waits_for_the_reader() -> None:
    b = Builder()
    _load(b, 0, 10)
    b.calc([("INPUT", 0, 10)], [(0, 4)], {"ti": 1, "to": 1})
    _load(b, 5, 10)                                  # overwrites what the CALC reads
    b.end()
    _, calc, ld2, _ = b.instructions()
    assert (calc.push_prev, ld2.pop_next) == (1, 1)


def test_transitive_dependencies_need_no_extra_token() -> None:
    b = Builder()
    _load(b, 0, 10)
    _load(b, 10, 10)
    b.calc([("INPUT", 0, 20)], [(0, 4)], {"ti": 1, "to": 1})
    b.end()
    ld1, ld2, calc, _ = b.instructions()
    # the LOAD engine runs in order, so waiting for the second load covers the first
    assert (ld1.push_next, ld2.push_next, calc.pop_prev) == (0, 1, 1)


def test_save_then_load_of_the_same_region_relays_through_calc() -> None:
    b = Builder(overlaps={"t:a": {"t:a"}})
    b.calc([], [(0, 4)], {"ti": 1, "to": 1, "finalize": 1})
    b.save(0, 4, "t:a", {"ob_addr": 0, "length": 4})
    _load(b, 0, 4, "t:a")                            # reads what the SAVE wrote to DDR
    b.end()
    ins = b.instructions()
    assert b.nops == 1
    nop = next(i for i in ins if isinstance(i, Calc) and i.to == 0)
    assert nop.pop_next and nop.push_prev                        # SAVE→CALC, CALC→LOAD
    assert isinstance(ins[-2], Load) and ins[-2].pop_next
    _balanced(ins)
    assert time_instructions(ins, TINY).cycles > 0               # deadlock-free


def test_generated_programs_are_balanced_and_deadlock_free() -> None:
    b = Builder()
    for k in range(6):
        bank = (k % 2) * 50
        _load(b, bank, 50)
        b.calc([("INPUT", bank, bank + 50)], [(bank, bank + 8)],
               {"ti": 1, "to": 1, "finalize": 1})
        b.save(bank, 8, f"t:{k}", {"ob_addr": bank, "length": 8})
    b.end()
    ins = b.instructions()
    _balanced(ins)
    assert sum(isinstance(i, Save) for i in ins) == 6
    assert time_instructions(ins, TINY).cycles > 0
