"""The dependency-token unit: four counters between neighbouring engines (docs/isa.md).

Which flag of which engine pops or pushes which channel is the one table of the accelerator's
rules (`deepfpga.hw.arch.flag_channels`), imported, not re-typed. An engine holding an instruction
raises `want`; `ok` says every counter it pops is nonzero; it takes them with `take` and pushes
with `push` when the instruction has completed. Pops that were proven satisfiable in program
order by the decoder always are, eventually; `deadlock` is the safety net (every engine waits
on a pop, none is running, and the decoder cannot dispatch more).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.hw import arch
from deepfpga.rtl.accel.fields import FLAGS, INDEX_BITS

CHANNELS = arch.CHANNELS

CHANNEL_COUNT = len(CHANNELS)
ENGINES = len(arch.ENGINES)


def flag_channel(engine: int, flag: str) -> tuple[int, bool] | None:
    """(channel, is_pop) of `flag` on `engine` (0 LOAD, 1 CALC, 2 SAVE), None: no neighbour."""
    return arch.flag_channels(engine).get(flag)


class TokenUnit(wiring.Component):
    def __init__(self) -> None:
        super().__init__({
            "clear": In(1),
            **{f"e{e}_{f}": In(1) for e in range(ENGINES) for f in FLAGS},
            **{f"e{e}_{k}": In(1) for e in range(ENGINES) for k in ("want", "take", "push")},
            **{f"e{e}_ok": Out(1) for e in range(ENGINES)},
            **{f"count{c}": Out(INDEX_BITS) for c in range(CHANNEL_COUNT)},
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        inc = [Signal(name=f"inc{c}") for c in range(CHANNEL_COUNT)]
        dec = [Signal(name=f"dec{c}") for c in range(CHANNEL_COUNT)]
        for e in range(ENGINES):
            ok = 1
            for f in FLAGS:
                ch = flag_channel(e, f)
                if ch is None:
                    continue              # the decoder refused such a flag
                c, is_pop = ch
                flag = getattr(self, f"e{e}_{f}")
                if is_pop:
                    ok = ok & (~flag | (getattr(self, f"count{c}") != 0))
                    m.d.comb += dec[c].eq(flag & getattr(self, f"e{e}_take"))
                else:
                    m.d.comb += inc[c].eq(flag & getattr(self, f"e{e}_push"))
            m.d.comb += getattr(self, f"e{e}_ok").eq(ok)
        for c in range(CHANNEL_COUNT):
            cnt = getattr(self, f"count{c}")
            with m.If(self.clear):
                m.d.sync += cnt.eq(0)
            with m.Else():
                m.d.sync += cnt.eq(cnt + inc[c] - dec[c])
        return m
