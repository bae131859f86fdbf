"""Functional simulator: executes a compiled program bit-exactly, instruction by instruction.

State: a byte-addressed DDR image and the four on-chip buffers with the config's capacities
(entries). A batch of N inputs runs in one pass over the program: the program does not depend
on the data, so every buffer and the feature-map part of DDR carry a sample axis, while the
constant part of DDR (weights, biases) is shared and a buffer remembers which entries hold the
same value in every sample (so an FC layer is one matrix product over the batch, not N).

Each instruction is executed whole and vectorised (a CALC is a matrix product, never a loop over
pixels), in program order — one valid interleaving of the three engines. The simulator also
proves the program safe in *every* interleaving its dependency tokens allow: each engine carries
a vector clock (the last instruction of each engine it provably follows, propagated through
tokens), and an access that conflicts with an instruction of another engine the accessor does
not provably follow is a race.

The products of consecutive CALCs on the same input tile are computed together, when something
could observe them (a LOAD into that tile or from DDR, a CALC on another tile, an END, the end of
a stage); the SAVEs in between move their data then, in program order. So checks of an
instruction's accesses happen in program order, while errors found in the arithmetic itself
(accumulator overflow, saving values that were never finalized) may be reported after the checks
of a few later instructions.

It stops with an error naming the instruction for: a buffer, DDR or region access out of range,
a read of buffer entries never written, a read of DDR feature-map bytes never written, a token
pop with no earlier matching push (underflow) or tokens left at an END, a race, an accumulator
overflow, and malformed fields. Host layers run between accelerator segments through the
reference executor's layer code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepfpga.compiler.isa import (
    Buffer,
    Calc,
    CalcKind,
    End,
    Instruction,
    Load,
    Save,
    decode_program,
)
from deepfpga.compiler.layout import pack_array, unpack
from deepfpga.errors import InputError
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.quant.fixedpoint import FixedFormat, requantize

LOAD, CALC, SAVE = 0, 1, 2
ENGINES = ("LOAD", "CALC", "SAVE")
_ENGINE = {Load: LOAD, Calc: CALC, Save: SAVE}
# channel index: 0 LOAD→CALC, 1 CALC→LOAD, 2 CALC→SAVE, 3 SAVE→CALC
CHANNELS = ("LOAD→CALC", "CALC→LOAD", "CALC→SAVE", "SAVE→CALC")
# per engine: flag → (channel, is_pop); a flag absent here has no neighbour on that side
_FLAGS = {
    LOAD: {"pop_next": (1, True), "push_next": (0, False)},
    CALC: {"pop_prev": (0, True), "pop_next": (3, True), "push_prev": (1, False),
           "push_next": (2, False)},
    SAVE: {"pop_prev": (2, True), "push_prev": (3, False)},
}


# Deferred work (weights, snapshots, products) held before it is computed, at most.
_PENDING_LIMIT = 256 << 20


class SimulationError(InputError):
    """The program did something the hardware must not do; `index` names the instruction."""

    def __init__(self, index: int, ins: Instruction | None, message: str):
        self.index = index
        what = type(ins).__name__.upper() if ins is not None else "?"
        super().__init__(f"instruction {index} ({what}): {message}")


@dataclass(frozen=True)
class FunctionalResult:
    """`layers[name]`: the integer output of every stage (under the name of its last fused
    layer) and host layer; `outputs[name]`: the graph outputs (float for a host-only final
    layer); `saturations[layer]`: values saturated per CONV/FC (and host) layer, over the
    batch. Arrays have a leading batch axis when the input had one."""

    outputs: Mapping[str, np.ndarray]
    layers: Mapping[str, np.ndarray]
    saturations: Mapping[str, int]
    executed: int
    stats: Mapping[str, int] = field(default_factory=dict)

    @property
    def output(self) -> np.ndarray:
        if len(self.outputs) != 1:
            raise InputError(f"graph has {len(self.outputs)} outputs: use .outputs")
        return next(iter(self.outputs.values()))


# --- buffers -------------------------------------------------------------------------------------

class _Buf:
    """A buffer: values (sample, entry); per entry, whether every sample holds the same value,
    whether it was ever written, its last write (by the writer engine) and last read by the
    reader engine: LOAD writes INPUT/WEIGHT/BIAS and CALC reads them; CALC writes OUTPUT and
    SAVE reads it (CALC's own accumulator reads are ordered by its in-order engine)."""

    def __init__(self, name: str, entries: int, writer: int, reader: int, batch: int,
                 dtype: type):
        self.name = name
        self.writer, self.reader = writer, reader
        # INPUT/WEIGHT/BIAS hold data, weights and biases (≤ 32 bits): float64 stores them
        # exactly and feeds the matrix products without conversion; OUTPUT holds int64.
        self.val = np.zeros((batch, entries), dtype=dtype)
        self.uniform = np.zeros(entries, dtype=bool)
        self.valid = np.zeros(entries, dtype=bool)
        self.last_write = np.full(entries, -1, dtype=np.int32)   # instruction indices
        self.last_read = np.full(entries, -1, dtype=np.int32)

    @property
    def entries(self) -> int:
        return self.val.shape[1]

    def span(self, m: _Machine, a: int, n: int, limit: int | None = None) -> slice:
        cap = self.entries if limit is None else limit
        if a < 0 or n < 0 or a + n > cap:
            area = "" if limit is None else " (FC weight area)"
            m.fail(f"{self.name} buffer entries [{a}, {a + n}) outside its {cap} entries{area}")
        return slice(a, a + n)

    def read(self, m: _Machine, idx: slice | np.ndarray, what: str) -> None:
        """Check and record a read (the values are taken with `get`)."""
        valid = self.valid[idx]
        if not valid.all():
            bad = np.flatnonzero(~valid)[0]
            pos = (idx.start + bad) if isinstance(idx, slice) else int(idx[bad])
            m.fail(f"reads {self.name} entry {pos} ({what}) that was never written")
        if m.check_races and m.engine == self.reader:
            j = int(self.last_write[idx].max(initial=-1))
            if j > m.vc[self.writer]:
                m.fail(f"reads {self.name} entries written by instruction {j}"
                       f" ({ENGINES[self.writer]}) without a dependency on it (race)")
            self.last_read[idx] = m.index          # indices only grow: no max needed

    def get(self, idx: slice) -> np.ndarray:
        """The values, (n,) when every sample holds the same ones, else (batch, n)."""
        if self.uniform[idx].all():
            return self.val[0, idx]
        return self.val[:, idx]

    def write(self, m: _Machine, idx: slice | np.ndarray, values: np.ndarray | None,
              shared: bool = False) -> None:
        """Record a write (race check, valid bits); store `values` ((n,) shared by every
        sample, or (batch, n)) unless None: a deferred CALC stores its values later."""
        if m.check_races:
            j = int(self.last_read[idx].max(initial=-1))
            if j > m.vc[self.reader]:
                m.fail(f"overwrites {self.name} entries still read by instruction {j}"
                       f" ({ENGINES[self.reader]}) without a dependency on it (race)")
            self.last_write[idx] = m.index
        if values is not None:
            self.val[:, idx] = values
            self.uniform[idx] = shared
        self.valid[idx] = True


# --- the machine ---------------------------------------------------------------------------------

class _Machine:
    def __init__(self, cfg: AcceleratorConfig, manifest: Mapping[str, Any], ddr: np.ndarray,
                 batch: int, check_races: bool):
        self.cfg = cfg
        self.batch = batch
        self.check_races = check_races
        f64 = np.float64
        self.bufs = {
            Buffer.INPUT: _Buf("INPUT", cfg.input_buffer_entries, LOAD, CALC, batch, f64),
            Buffer.WEIGHT: _Buf("WEIGHT", cfg.weight_buffer_entries, LOAD, CALC, batch, f64),
            Buffer.BIAS: _Buf("BIAS", cfg.bias_buffer_entries, LOAD, CALC, batch, f64)}
        self.out = _Buf("OUTPUT", cfg.output_buffer_entries, CALC, SAVE, batch, np.int64)
        self.fc_entries = min(cfg.fc_buffer_entries, cfg.input_buffer_entries)
        # float64 products are exact when no sum of k products can reach 2^53; a loaded value
        # is bounded by its element's bytes (whatever the DDR holds)
        self.exact_terms = (1 << 53) >> (8 * (cfg.data_bytes + cfg.weight_bytes) - 2)
        self.vc = np.full(3, -1, dtype=np.int64)
        self.engine_vc = [np.full(3, -1, dtype=np.int64) for _ in range(3)]
        self.tokens: list[deque[np.ndarray]] = [deque() for _ in range(4)]
        self.index = -1
        self.ins: Instruction | None = None
        self.engine = -1
        self.saturations: dict[int, int] = {}
        self.nops = 0
        self.pending: list[_Pending | _PendingSave] = []
        self.pending_bytes = 0
        # what each INPUT extent holds (the LOAD that filled it, by its source and the data's
        # version), and the tiles deferred CALCs read (snapshotted before being overwritten)
        self.extents: list[tuple[int, int, tuple[Any, ...]]] = []
        self.tiles: dict[tuple[Any, ...], _TileRef] = {}
        self.host_epoch = 0
        # DDR: constants shared by the samples, the feature-map arena per sample
        a0, a1 = (int(v) for v in manifest["arena"])
        self.arena = (a0, a1)
        self.const = ddr
        self.adata = np.repeat(ddr[None, a0:a1], batch, axis=0)
        n = max(0, a1 - a0)
        self.written = np.zeros(n, dtype=bool)
        self.last_save = np.full(n, -1, dtype=np.int32)
        self.last_load = np.full(n, -1, dtype=np.int32)
        # a proven bound on |accumulators| per accumulator range (skips the overflow check)
        self.acc_bound: dict[tuple[int, int], int] = {}
        self.term_bound = 1 << (8 * (cfg.data_bytes + cfg.weight_bytes) - 2)
        regs = manifest["regions"]
        self.reg_start = np.array([int(r["start"]) for r in regs], dtype=np.int64)
        self.reg_end = self.reg_start + np.array([int(r["size"]) for r in regs], dtype=np.int64)
        self.reg_first = np.array([int(r["live"][0]) for r in regs], dtype=np.int64)
        self.reg_last = np.array([int(r["live"][1]) for r in regs], dtype=np.int64)
        self.reg_writable = np.array([bool(r["writable"]) for r in regs], dtype=bool)
        self.position = {int(d["index"]): int(d["position"]) for d in manifest["layers"]}
        self._live_cache: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}

    def fail(self, message: str) -> None:
        raise SimulationError(self.index, self.ins, message)

    # --- DDR --------------------------------------------------------------------------------
    def _live(self, pos: int, writable: bool) -> tuple[np.ndarray, np.ndarray]:
        """Merged intervals of the regions live at schedule position `pos`."""
        key = (pos, writable)
        if key not in self._live_cache:
            sel = (self.reg_first <= pos) & (pos <= self.reg_last)
            if writable:
                sel &= self.reg_writable
            order = np.argsort(self.reg_start[sel])
            s, e = self.reg_start[sel][order], self.reg_end[sel][order]
            ms: list[int] = []
            me: list[int] = []
            for a, b in zip(s.tolist(), e.tolist(), strict=True):
                if ms and a <= me[-1]:
                    me[-1] = max(me[-1], b)
                else:
                    ms.append(a)
                    me.append(b)
            self._live_cache[key] = (np.array(ms, dtype=np.int64), np.array(me, dtype=np.int64))
        return self._live_cache[key]

    def segments(self, ins: Load | Save, eb: int, writing: bool) -> _Geom:
        """The DMA geometry of an instruction, after checking it against the DDR image and the
        regions live at this stage."""
        seg = ins.length * eb
        geom = _Geom(ins.ddr_addr, ins.n2, ins.stride2, ins.n1, ins.stride1, seg)
        if geom.count == 0:
            return geom
        if geom.end > len(self.const):
            self.fail(f"DDR bytes up to {geom.end} outside the {len(self.const)}-byte DDR image")
        pos = self.position.get(ins.layer)
        if pos is None:
            self.fail(f"layer {ins.layer} is not in the manifest's layer table")
        ms, me = self._live(int(pos), writing)
        starts = geom.starts()
        k = np.searchsorted(ms, starts, side="right") - 1
        ok = (k >= 0) & (starts + seg <= me[np.maximum(k, 0)]) if len(ms) else \
            np.zeros(len(starts), dtype=bool)
        if not ok.all():
            b = int(starts[np.flatnonzero(~ok)[0]])
            kind = "writable region" if writing else "region"
            self.fail(f"DDR bytes [{b}, {b + seg}) are outside every {kind} live at this layer")
        return geom

    def _where(self, geom: _Geom) -> str:
        a0, a1 = self.arena
        if geom.count == 0 or geom.end <= a0 or geom.start >= a1:
            return "const"
        return "arena" if geom.start >= a0 and geom.end <= a1 else "both"

    def _arena_views(self, geom: _Geom, where: str) -> tuple[Any, Any, Any] | None:
        """(written, last_save, last_load) views of the arena bytes a transfer touches."""
        if where == "const":
            return None
        a0, a1 = self.arena
        if where == "both":
            idx = geom.indices()
            sel = idx[(idx >= a0) & (idx < a1)] - a0
            return _Gather(self.written, sel), _Gather(self.last_save, sel), \
                _Gather(self.last_load, sel)
        return (geom.view(self.written, a0), geom.view(self.last_save, a0),
                geom.view(self.last_load, a0))

    def _read_bytes(self, geom: _Geom, where: str) -> tuple[np.ndarray, bool]:
        """The transfer's bytes: ((count,), shared) from constants, else ((batch, count))."""
        if where == "const":
            return np.ascontiguousarray(geom.view(self.const)).reshape(-1), True
        a0, a1 = self.arena
        if where == "arena":
            v = geom.batch_view(self.adata, a0)
            return np.ascontiguousarray(v).reshape(self.batch, -1), False
        idx = geom.indices()
        inside = (idx >= a0) & (idx < a1)
        out = np.repeat(self.const[np.where(inside, 0, idx)][None], self.batch, axis=0)
        out[:, inside] = self.adata[:, idx[inside] - a0]
        return out, False

    # --- instructions -----------------------------------------------------------------------
    def step(self, index: int, ins: Instruction) -> None:
        self.index, self.ins = index, ins
        if isinstance(ins, End):
            return self.end()
        eng = _ENGINE[type(ins)]
        self.engine = eng
        vc = self.engine_vc[eng].copy()
        pushes = []
        for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
            if not getattr(ins, flag):
                continue
            spec = _FLAGS[eng].get(flag)
            if spec is None:
                self.fail(f"{flag}=1 but the {ENGINES[eng]} engine has no neighbour there")
            ch, is_pop = spec
            if is_pop:
                if not self.tokens[ch]:
                    self.fail(f"token underflow: {flag} waits for a {CHANNELS[ch]} token that no"
                              " earlier instruction pushed (can never be satisfied in program"
                              " order)")
                vc = np.maximum(vc, self.tokens[ch].popleft())
            else:
                pushes.append(ch)
        self.vc = vc
        if isinstance(ins, Load):
            self.load(ins)
        elif isinstance(ins, Calc):
            self.calc(ins)
        else:
            self.save(ins)
        vc[eng] = index
        self.engine_vc[eng] = vc
        for ch in pushes:
            self.tokens[ch].append(vc.copy())
        return None

    def end(self) -> None:
        self.flush()
        left = {CHANNELS[c]: len(q) for c, q in enumerate(self.tokens) if q}
        if left:
            self.fail(f"tokens pushed but never popped at END: {left}")
        ins = self.ins
        assert ins is not None
        if ins.pop_prev or ins.pop_next or ins.push_prev or ins.push_next:
            self.fail("END carries dependency flags")
        for e in range(3):
            self.engine_vc[e][:] = self.index

    def load(self, ins: Load) -> None:
        cfg = self.cfg
        if ins.buffer not in (Buffer.INPUT, Buffer.WEIGHT, Buffer.BIAS):
            self.fail(f"LOAD into buffer {ins.buffer}, which does not exist")
        if ins.fc_weights and ins.buffer == Buffer.BIAS:
            self.fail("fc_weights=1 on a BIAS load")
        if ins.buffer == Buffer.INPUT:
            eb = cfg.weight_bytes if ins.fc_weights else cfg.data_bytes
        elif ins.buffer == Buffer.WEIGHT:
            eb = cfg.data_bytes if ins.fc_weights else cfg.weight_bytes
        else:
            eb = cfg.bias_bytes
        buf = self.bufs[Buffer(ins.buffer)]
        n = ins.n1 * ins.n2 * ins.length
        limit = self.fc_entries if ins.buffer == Buffer.INPUT and ins.fc_weights else None
        dst = buf.span(self, ins.buf_addr, n, limit)
        geom = self.segments(ins, eb, writing=False)
        where = self._where(geom)
        views = self._arena_views(geom, where)
        if views is not None:
            written, last_save, last_load = views
            if not written[...].all():
                self.fail(f"reads DDR bytes of the feature-map arena that no SAVE (or the host)"
                          f" has written (in [{geom.start}, {geom.end}))")
            version = int(last_save[...].max(initial=-1))
            if self.check_races:
                if version > self.vc[SAVE]:
                    self.fail(f"reads DDR bytes saved by instruction {version} (SAVE) without a"
                              " dependency on it (race)")
                last_load[...] = self.index
            if any(isinstance(p, _PendingSave) and p.geom.start < geom.end
                   and geom.start < p.geom.end for p in self.pending):
                self.flush()            # a deferred SAVE writes what this LOAD reads
        else:
            version = -1
        if ins.buffer == Buffer.INPUT:
            self._overwrite_input(dst, (where, geom, version, self.host_epoch, eb))
        if n == 0:
            buf.write(self, dst, np.zeros(0), shared=True)
            return
        raw, shared = self._read_bytes(geom, where)
        if eb not in (1, 2, 4, 8):
            values = unpack(raw.reshape(-1), eb, np.float64)
            buf.write(self, dst, values if shared else values.reshape(self.batch, -1), shared)
            return
        # convert the little-endian elements straight into the buffer (one pass, no float64
        # temporary: FC weight blocks are the bulk of the data moved)
        buf.write(self, dst, None)
        elems = np.ascontiguousarray(raw).view(f"<i{eb}")
        buf.val[:, dst] = elems if shared else elems.reshape(self.batch, -1)
        buf.uniform[dst] = shared

    def _overwrite_input(self, dst: slice, content: tuple[Any, ...]) -> None:
        """INPUT entries `dst` are about to receive `content`: snapshot the tiles of deferred
        CALCs that still live there, and remember what the extent holds."""
        a, b = dst.start, dst.stop
        for ref in self.tiles.values():
            if ref.data is None and ref.span.start < b and a < ref.span.stop:
                ref.data = self.bufs[Buffer.INPUT].val[:, ref.span].copy()
                self.pending_bytes += ref.data.nbytes
        self.extents = [e for e in self.extents if e[1] <= a or b <= e[0]]
        self.extents.append((a, b, content))

    def _tile_ref(self, tile: slice, ins: Calc) -> _TileRef:
        """The deferred-CALC handle of an input tile: CALCs reading the same content (the same
        LOAD source and data version, even if loaded again) share it."""
        key: tuple[Any, ...] = ("mixed", self.index)
        for a, b, content in self.extents:
            if a <= tile.start and tile.stop <= b:
                key = (content, tile.start - a, tile.stop - tile.start)
                break
        ref = self.tiles.get(key)
        if ref is None or (ref.data is None and ref.span != tile):
            ref = _TileRef(key, tile)
            self.tiles[key] = ref
        return ref

    def calc(self, ins: Calc) -> None:
        """Check the CALC and record its accesses now (program order); compute it later,
        together with the following CALCs on the same input tile (one matrix product with
        their weights stacked: what makes simulating a layer fast)."""
        cfg = self.cfg
        if ins.to == 0 or ins.ti == 0:
            self.nops += 1
            return
        if ins.kind not in (CalcKind.CONV, CalcKind.FC):
            self.fail(f"CALC kind {ins.kind} is neither CONV nor FC")
        if ins.stride < 1:
            self.fail("stride 0")
        inp, wgt, out = self.bufs[Buffer.INPUT], self.bufs[Buffer.WEIGHT], self.out
        vec = None
        if ins.kind == CalcKind.FC:
            if ins.pool or (ins.in_rows, ins.in_cols, ins.out_rows, ins.out_cols) != (1, 1, 1, 1):
                self.fail("FC CALC must have 1×1 rows/cols and no pooling")
            vs = wgt.span(self, ins.wb_addr, ins.ti)
            wgt.read(self, vs, "FC vector")
            tile = inp.span(self, ins.ib_addr, ins.to * ins.ti, self.fc_entries)
            inp.read(self, tile, "FC weights")
            # computed at once (flushed below), so views of the buffers suffice
            vec = wgt.get(vs)
            w = inp.get(tile)
            w = w.reshape(ins.to, ins.ti) if w.ndim == 1 else w.reshape(-1, ins.to, ins.ti)
            key: tuple[int, ...] = (-1,)
        else:
            if ins.in_cols > cfg.max_row_width:
                self.fail(f"input tile row of {ins.in_cols} values exceeds max_row_width"
                          f" {cfg.max_row_width}")
            tile = inp.span(self, ins.ib_addr, ins.ti * ins.in_rows * ins.in_cols)
            inp.read(self, tile, "input tile")
            ws = wgt.span(self, ins.wb_addr, ins.to * ins.ti * 9)
            wgt.read(self, ws, "weights")
            w = wgt.get(ws).copy()
            w = w.reshape(ins.to, ins.ti * 9) if w.ndim == 1 else \
                w.reshape(-1, ins.to, ins.ti * 9)
            key = (ins.ib_addr, ins.ti, ins.in_rows, ins.in_cols, ins.out_rows, ins.out_cols,
                   ins.stride, ins.pad_top, ins.pad_left, ins.koff_y, ins.koff_x)
        acc_idx = out.span(self, ins.ob_addr, ins.to * ins.out_rows * ins.out_cols)
        if ins.accumulate:
            out.read(self, acc_idx, "accumulators")
        bias = None
        out_idx = None
        if ins.finalize:
            if not 2 <= ins.out_bits <= cfg.data_bits:
                self.fail(f"out_bits {ins.out_bits} outside 2..{cfg.data_bits}")
            if ins.has_bias:
                bb = self.bufs[Buffer.BIAS]
                bsl = bb.span(self, ins.bb_addr, ins.to)
                bb.read(self, bsl, "bias")
                bias = bb.get(bsl).astype(np.int64)
            r, c = (ins.out_rows // 2, ins.out_cols // 2) if ins.pool else \
                (ins.out_rows, ins.out_cols)
            pitch = ins.out_pitch or r * c
            out_idx = (ins.out_addr + np.arange(ins.to, dtype=np.int64)[:, None] * pitch
                       + np.arange(r * c, dtype=np.int64)[None, :]).reshape(-1)
            if len(out_idx) and (out_idx.max() >= out.entries or out_idx.min() < 0):
                self.fail(f"finalized output reaches OUTPUT entry {int(out_idx.max())}, beyond"
                          f" its {out.entries} entries")
        out.write(self, acc_idx, None)
        if out_idx is not None:
            out.write(self, out_idx, None)
        # |acc| ≤ (previous bound) + terms · max|product|: when that stays inside the
        # accumulator, the overflow check is unnecessary
        terms = ins.ti * (1 if ins.kind == CalcKind.FC else 9)
        rng = (acc_idx.start, acc_idx.stop)
        prev = self.acc_bound.get(rng) if ins.accumulate else 0
        bound = None if prev is None else prev + terms * self.term_bound
        self.acc_bound = {r: v for r, v in self.acc_bound.items()
                          if r[1] <= rng[0] or rng[1] <= r[0]}
        if bound is not None:
            self.acc_bound[rng] = bound
        check = bound is None or bound >= 1 << (cfg.acc_bits - 1)
        if vec is not None:             # FC: at once (its weight block is the big operand)
            self.flush()
            self.pending.append(_Pending(self.index, ins, key, None, w, vec, bias, acc_idx,
                                         out_idx, check))
            self.flush()
            return
        ref = self._tile_ref(tile, ins)
        self.pending.append(_Pending(self.index, ins, key, ref, w, vec, bias, acc_idx, out_idx,
                                     check))
        # bound the memory held for deferred work: weights and products
        self.pending_bytes += w.nbytes + 8 * self.batch * ins.to * ins.out_rows * ins.out_cols
        if self.pending_bytes > _PENDING_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Carry out the deferred operations in program order: the CALCs (those reading the
        same tile the same way share one matrix product, computed at the first of them) and
        the SAVEs between them."""
        if not self.pending:
            return
        pend, self.pending = self.pending, []
        self.pending_bytes = 0
        index, ins = self.index, self.ins
        groups: dict[tuple[int, tuple[int, ...]], list[_Pending]] = {}
        for op in pend:
            if isinstance(op, _Pending):
                groups.setdefault((id(op.tile), op.key), []).append(op)
        products: dict[int, np.ndarray] = {}
        for op in pend:
            self.index, self.ins = op.index, op.ins
            if isinstance(op, _PendingSave):
                self.store(op)
                continue
            if id(op) not in products:
                members = groups[(id(op.tile), op.key)]
                products.update(zip((id(p) for p in members), self._products(members),
                                    strict=True))
            self.compute(op, products.pop(id(op)))
        self.tiles = {}
        self.index, self.ins = index, ins

    def _products(self, calcs: list[_Pending]) -> list[np.ndarray]:
        """Each CALC's products, (batch, to, out_rows, out_cols), exactly; the CALCs read the
        same tile the same way."""
        first = calcs[0]
        i = first.ins
        if first.vec is not None:                            # FC
            exact = i.ti <= self.exact_terms
            w, v = first.w, first.vec
            if w.ndim == 2:                                  # shared block: one GEMM
                prod = _matmul(np.atleast_2d(v), w.T, exact)
                prod = np.broadcast_to(prod, (self.batch, i.to))
            else:
                prod = _matmul(w, np.broadcast_to(v, (self.batch, i.ti))[:, :, None],
                               exact)[..., 0]
            return [prod.reshape(self.batch, i.to, 1, 1)]
        ref = first.tile
        assert ref is not None
        buf = self.bufs[Buffer.INPUT]
        if ref.data is not None:
            t = ref.data
        else:
            t = buf.val[:1, ref.span] if buf.uniform[ref.span].all() else buf.val[:, ref.span]
        t = t.reshape(-1, i.ti, i.in_rows, i.in_cols)
        ws = [p.w for p in calcs]
        if any(w.ndim == 3 for w in ws):
            ws = [np.broadcast_to(w, (self.batch, *w.shape[-2:])) for w in ws]
        w_all = np.concatenate(ws, axis=-2) if len(ws) > 1 else ws[0]
        exact = 9 * i.ti <= self.exact_terms
        pat = _patches(t, i, np.float64 if exact else np.int64)
        prod = _matmul(w_all, pat, exact)                    # (batch, Σto, rows·cols)
        prod = np.broadcast_to(prod, (self.batch, *prod.shape[-2:]))
        prod = prod.reshape(self.batch, -1, i.out_rows, i.out_cols)
        return np.split(prod, np.cumsum([p.ins.to for p in calcs])[:-1], axis=1)

    def compute(self, p: _Pending, part: np.ndarray) -> None:
        """The accumulate and finalize of one CALC, given its products (batch, to, R, C)."""
        cfg, ins, out = self.cfg, p.ins, self.out
        if ins.accumulate:
            part = part + out.val[:, p.acc].reshape(part.shape)
        lim = (1 << (cfg.acc_bits - 1)) - 1
        if p.check and part.size and (part.max() > lim or part.min() < -lim - 1):
            self.fail(f"accumulator overflow: a sum exceeds the {cfg.acc_bits}-bit accumulator")
        out.val[:, p.acc] = part.reshape(self.batch, -1)
        if p.out is None:
            return
        acc = part
        if p.bias is not None:
            b = np.left_shift(p.bias, ins.bias_shift)
            acc = acc + b.reshape(*b.shape[:-1], ins.to, 1, 1)
        if ins.relu:
            acc = np.maximum(acc, 0)
        y, nsat = requantize(acc, ins.data_shift, FixedFormat(ins.out_bits, 0))
        self.saturations[ins.layer] = self.saturations.get(ins.layer, 0) + nsat
        if ins.pool:
            r, c = y.shape[2] // 2, y.shape[3] // 2
            y = y[:, :, :2 * r, :2 * c].reshape(self.batch, ins.to, r, 2, c, 2).max(axis=(3, 5))
        out.val[:, p.out] = y.reshape(self.batch, -1)

    def save(self, ins: Save) -> None:
        """Check the SAVE and record its accesses now; move the data now, or after the
        deferred CALCs before it have been computed (in program order)."""
        cfg = self.cfg
        out = self.out
        n = ins.n1 * ins.n2 * ins.length
        src = out.span(self, ins.ob_addr, n)
        out.read(self, src, "data to save")
        geom = self.segments(ins, cfg.data_bytes, writing=True)
        if geom.overlapping():
            self.fail("SAVE segments overlap in DDR")
        where = self._where(geom)
        if where != "arena" and geom.count:
            self.fail("SAVE outside the feature-map arena")
        views = self._arena_views(geom, where)
        if views is not None:
            written, last_save, last_load = views
            if self.check_races:
                j = int(last_load[...].max(initial=-1))
                if j > self.vc[LOAD]:
                    self.fail(f"overwrites DDR bytes still read by instruction {j} (LOAD)"
                              " without a dependency on it (race)")
            last_save[...] = self.index     # also the data's version (tile identity)
            written[...] = True
        op = _PendingSave(self.index, ins, src, geom)
        if self.pending:
            self.pending.append(op)
        else:
            self.store(op)

    def store(self, op: _PendingSave) -> None:
        """The data movement of a SAVE."""
        cfg = self.cfg
        vals = self.out.val[:, op.src]
        lo, hi = -(1 << (cfg.data_bits - 1)), (1 << (cfg.data_bits - 1)) - 1
        if vals.size and (vals.min() < lo or vals.max() > hi):
            self.fail(f"saves values outside the {cfg.data_bits}-bit data range (accumulators"
                      " that were never finalized?)")
        if vals.size:
            g = op.geom
            data = pack_array(vals, cfg.data_bytes)
            g.batch_view(self.adata, self.arena[0])[...] = data.reshape(
                self.batch, g.n2, g.n1, g.seg)

    # --- host side --------------------------------------------------------------------------
    def host_write(self, start: int, values: np.ndarray) -> None:
        """Write (batch, count) data values at `start` (inside the arena)."""
        data = pack_array(values, self.cfg.data_bytes).reshape(self.batch, -1)
        a = start - self.arena[0]
        self.adata[:, a:a + data.shape[1]] = data
        self.written[a:a + data.shape[1]] = True
        self.host_epoch += 1

    def host_read(self, start: int, count: int) -> np.ndarray:
        """(batch, count) data values at `start` (inside the arena)."""
        db = self.cfg.data_bytes
        a = start - self.arena[0]
        raw = np.ascontiguousarray(self.adata[:, a:a + count * db])
        return unpack(raw.reshape(-1), db).reshape(self.batch, count)


def _matmul(a: np.ndarray, b: np.ndarray, exact_f64: bool) -> np.ndarray:
    """Exact integer product a @ b (numpy broadcasting) of integer-valued arrays: in float64
    when the caller has proven that no partial sum can reach 2^53 (then every IEEE operation is
    exact), else re-checked on the data and, if need be, done in int64."""
    if a.size == 0 or b.size == 0:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return np.zeros(shape, dtype=np.int64)
    if not exact_f64:
        bound = float(np.abs(a).sum(axis=-1).max()) * float(np.abs(b).max())
        exact_f64 = bound < 2.0 ** 53
    if exact_f64:
        return (a.astype(np.float64, copy=False) @ b.astype(np.float64, copy=False)).astype(
            np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def _patches(tile: np.ndarray, ins: Calc, dtype: type = np.int64) -> np.ndarray:
    """The (n, ti·9, out_rows·out_cols) matrices of the tile values each output reads (n
    samples): tile[i, y·s + koff_y + ky − pad_top, x·s + koff_x + kx − pad_left], zero outside
    the tile."""
    s = ins.stride
    n, ti, rows, cols = tile.shape
    r0, c0 = ins.koff_y - ins.pad_top, ins.koff_x - ins.pad_left
    nr, nc = (ins.out_rows - 1) * s + 3, (ins.out_cols - 1) * s + 3
    z = np.zeros((n, ti, nr, nc), dtype=dtype)
    ra, rb = max(0, r0), min(rows, r0 + nr)
    ca, cb = max(0, c0), min(cols, c0 + nc)
    if ra < rb and ca < cb:
        z[:, :, ra - r0:rb - r0, ca - c0:cb - c0] = tile[:, :, ra:rb, ca:cb]
    win = np.lib.stride_tricks.sliding_window_view(z, (3, 3), axis=(2, 3))[:, :, ::s, ::s]
    win = win[:, :, :ins.out_rows, :ins.out_cols]          # (n, ti, R, C, 3, 3)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, ti * 9, ins.out_rows * ins.out_cols)


@dataclass
class _Pending:
    """A CALC whose accesses are checked and recorded, its products not yet computed."""

    index: int
    ins: Calc
    key: tuple[int, ...]          # CALCs with equal keys read the same tile the same way
    tile: _TileRef | None         # the input tile it reads (None for FC)
    w: np.ndarray                 # weights (to, K), or (batch, to, K) if they differ
    vec: np.ndarray | None        # FC input vector, (ti,) or (batch, ti)
    bias: np.ndarray | None       # (to,) or (batch, to)
    acc: slice
    out: np.ndarray | None        # OUTPUT entries of its finalized values
    check: bool = True            # overflow possible (no static bound): check the sums


@dataclass(eq=False)
class _TileRef:
    """An input tile read by deferred CALCs: live in the INPUT buffer at `span`, or (once the
    buffer was overwritten) its snapshot `data`, (batch, n)."""

    key: tuple[Any, ...]
    span: slice
    data: np.ndarray | None = None


@dataclass
class _PendingSave:
    """A SAVE whose accesses are checked and recorded, its data not yet moved."""

    index: int
    ins: Save
    src: slice                    # OUTPUT entries it reads
    geom: _Geom


@dataclass(frozen=True)
class _Geom:
    """A DMA transfer: n2 rows of n1 segments of `seg` bytes, as strided views."""

    start: int
    n2: int
    s2: int
    n1: int
    s1: int
    seg: int

    @property
    def count(self) -> int:
        return self.n2 * self.n1 * self.seg

    @property
    def end(self) -> int:
        return self.start + (self.n2 - 1) * self.s2 + (self.n1 - 1) * self.s1 + self.seg

    def starts(self) -> np.ndarray:
        j = np.arange(self.n2, dtype=np.int64)[:, None] * self.s2
        i = np.arange(self.n1, dtype=np.int64)[None, :] * self.s1
        return (self.start + j + i).reshape(-1)

    def indices(self) -> np.ndarray:
        return (self.starts()[:, None] + np.arange(self.seg, dtype=np.int64)).reshape(-1)

    def overlapping(self) -> bool:
        row = (self.n1 - 1) * self.s1 + self.seg
        return (self.n1 > 1 and self.s1 < self.seg) or (self.n2 > 1 and self.s2 < row)

    def view(self, arr: np.ndarray, base: int = 0) -> np.ndarray:
        """The (n2, n1, seg) view of the transfer's bytes in the 1-D `arr` (from `base`)."""
        st = arr.strides[0]
        return np.lib.stride_tricks.as_strided(
            arr[self.start - base:], shape=(self.n2, self.n1, self.seg),
            strides=(self.s2 * st, self.s1 * st, st))

    def batch_view(self, arr: np.ndarray, base: int) -> np.ndarray:
        """The (batch, n2, n1, seg) view in the 2-D (batch, bytes) `arr`."""
        sb, st = arr.strides
        return np.lib.stride_tricks.as_strided(
            arr[:, self.start - base:], shape=(arr.shape[0], self.n2, self.n1, self.seg),
            strides=(sb, self.s2 * st, self.s1 * st, st))


class _Gather:
    """Index-array stand-in for a view (a transfer straddling the arena's edge)."""

    def __init__(self, arr: np.ndarray, idx: np.ndarray):
        self.arr, self.idx = arr, idx

    def __getitem__(self, _: object) -> np.ndarray:
        return self.arr[self.idx]

    def __setitem__(self, _: object, value: object) -> None:
        self.arr[self.idx] = value


# --- host layers ---------------------------------------------------------------------------------

def _host_layer(step: Mapping[str, Any], inputs: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """One host layer on a batch of integer inputs, through the reference executor."""
    from deepfpga.ir import INPUT, Graph
    from deepfpga.ir.graph import layer_from_dict
    from deepfpga.quant.qmodel import LayerFormats, QuantizedModel
    from deepfpga.quant.reference import execute, execute_layer

    spec = dict(step["spec"])
    fin = [FixedFormat(int(f["bw"]), int(f["fl"])) for f in step["formats"]["inputs"]]
    fout = FixedFormat(int(step["formats"]["output"]["bw"]), int(step["formats"]["output"]["fl"]))
    if len(inputs) != 1:
        return _host_multi(spec, inputs, fin, fout, bool(step["graph_output"]))
    layer = layer_from_dict({**spec, "inputs": [INPUT]})
    g = Graph(f"host-{layer.name}", tuple(inputs[0].shape[1:]), (layer,), (layer.name,))
    q = QuantizedModel(g, fin[0], {layer.name: LayerFormats(fin[0], fout)}, {})
    if step["graph_output"] and layer.host_only:     # the reference keeps such outputs float
        r = execute(q, inputs[0])
        return r.outputs[layer.name], int(r.saturations.get(layer.name, 0))
    y, n = execute_layer(q, layer.name, [inputs[0]])
    return y, int(n)


def _host_multi(spec: dict[str, Any], inputs: list[np.ndarray], fin: list[FixedFormat],
                fout: FixedFormat, graph_output: bool) -> tuple[np.ndarray, int]:
    """A multi-input host layer (add): float on dequantized values, as the reference does."""
    import torch

    from deepfpga.ir.float_exec import apply_layer
    from deepfpga.ir.graph import layer_from_dict
    from deepfpga.quant.fixedpoint import count_saturated, to_fixed, to_float

    layer = layer_from_dict(spec)
    xs = [torch.from_numpy(to_float(x, f)) for x, f in zip(inputs, fin, strict=True)]
    with torch.inference_mode():
        yf = apply_layer(layer, {}, xs).numpy()
    if graph_output:
        return yf, 0
    return to_fixed(yf, fout), count_saturated(yf, fout)


def host_step(step: Mapping[str, Any], tensors: Mapping[str, Any],
              host: Mapping[str, np.ndarray], from_ddr: Any, n: int) -> tuple[np.ndarray, int]:
    """One host step of a manifest's schedule on a batch of `n`: its inputs from `host` (the
    host's own results) or read from DDR by `from_ddr(name)`, through the reference executor.
    Returns the output and the values it saturated (the RTL driver runs host steps with it)."""
    xs = []
    for name, shp in zip(step["inputs"], step["input_shapes"], strict=True):
        if name in host:
            v = host[name]
        elif tensors[name]["on_ddr"]:
            v = from_ddr(name)
        else:
            raise InputError(f"host layer {step['layer']!r}: tensor {name!r} unavailable")
        xs.append(np.asarray(v).reshape(n, *shp))
    return _host_layer(step, xs)


# --- entry point ---------------------------------------------------------------------------------

def check_run_inputs(ddr_image: bytes, manifest: Mapping[str, Any], cfg: AcceleratorConfig,
                     x_int: np.ndarray) -> tuple[np.ndarray, bool]:
    """Check a compiled program's DDR image, manifest and input against each other; returns
    the input as a batch and whether one sample was given (shared with the RTL driver)."""
    if manifest.get("config", {}).get("hash") != cfg.hash().hex():
        raise InputError("manifest was written for a different accelerator configuration")
    if len(ddr_image) != int(manifest["ddr_size"]):
        raise InputError(f"DDR image is {len(ddr_image)} bytes, the manifest says"
                         f" {manifest['ddr_size']}")
    shape = tuple(manifest["input"]["shape"])
    x = np.asarray(x_int)
    if x.dtype.kind not in "iu":
        raise InputError(f"input must be integers in the input format, got dtype {x.dtype}")
    single = x.shape == shape
    if single:
        x = x[None]
    elif x.ndim != len(shape) + 1 or x.shape[1:] != shape or not len(x):
        raise InputError(f"input has shape {x.shape}, expected {shape} or (N, {shape})")
    fin = manifest["input"]["format"]
    lo, hi = -(1 << (fin["bw"] - 1)), (1 << (fin["bw"] - 1)) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise InputError(f"input integers in [{x.min()}, {x.max()}] lie outside the input"
                         f" format's range [{lo}, {hi}]")
    return x, single


def simulate(program_bytes: bytes, ddr_image: bytes, manifest: Mapping[str, Any],
             cfg: AcceleratorConfig, x_int: np.ndarray, *, check_races: bool = True
             ) -> FunctionalResult:
    """Run the compiled program on `x_int`: integers in the input format, one sample of the
    input shape or a batch (N, *shape) — a batch runs in one pass over the program."""
    program = decode_program(program_bytes, cfg.hash())
    x, single = check_run_inputs(ddr_image, manifest, cfg, x_int)
    res = _run(program.instructions, ddr_image, manifest, cfg, x, check_races)
    if not single:
        return res
    return FunctionalResult({k: v[0] for k, v in res.outputs.items()},
                            {k: v[0] for k, v in res.layers.items()}, res.saturations,
                            res.executed, res.stats)


def _run(ins: Sequence[Instruction], ddr_image: bytes, manifest: Mapping[str, Any],
         cfg: AcceleratorConfig, x: np.ndarray, check_races: bool) -> FunctionalResult:
    n = len(x)
    m = _Machine(cfg, manifest, np.frombuffer(ddr_image, dtype=np.uint8), n, check_races)
    tensors = manifest["tensors"]
    x = x.astype(np.int64)
    host: dict[str, np.ndarray] = {"input": x}
    if tensors["input"]["on_ddr"]:
        m.host_write(int(tensors["input"]["start"]), x.reshape(n, -1))
    stage_end = {int(d["instructions"][1]) - 1: d for d in manifest["layers"]
                 if d["instructions"][1] > d["instructions"][0]}
    layers: dict[str, np.ndarray] = {}
    sats_by_name: dict[str, int] = {}
    executed = 0

    def from_ddr(name: str) -> np.ndarray:
        t = tensors[name]
        return m.host_read(int(t["start"]), int(np.prod(t["shape"]))).reshape(n, *t["shape"])

    for step in manifest["schedule"]:
        if step["kind"] == "accel":
            a, b = (int(v) for v in step["instructions"])
            if b > len(ins) or not isinstance(ins[b - 1], End):
                raise InputError(f"manifest segment {step['segment']}: instructions [{a}, {b})"
                                 " do not end with END")
            for k in range(a, b):
                if isinstance(ins[k], End) and k != b - 1:
                    raise SimulationError(k, ins[k], "END inside a segment")
                m.step(k, ins[k])
                executed += 1
                d = stage_end.get(k)
                if d is not None:
                    m.flush()
                    layers[d["output"]] = from_ddr(d["output"])
        else:
            y, nsat = host_step(step, tensors, host, from_ddr, n)
            sats_by_name[step["layer"]] = nsat
            layers[step["output"]] = y
            host[step["output"]] = y
            if tensors[step["output"]]["on_ddr"]:
                m.host_write(int(tensors[step["output"]]["start"]), np.asarray(y).reshape(n, -1))
    if executed != len(ins):
        raise InputError(f"the manifest's schedule covers {executed} of {len(ins)} instructions")
    for d in manifest["layers"]:
        sats_by_name[d["name"]] = m.saturations.get(int(d["index"]), 0)
    outputs = {}
    for o in manifest["outputs"]:
        t = o["tensor"]
        outputs[o["name"]] = layers[t] if t in layers else host[t] if t in host else from_ddr(t)
    return FunctionalResult(outputs, layers, sats_by_name, executed, {"sync_nops": m.nops})
