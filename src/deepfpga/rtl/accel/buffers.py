"""The Datapath's on-chip buffers: widths and capacities from the one AcceleratorConfig.

Every buffer is an `amaranth.lib.memory.Memory` with synchronous read ports and one write port:
the shape block RAM maps to. Entry widths follow docs/isa.md and RTL_INTERFACES: INPUT and
WEIGHT hold max(data_bits, weight_bits) (the FC role swap puts weights into INPUT and data into
WEIGHT), BIAS holds bias_bits, OUTPUT holds acc_bits (finalized data values live there too,
sign-extended).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Module, Mux, Signal, Value
from amaranth.lib.memory import Memory

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.params import bits_for


def element_bits(cfg: AcceleratorConfig) -> int:
    """EW: the width of `ld_data` (any element the LOAD engine delivers)."""
    return max(cfg.data_bits, cfg.weight_bits, cfg.bias_bits)


@dataclass(frozen=True)
class BufferGeometry:
    """Entries of each buffer and the address widths the CALC engine uses."""

    input_entries: int
    weight_entries: int
    bias_entries: int
    output_entries: int
    fc_entries: int          # FC weight blocks: the first fc_entries entries of INPUT

    @classmethod
    def of(cls, cfg: AcceleratorConfig) -> BufferGeometry:
        return cls(cfg.input_buffer_entries, cfg.weight_buffer_entries,
                   cfg.bias_buffer_entries, cfg.output_buffer_entries,
                   min(cfg.fc_buffer_entries, cfg.input_buffer_entries))

    def addr_bits(self, entries: int) -> int:
        return bits_for(max(1, entries - 1))


class BankedMemory:
    """`entries` values of `shape` interleaved over `banks` (a power of two) block-RAM-shaped
    memories: entry e is row e // banks of bank e mod banks. A wide port moves `banks`
    consecutive entries from any start address per cycle (lane j = entry start + j)."""

    def __init__(self, shape, entries: int, banks: int):
        assert banks & (banks - 1) == 0
        self.shape, self.entries, self.banks = shape, entries, banks
        self.lb = banks.bit_length() - 1
        self.rows = max(1, -(-entries // banks))
        self.mems = [Memory(shape=shape, depth=self.rows, init=[]) for _ in range(banks)]

    def cell(self, e: int):
        """The simulator handle of entry e (testbenches: ctx.get/ctx.set)."""
        return self.mems[e % self.banks].data[e // self.banks]

    def add_to(self, m: Module, name: str) -> None:
        for k, mem in enumerate(self.mems):
            m.submodules[f"{name}{k}"] = mem

    def _rows(self, start: Value) -> list[Value]:
        """Row each bank reads or writes for a wide access at `start` (signed; a row outside
        the buffer reads row 0: that lane is outside the tile and masked by the caller)."""
        out = []
        for k in range(self.banks):
            e = start + ((k - start)[:self.lb] if self.lb else 0)     # bank k's lane's entry
            r = e >> self.lb
            out.append(Mux((r >= 0) & (r < self.rows), r, 0)[:bits_for(self.rows)])
        return out

    def read_ports(self, en: Value | None = None) -> WideRead:
        return WideRead(self, [mem.read_port() for mem in self.mems], en)

    def write_ports(self) -> WideWrite:
        return WideWrite(self, [mem.write_port() for mem in self.mems])


class WideRead:
    """Synchronous wide read: `connect(m, start)` returns the lanes (entries start + j), valid
    the cycle after `start` was presented (while `en`, if given, is high)."""

    def __init__(self, bm: BankedMemory, ports, en):
        self.bm, self.ports, self.en = bm, ports, en

    def connect(self, m: Module, start: Value) -> list[Value]:
        bm = self.bm
        for p, r in zip(self.ports, bm._rows(start), strict=True):
            m.d.comb += p.addr.eq(r)
            if self.en is not None:
                m.d.comb += p.en.eq(self.en)
        if not bm.lb:
            return [self.ports[0].data]
        rot = Signal(bm.lb)
        if self.en is None:
            m.d.sync += rot.eq(start[:bm.lb])
        else:
            with m.If(self.en):
                m.d.sync += rot.eq(start[:bm.lb])
        banks = Array(p.data for p in self.ports)
        return [banks[(rot + j)[:bm.lb]] for j in range(bm.banks)]


class WideWrite:
    """Wide write: lane j (enabled by bit j of `lane_en`) goes to entry start + j."""

    def __init__(self, bm: BankedMemory, ports):
        self.bm, self.ports = bm, ports

    def connect(self, m: Module, start: Value, lane_en: Value, lanes: list[Value]) -> None:
        bm = self.bm
        data = Array(lanes)
        for k, (p, r) in enumerate(zip(self.ports, bm._rows(start), strict=True)):
            j = (k - start)[:bm.lb] if bm.lb else 0
            jj = Signal(max(1, bm.lb), name=f"wlane{k}")
            m.d.comb += [jj.eq(j), p.addr.eq(r), p.data.eq(data[jj]),
                         p.en.eq(lane_en.bit_select(jj, 1))]
