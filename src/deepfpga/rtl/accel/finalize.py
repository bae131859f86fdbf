"""The CALC's finalize stream (contract steps 2–5), B accumulators per cycle (B = bank_count):

    wide OUTPUT read ─► reg ─► bias << bias_shift (reg) ─► + (64 bits, reg) ─► ReLU ─►
    4-stage shift, out_bits saturation ─► 2×2 pool (line buffer) ─► reg ─► wide OUTPUT write
                                       └─► saturation count (the lanes' flags added)

`FinSequence` walks the accumulators in OUTPUT order (o, y, x) in chunks of up to B consecutive
entries of one segment: a channel's rc values without pooling (a channel's last chunk may be
partial), one row's out_cols values with pooling (so a chunk starts at an even column and holds
whole horizontal pairs; B = 1 pairs consecutive chunks). The bias is per channel, so a chunk
never spans two channels. Pooling (floor mode): an even row's pair maxima go into the line buffer
at the chunk's column, an odd row's are compared with them and written, an odd last row and
column drop out. Nothing stalls, so a chunk is issued every cycle and the writes follow at a
fixed latency; `engines.fin_chunks` counts the chunks and FIN_DRAIN_CYCLES the latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import FIN_BITS, bank_count, pool_lanes, pool_line_entries
from deepfpga.rtl.accel.decode import Setup
from deepfpga.rtl.shift import DataShift, Relu


def _max(a: Value, b: Value) -> Value:
    return Mux(a > b, a, b)


@dataclass(frozen=True)
class FinSequence:
    """The chunk issued this cycle (while `run`): OUTPUT read at `addr`, the bias of channel
    `channel`; `last`: the CALC's last chunk; `meta`: what the pipeline carries along (the real
    lanes, the write address, the pool's row parity, line-buffer entry and whole pairs)."""

    addr: Signal
    channel: Signal
    last: Value
    meta: dict[str, Value]


def fin_sequence(m: Module, cfg: AcceleratorConfig, f: dict[str, Value], setup: Setup, *,
                 run: Value, clear: Value) -> FinSequence:
    b = bank_count(cfg)
    pool = f["pool"]
    addr, wbase, wrow = Signal(21), Signal(21), Signal(21)
    fo, y = Signal(12), Signal(12)
    k = Signal(24)                        # offset in the segment: channel entry, or column
    # entries left in the segment, a register so that a stage holds one add (the address's)
    rem = Signal(24)
    seg = Mux(pool, f["out_cols"], setup.rc)
    last_seg = rem <= b
    n = Signal(range(b + 1))
    m.d.comb += n.eq(Mux(last_seg, rem, b))
    last_row = ~pool | (y == f["out_rows"] - 1)
    last_o = fo == f["to"] - 1
    with m.If(clear):
        m.d.sync += [addr.eq(f["ob_addr"]), fo.eq(0), y.eq(0), k.eq(0), rem.eq(seg),
                     wbase.eq(f["out_addr"]), wrow.eq(f["out_addr"])]
    with m.Elif(run):
        m.d.sync += [addr.eq(addr + n), k.eq(k + b), rem.eq(rem - b)]
        with m.If(last_seg):
            m.d.sync += [k.eq(0), rem.eq(seg), y.eq(y + 1)]
            with m.If(pool & y[0]):
                m.d.sync += wrow.eq(wrow + (f["out_cols"] >> 1))
            with m.If(last_row):
                m.d.sync += [y.eq(0), fo.eq(fo + 1), wbase.eq(wbase + setup.pitch),
                             wrow.eq(wbase + setup.pitch)]
    p = pool_lanes(cfg)
    if b > 1:
        pmask = Cat(2 * q + 1 < n for q in range(p))
        line_we = ~y[0]
    else:
        pmask = k[0]
        line_we = ~y[0] & k[0]
    meta = {
        "lanes": Cat(j < n for j in range(b)),
        "waddr": wrow + Mux(pool, k >> 1, k),
        "pool": pool, "odd_row": y[0], "line_we": line_we, "pmask": pmask,
        "line": k >> (max(2, b).bit_length() - 1),      # pool_line_entries: B columns each
        "left": k[0] == 0,                # B = 1: this chunk is a pair's left value
    }
    return FinSequence(addr=addr, channel=fo, last=last_seg & last_row & last_o, meta=meta)


@dataclass(frozen=True)
class Finalize:
    busy: Value        # chunks still in the stream
    we: Value          # lane enables of this cycle's OUTPUT write ...
    waddr: Value       # ... at these B consecutive entries
    wdata: list[Value]


def _delay(m: Module, meta: dict[str, Value], name: str) -> dict[str, Value]:
    out = {}
    for key, v in meta.items():
        r = Signal(len(v), name=f"{name}_{key}")
        m.d.sync += r.eq(v)
        out[key] = r
    return out


