"""Functional simulator: executes a compiled program bit-exactly, instruction by instruction.

State: a byte-addressed DDR image (numpy uint8) and the four on-chip buffers as int64 arrays of
the config's capacities (entries). Each instruction is executed whole, vectorised (a CALC is a
small matrix product, never a loop over pixels), in program order — one valid interleaving of
the three engines. The simulator also proves the program is safe in *every* interleaving the
dependency tokens allow: each engine carries a vector clock (the last instruction of each engine
known to be complete, propagated through tokens), and any access that conflicts with an earlier
instruction of another engine that the accessor does not provably follow is a race.

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
from deepfpga.compiler.layout import pack, unpack
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
_F64_EXACT = float(1 << 53)


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
    layer); `saturations[layer]`: values saturated per CONV/FC (and host) layer."""

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
    """A buffer with, per entry, the last write (by its writer engine) and the last read by its
    reader engine: LOAD writes INPUT/WEIGHT/BIAS and CALC reads them; CALC writes OUTPUT and
    SAVE reads it (CALC's own accumulator reads are ordered by its in-order engine)."""

    def __init__(self, name: str, entries: int, writer: int, reader: int):
        self.name = name
        self.writer, self.reader = writer, reader
        self.val = np.zeros(entries, dtype=np.int64)
        self.valid = np.zeros(entries, dtype=bool)
        self.last_write = np.full(entries, -1, dtype=np.int64)
        self.last_read = np.full(entries, -1, dtype=np.int64)

    def span(self, m: _Machine, a: int, n: int, limit: int | None = None) -> slice:
        cap = len(self.val) if limit is None else limit
        if a < 0 or n < 0 or a + n > cap:
            area = "" if limit is None else " (FC weight area)"
            m.fail(f"{self.name} buffer entries [{a}, {a + n}) outside its {cap} entries{area}")
        return slice(a, a + n)

    def read(self, m: _Machine, idx: slice | np.ndarray, what: str) -> np.ndarray:
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
            self.last_read[idx] = np.maximum(self.last_read[idx], m.index)
        return self.val[idx]

    def write(self, m: _Machine, idx: slice | np.ndarray, values: np.ndarray | None) -> None:
        """Record a write (race check, valid bits); store `values` unless None (a deferred
        CALC stores its values when it is computed)."""
        if m.check_races:
            j = int(self.last_read[idx].max(initial=-1))
            if j > m.vc[self.reader]:
                m.fail(f"overwrites {self.name} entries still read by instruction {j}"
                       f" ({ENGINES[self.reader]}) without a dependency on it (race)")
            self.last_write[idx] = m.index
        if values is not None:
            self.val[idx] = values
        self.valid[idx] = True


# --- the machine ---------------------------------------------------------------------------------