def build_finalize(m: Module, cfg: AcceleratorConfig, f: dict[str, Value], seq: FinSequence,
                   *, issue: Value, acc: list[Value], bias: Value, clear: Value,
                   sat: Signal) -> Finalize:
    """`issue`: `seq`'s chunk was read this cycle; `acc` (B lanes), `bias`: the synchronous
    read data (the cycle after); `clear` starts a CALC (`sat`)."""
    b, d, a = bank_count(cfg), cfg.data_bits, cfg.acc_bits
    meta = dict(seq.meta, valid=issue)
    valids = []

    def stage(md: dict[str, Value], name: str) -> dict[str, Value]:
        md = _delay(m, md, name)
        valids.append(md["valid"])
        return md

    m0 = stage(meta, "fin0")                      # read data present
    m1 = stage(m0, "fin1")                        # read data registered
    acc1 = [Signal(signed(a), name=f"fin_acc1_{j}") for j in range(b)]
    bias1 = Signal(signed(len(bias)))
    m.d.sync += [r.eq(v) for r, v in zip(acc1, acc, strict=True)] + [bias1.eq(bias)]
    m2 = stage(m1, "fin2")                        # bias aligned
    acc2 = [Signal(signed(a), name=f"fin_acc2_{j}") for j in range(b)]
    aligned = Signal(signed(FIN_BITS))
    m.d.sync += [r.eq(v) for r, v in zip(acc2, acc1, strict=True)]
    m.d.sync += aligned.eq(Mux(f["has_bias"], (bias1 << f["bias_shift"])[:FIN_BITS], 0))
    m3 = stage(m2, "fin3")                        # sums
    vsum = [Signal(signed(FIN_BITS), name=f"fin_sum{j}") for j in range(b)]
    m.d.sync += [r.eq((v + aligned)[:FIN_BITS]) for r, v in zip(vsum, acc2, strict=True)]
    # ReLU (1 stage) and the data shift (DataShift.latency stages), one per lane
    shifted = []
    for j in range(b):
        relu = Relu(FIN_BITS)
        dshift = DataShift(FIN_BITS, d, runtime_bits=True)
        m.submodules[f"relu{j}"], m.submodules[f"dshift{j}"] = relu, dshift
        m.d.comb += [relu.i.valid.eq(m3["valid"]), relu.i.payload.eq(vsum[j]),
                     relu.enable.eq(f["relu"]),
                     dshift.shift.eq(f["data_shift"]), dshift.bypass.eq(0),
                     dshift.out_bits.eq(f["out_bits"]), dshift.o.ready.eq(1)]
        wiring.connect(m, relu.o, dshift.i)
        shifted.append(dshift.o.payload)
    ms = m3
    for s in range(1 + DataShift.latency):
        ms = stage(ms, f"fin_s{s}")
    # saturation count: the real lanes' flags, added up in a stage of their own (the last is
    # counted well before the stream's end)
    nsat = Signal(range(b + 1))
    m.d.sync += nsat.eq(sum((ms["valid"] & ms["lanes"][j] & shifted[j].sat) for j in range(b)))
    with m.If(clear):
        m.d.sync += [sat.eq(0), nsat.eq(0)]
    with m.Else():
        m.d.sync += sat.eq(sat + nsat)
    # pool: pair maxima (at data_bits), the line buffer read now and written on even rows
    p = pool_lanes(cfg)
    vals = [sv.value[:d].as_signed() for sv in shifted]
    if b > 1:
        pair = [_max(vals[2 * q], vals[2 * q + 1]) for q in range(p)]
    else:
        left = Signal(signed(d))
        with m.If(ms["valid"] & ms["left"]):
            m.d.sync += left.eq(vals[0])
        pair = [_max(left, vals[0])]
    m.submodules.fin_line = line = Memory(shape=unsigned(p * d), depth=pool_line_entries(cfg),
                                          init=[])
    rd, wr = line.read_port(), line.write_port()
    m.d.comb += [rd.addr.eq(ms["line"]), wr.addr.eq(ms["line"]), wr.data.eq(Cat(*pair)),
                 wr.en.eq(ms["valid"] & ms["pool"] & ms["line_we"])]
    mp = stage(ms, "fin_p")
    pair1 = [Signal(signed(d), name=f"fin_pair{q}") for q in range(p)]
    item1 = [Signal(signed(d), name=f"fin_item{j}") for j in range(b)]
    m.d.sync += [r.eq(v) for r, v in zip(pair1, pair, strict=True)]
    m.d.sync += [r.eq(v) for r, v in zip(item1, vals, strict=True)]
    above = [rd.data[q * d:(q + 1) * d].as_signed() for q in range(p)]
    pooled = [_max(above[q], pair1[q]) for q in range(p)]
    out = [Mux(mp["pool"], pooled[j], item1[j]) if j < p else item1[j] for j in range(b)]
    pool_en = Mux(mp["odd_row"], mp["pmask"], 0)
    we_p = Mux(mp["pool"], pool_en, mp["lanes"])
    # the write stage's registers
    v2, we2, waddr2 = Signal(), Signal(b), Signal(21)
    wdata2 = [Signal(signed(a), name=f"fin_w{j}") for j in range(b)]
    m.d.sync += [v2.eq(mp["valid"]), we2.eq(Mux(mp["valid"], we_p, 0)), waddr2.eq(mp["waddr"])]
    m.d.sync += [r.eq(v) for r, v in zip(wdata2, out, strict=True)]
    busy = Signal()
    m.d.comb += busy.eq(Cat(*valids, v2).any())   # (a chunk may write nothing: pool)
    return Finalize(busy=busy, we=we2, waddr=waddr2, wdata=wdata2)