class _Machine:
    def __init__(self, cfg: AcceleratorConfig, manifest: Mapping[str, Any], ddr: np.ndarray,
                 check_races: bool):
        self.cfg = cfg
        self.ddr = ddr
        self.check_races = check_races
        self.bufs = {Buffer.INPUT: _Buf("INPUT", cfg.input_buffer_entries, LOAD, CALC),
                     Buffer.WEIGHT: _Buf("WEIGHT", cfg.weight_buffer_entries, LOAD, CALC),
                     Buffer.BIAS: _Buf("BIAS", cfg.bias_buffer_entries, LOAD, CALC)}
        self.out = _Buf("OUTPUT", cfg.output_buffer_entries, CALC, SAVE)
        self.engine = -1
        self.fc_entries = min(cfg.fc_buffer_entries, cfg.input_buffer_entries)
        self.vc = np.full(3, -1, dtype=np.int64)
        self.engine_vc = [np.full(3, -1, dtype=np.int64) for _ in range(3)]
        self.tokens: list[deque[np.ndarray]] = [deque() for _ in range(4)]
        self.index = -1
        self.ins: Instruction | None = None
        self.saturations: dict[int, int] = {}
        self.nops = 0
        self.pending: list[_Pending | _PendingSave] = []
        a0, a1 = (int(v) for v in manifest["arena"])
        self.arena = (a0, a1)
        n = max(0, a1 - a0)
        self.written = np.zeros(n, dtype=bool)
        self.last_save = np.full(n, -1, dtype=np.int64)
        self.last_load = np.full(n, -1, dtype=np.int64)
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
        if geom.end > len(self.ddr):
            self.fail(f"DDR bytes up to {geom.end} outside the {len(self.ddr)}-byte DDR image")
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

    def _arena_views(self, geom: _Geom) -> tuple[Any, Any, Any] | None:
        """(written, last_save, last_load) views of the bytes a transfer touches in the arena,
        or None when it touches none of it."""
        a0, a1 = self.arena
        if geom.count == 0 or geom.end <= a0 or geom.start >= a1:
            return None
        if geom.start < a0 or geom.end > a1:        # straddles the arena's edge: index arrays
            idx = geom.indices()
            sel = idx[(idx >= a0) & (idx < a1)] - a0
            return _Gather(self.written, sel), _Gather(self.last_save, sel), \
                _Gather(self.last_load, sel)
        return (geom.view(self.written, a0), geom.view(self.last_save, a0),
                geom.view(self.last_load, a0))

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
        views = self._arena_views(geom)
        if views is not None:
            written, last_save, last_load = views
            if not written[...].all():
                self.fail(f"reads DDR bytes of the feature-map arena that no SAVE (or the host)"
                          f" has written (in [{geom.start}, {geom.end}))")
            if self.check_races:
                j = int(last_save[...].max(initial=-1))
                if j > self.vc[SAVE]:
                    self.fail(f"reads DDR bytes saved by instruction {j} (SAVE) without a"
                              " dependency on it (race)")
                last_load[...] = self.index
        if views is not None:
            self.flush()                # deferred SAVEs may write what this LOAD reads
        elif ins.buffer == Buffer.INPUT:
            self.flush(dst)             # deferred CALCs must see the tile they read
        values = unpack(np.ascontiguousarray(geom.view(self.ddr)).reshape(-1), eb) if n else \
            np.zeros(0, dtype=np.int64)
        buf.write(self, dst, values)

    def calc(self, ins: Calc) -> None:
        """Check the CALC and record its accesses now (program order); compute it later,
        together with the following CALCs on the same input tile (one matrix product with
        their weights stacked: what makes simulating a layer fast). Its results are stored
        before anything can observe them: a SAVE, a LOAD into its tile, a CALC on another
        tile or reading its accumulators, an END, the end of a stage."""
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
            vec = wgt.read(self, wgt.span(self, ins.wb_addr, ins.ti), "FC vector").copy()
            tile = inp.span(self, ins.ib_addr, ins.to * ins.ti, self.fc_entries)
            w = inp.read(self, tile, "FC weights").reshape(ins.to, ins.ti).copy()
            key: tuple[int, ...] = (-1,)
        else:
            if ins.in_cols > cfg.max_row_width:
                self.fail(f"input tile row of {ins.in_cols} values exceeds max_row_width"
                          f" {cfg.max_row_width}")
            tile = inp.span(self, ins.ib_addr, ins.ti * ins.in_rows * ins.in_cols)
            inp.read(self, tile, "input tile")
            w = wgt.read(self, wgt.span(self, ins.wb_addr, ins.to * ins.ti * 9),
                         "weights").reshape(ins.to, ins.ti * 9).copy()
            key = (ins.ib_addr, ins.ti, ins.in_rows, ins.in_cols, ins.out_rows, ins.out_cols,
                   ins.stride, ins.pad_top, ins.pad_left, ins.koff_y, ins.koff_x)
        acc_idx = out.span(self, ins.ob_addr, ins.to * ins.out_rows * ins.out_cols)
        if any(isinstance(p, _Pending) and p.key != key for p in self.pending[:1]) or \
                self._pending_key() not in (None, key):
            self.flush()
        if ins.accumulate:
            out.read(self, acc_idx, "accumulators")
        bias = None
        out_idx = None
        if ins.finalize:
            if not 2 <= ins.out_bits <= cfg.data_bits:
                self.fail(f"out_bits {ins.out_bits} outside 2..{cfg.data_bits}")
            if ins.has_bias:
                bb = self.bufs[Buffer.BIAS]
                bias = bb.read(self, bb.span(self, ins.bb_addr, ins.to), "bias").copy()
            r, c = (ins.out_rows // 2, ins.out_cols // 2) if ins.pool else \
                (ins.out_rows, ins.out_cols)
            pitch = ins.out_pitch or r * c
            out_idx = (ins.out_addr + np.arange(ins.to, dtype=np.int64)[:, None] * pitch
                       + np.arange(r * c, dtype=np.int64)[None, :]).reshape(-1)
            if len(out_idx) and (out_idx.max() >= len(out.val) or out_idx.min() < 0):
                self.fail(f"finalized output reaches OUTPUT entry {int(out_idx.max())}, beyond"
                          f" its {len(out.val)} entries")
        out.write(self, acc_idx, None)
        if out_idx is not None:
            out.write(self, out_idx, None)
        self.pending.append(_Pending(self.index, ins, key, tile, w, vec, bias, acc_idx, out_idx))
        if vec is not None:
            self.flush()

    def _pending_key(self) -> tuple[int, ...] | None:
        for p in self.pending:
            if isinstance(p, _Pending):
                return p.key
        return None

    def flush(self, tile: slice | None = None) -> None:
        """Carry out the deferred operations in program order: the CALCs (which share one
        input tile: their products are one matrix product) and the SAVEs between them. With
        `tile`, only if a deferred CALC reads INPUT entries in it."""
        calcs = [p for p in self.pending if isinstance(p, _Pending)]
        if not calcs:
            for op in self.pending:
                assert isinstance(op, _PendingSave)
                self.index, self.ins = op.index, op.ins
                self.store(op)
            self.pending = []
            return
        if tile is not None and not any(p.tile.start < tile.stop and tile.start < p.tile.stop
                                        for p in calcs):
            return
        pend, self.pending = self.pending, []
        index, ins = self.index, self.ins
        first = calcs[0]
        if first.vec is not None:                            # FC: one CALC at a time
            parts = [_matmul(first.w, first.vec[:, None]).reshape(-1, 1, 1)]
        else:
            i = first.ins
            t = self.bufs[Buffer.INPUT].val[first.tile].reshape(i.ti, i.in_rows, i.in_cols)
            w_all = np.concatenate([p.w for p in calcs]) if len(calcs) > 1 else first.w
            t_max = int(np.abs(t).max()) if t.size else 0
            exact = int(np.abs(w_all).sum(axis=1).max(initial=0)) * t_max < 1 << 53
            pat = _patches(t, i, np.float64 if exact else np.int64)
            prod = _matmul(w_all, pat, t_max).reshape(-1, i.out_rows, i.out_cols)
            parts = np.split(prod, np.cumsum([p.ins.to for p in calcs])[:-1])
        products = iter(parts)
        for op in pend:
            self.index, self.ins = op.index, op.ins
            if isinstance(op, _Pending):
                self.compute(op, next(products))
            else:
                self.store(op)
        self.index, self.ins = index, ins

    def compute(self, p: _Pending, part: np.ndarray) -> None:
        """The accumulate and finalize of one CALC, given its products."""
        cfg, ins, out = self.cfg, p.ins, self.out
        if ins.accumulate:
            part = part + out.val[p.acc].reshape(part.shape)
        lim = (1 << (cfg.acc_bits - 1)) - 1
        if part.size and (part.max() > lim or part.min() < -lim - 1):
            self.fail(f"accumulator overflow: a sum exceeds the {cfg.acc_bits}-bit accumulator")
        out.val[p.acc] = part.reshape(-1)
        if p.out is None:
            return
        acc = part
        if p.bias is not None:
            acc = acc + np.left_shift(p.bias, ins.bias_shift)[:, None, None]
        if ins.relu:
            acc = np.maximum(acc, 0)
        y, nsat = requantize(acc, ins.data_shift, FixedFormat(ins.out_bits, 0))
        self.saturations[ins.layer] = self.saturations.get(ins.layer, 0) + nsat
        if ins.pool:
            r, c = y.shape[1] // 2, y.shape[2] // 2
            y = y[:, :2 * r, :2 * c].reshape(ins.to, r, 2, c, 2).max(axis=(2, 4))
        out.val[p.out] = y.reshape(-1)

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
        views = self._arena_views(geom)
        if views is not None:
            written, last_save, last_load = views
            if self.check_races:
                j = int(last_load[...].max(initial=-1))
                if j > self.vc[LOAD]:
                    self.fail(f"overwrites DDR bytes still read by instruction {j} (LOAD)"
                              " without a dependency on it (race)")
                last_save[...] = self.index
            written[...] = True
        op = _PendingSave(self.index, ins, src, geom)
        if self.pending:
            self.pending.append(op)
        else:
            self.store(op)

    def store(self, op: _PendingSave) -> None:
        """The data movement of a SAVE."""
        cfg = self.cfg
        vals = self.out.val[op.src]
        lo, hi = -(1 << (cfg.data_bits - 1)), (1 << (cfg.data_bits - 1)) - 1
        if len(vals) and (vals.min() < lo or vals.max() > hi):
            self.fail(f"saves values outside the {cfg.data_bits}-bit data range (accumulators"
                      " that were never finalized?)")
        if len(vals):
            g = op.geom
            data = np.frombuffer(pack(vals, cfg.data_bytes), dtype=np.uint8)
            g.view(self.ddr)[...] = data.reshape(g.n2, g.n1, g.seg)

    # --- host side --------------------------------------------------------------------------
    def host_write(self, start: int, values: np.ndarray) -> None:
        data = np.frombuffer(pack(values, self.cfg.data_bytes), dtype=np.uint8)
        self.ddr[start:start + len(data)] = data
        a0 = self.arena[0]
        self.written[start - a0:start - a0 + len(data)] = True

    def host_read(self, start: int, count: int) -> np.ndarray:
        db = self.cfg.data_bytes
        return unpack(self.ddr[start:start + count * db], db)


def _matmul(a: np.ndarray, b: np.ndarray, b_absmax: int | None = None) -> np.ndarray:
    """Exact integer product a @ b: float64 BLAS when every partial sum stays below 2^53
    (a sum of k products is bounded by max_row Σ|a| · max|b|), else int64."""
    if a.size == 0 or b.size == 0:
        return np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    if b_absmax is None:
        b_absmax = int(np.abs(b).max())
    bound = int(np.abs(a).sum(axis=1).max()) * b_absmax
    if bound < 1 << 53:
        return (a.astype(np.float64) @ b.astype(np.float64, copy=False)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64, copy=False)


def _patches(tile: np.ndarray, ins: Calc, dtype: type = np.int64) -> np.ndarray:
    """The (ti·9, out_rows·out_cols) matrix of the tile values each output reads:
    tile[i, y·s + koff_y + ky − pad_top, x·s + koff_x + kx − pad_left], zero outside the tile."""
    s = ins.stride
    ti, rows, cols = tile.shape
    r0, c0 = ins.koff_y - ins.pad_top, ins.koff_x - ins.pad_left
    nr, nc = (ins.out_rows - 1) * s + 3, (ins.out_cols - 1) * s + 3
    z = np.zeros((ti, nr, nc), dtype=dtype)
    ra, rb = max(0, r0), min(rows, r0 + nr)
    ca, cb = max(0, c0), min(cols, c0 + nc)
    if ra < rb and ca < cb:
        z[:, ra - r0:rb - r0, ca - c0:cb - c0] = tile[:, ra:rb, ca:cb]
    win = np.lib.stride_tricks.sliding_window_view(z, (3, 3), axis=(1, 2))[:, ::s, ::s]
    win = win[:, :ins.out_rows, :ins.out_cols]            # (ti, R, C, 3, 3)
    return win.transpose(0, 3, 4, 1, 2).reshape(ti * 9, ins.out_rows * ins.out_cols)


@dataclass
class _Pending:
    """A CALC whose accesses are checked and recorded, its products not yet computed."""

    index: int
    ins: Calc
    key: tuple[int, ...]          # CALCs with equal keys read the same tile the same way
    tile: slice                   # INPUT entries it reads (FC: its weight block)
    w: np.ndarray                 # its weights, (to, ti·9) (FC: (to, ti))
    vec: np.ndarray | None        # FC input vector
    bias: np.ndarray | None
    acc: slice
    out: np.ndarray | None        # OUTPUT entries of its finalized values


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
        """The (n2, n1, seg) view of the transfer's bytes in `arr` (indexed from `base`)."""
        st = arr.strides[0]
        return np.lib.stride_tricks.as_strided(
            arr[self.start - base:], shape=(self.n2, self.n1, self.seg),
            strides=(self.s2 * st, self.s1 * st, st))


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
    """One host layer on integer inputs (batch of one), through the reference executor."""
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
    g = Graph(f"host-{layer.name}", tuple(inputs[0].shape), (layer,), (layer.name,))
    q = QuantizedModel(g, fin[0], {layer.name: LayerFormats(fin[0], fout)}, {})
    x = inputs[0][None]
    if step["graph_output"] and layer.host_only:     # the reference keeps such outputs float
        r = execute(q, x)
        return r.outputs[layer.name][0], int(r.saturations.get(layer.name, 0))
    y, n = execute_layer(q, layer.name, [x])
    return y[0], int(n)


def _host_multi(spec: dict[str, Any], inputs: list[np.ndarray], fin: list[FixedFormat],
                fout: FixedFormat, graph_output: bool) -> tuple[np.ndarray, int]:
    """A multi-input host layer (add): float on dequantized values, as the reference does."""
    import torch

    from deepfpga.ir.float_exec import apply_layer
    from deepfpga.ir.graph import layer_from_dict
    from deepfpga.quant.fixedpoint import count_saturated, to_fixed, to_float

    layer = layer_from_dict(spec)
    xs = [torch.from_numpy(to_float(x[None], f)) for x, f in zip(inputs, fin, strict=True)]
    with torch.inference_mode():
        yf = apply_layer(layer, {}, xs).numpy()[0]
    if graph_output:
        return yf, 0
    return to_fixed(yf, fout), count_saturated(yf, fout)


# --- entry point ---------------------------------------------------------------------------------

def simulate(program_bytes: bytes, ddr_image: bytes, manifest: Mapping[str, Any],
             cfg: AcceleratorConfig, x_int: np.ndarray, *, check_races: bool = True
             ) -> FunctionalResult:
    """Run the compiled program on input `x_int` (integers in the input format; one sample of
    the input shape, or a batch with a leading dimension — samples run one after another)."""
    program = decode_program(program_bytes, cfg.hash())
    if manifest.get("config", {}).get("hash") != cfg.hash().hex():
        raise InputError("manifest was written for a different accelerator configuration")
    if len(ddr_image) != int(manifest["ddr_size"]):
        raise InputError(f"DDR image is {len(ddr_image)} bytes, the manifest says"
                         f" {manifest['ddr_size']}")
    shape = tuple(manifest["input"]["shape"])
    x = np.asarray(x_int)
    if x.dtype.kind not in "iu":
        raise InputError(f"input must be integers in the input format, got dtype {x.dtype}")
    if x.shape == shape:
        return _run_one(program.instructions, ddr_image, manifest, cfg, x, check_races)
    if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
        raise InputError(f"input has shape {x.shape}, expected {shape} or (N, {shape})")
    runs = [_run_one(program.instructions, ddr_image, manifest, cfg, xi, check_races)
            for xi in x]
    first = runs[0]
    return FunctionalResult(
        {k: np.stack([r.outputs[k] for r in runs]) for k in first.outputs},
        {k: np.stack([r.layers[k] for r in runs]) for k in first.layers},
        {k: sum(r.saturations[k] for r in runs) for k in first.saturations},
        sum(r.executed for r in runs), first.stats)


def _run_one(ins: Sequence[Instruction], ddr_image: bytes, manifest: Mapping[str, Any],
             cfg: AcceleratorConfig, x: np.ndarray, check_races: bool) -> FunctionalResult:
    ddr = np.frombuffer(ddr_image, dtype=np.uint8).copy()
    m = _Machine(cfg, manifest, ddr, check_races)
    tensors = manifest["tensors"]
    fin = manifest["input"]["format"]
    lo, hi = -(1 << (fin["bw"] - 1)), (1 << (fin["bw"] - 1)) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise InputError(f"input integers in [{x.min()}, {x.max()}] lie outside the input"
                         f" format's range [{lo}, {hi}]")
    x = x.astype(np.int64)
    host: dict[str, np.ndarray] = {"input": x}
    if tensors["input"]["on_ddr"]:
        m.host_write(int(tensors["input"]["start"]), x.reshape(-1))
    stage_end = {int(d["instructions"][1]) - 1: d for d in manifest["layers"]
                 if d["instructions"][1] > d["instructions"][0]}
    layers: dict[str, np.ndarray] = {}
    sats_by_name: dict[str, int] = {}
    executed = 0
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
                    t = tensors[d["output"]]
                    n = int(np.prod(t["shape"]))
                    layers[d["output"]] = m.host_read(int(t["start"]), n).reshape(t["shape"])
        else:
            xs = []
            for name, shp in zip(step["inputs"], step["input_shapes"], strict=True):
                t = tensors[name]
                if name in host:
                    v = host[name]
                elif t["on_ddr"]:
                    v = m.host_read(int(t["start"]), int(np.prod(t["shape"])))
                else:
                    raise InputError(f"host layer {step['layer']!r}: tensor {name!r} unavailable")
                xs.append(np.asarray(v).reshape(shp))
            y, nsat = _host_layer(step, xs)
            sats_by_name[step["layer"]] = nsat
            layers[step["output"]] = y
            host[step["output"]] = y
            t = tensors[step["output"]]
            if t["on_ddr"]:
                m.host_write(int(t["start"]), np.asarray(y).reshape(-1))
    if executed != len(ins):
        raise InputError(f"the manifest's schedule covers {executed} of {len(ins)} instructions")
    for d in manifest["layers"]:
        sats_by_name[d["name"]] = m.saturations.get(int(d["index"]), 0)
    outputs = {}
    for o in manifest["outputs"]:
        t = o["tensor"]
        if t in layers:
            outputs[o["name"]] = layers[t]
        elif t in host:
            outputs[o["name"]] = host[t]
        else:
            outputs[o["name"]] = m.host_read(int(o["start"]), int(np.prod(o["shape"]))).reshape(
                o["shape"])
    stats = {"sync_nops": m.nops}
    return FunctionalResult(outputs, layers, sats_by_name, executed, stats)
