"""The functional simulator's machine: the DDR image, the four on-chip buffers and the three
engines executing LOAD/CALC/SAVE bit-exactly (see `deepfpga.sim.functional` for the whole
simulator, `deepfpga.sim.hazards` for the checks it runs on every access)."""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from deepfpga.compiler.layout import pack_array, unpack, unpack_nibbles
from deepfpga.hw import arch
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.isa import (
    CALC_TAPS,
    Buffer,
    Calc,
    CalcKind,
    End,
    Instruction,
    Load,
    Save,
)
from deepfpga.quant.fixedpoint import FixedFormat, requantize
from deepfpga.quant.gemm import Method, PreparedMatrix, Workspace
from deepfpga.sim.dma import Geom
from deepfpga.sim.hazards import (
    CALC,
    ENGINE_OF,
    LOAD,
    SAVE,
    DdrHazards,
    DdrMap,
    Dependencies,
    SimulationError,
)
from deepfpga.sim.products import (
    conv_products,
    conv_products_many,
    conv_weights,
    exact_matmul,
    tile_bits,
    tile_patches,
)
from deepfpga.sim.records import (
    Buf,
    ConvChunk,
    PendingCalc,
    PendingSave,
    TileRef,
    content_key,
    replace_extent,
)

# Deferred work (weights, snapshots, products) held before it is computed, at most.
_PENDING_LIMIT = 256 << 20
# Prepared CONV weight matrices kept for later tiles reading the same weights (row bands of
# one layer reuse them), at most this many.
_PREPARED_KEEP = 16
# Products of CONV groups computed by one library product, at most (bytes of int64 results).
_CHUNK_BYTES = 64 << 20


# --- the machine ---------------------------------------------------------------------------------

class Machine:
    def __init__(self, cfg: AcceleratorConfig, ddr_map: DdrMap, ddr: np.ndarray,
                 batch: int, check_races: bool, method: Method = "auto"):
        self.cfg = cfg
        self.method = method      # of the CONV products (quant.gemm); never changes results
        self.batch = batch
        self.check_races = check_races
        # bytes per element of each kind of LOAD (the accelerator's rule, looked up once)
        self.load_bytes = {(b, fc): int(arch.load_element_bytes(cfg, b, int(fc)))
                           for b in (Buffer.INPUT, Buffer.WEIGHT, Buffer.BIAS)
                           for fc in (False, True)}

        def dtype(b: Buffer) -> type:
            eb = max(self.load_bytes[(b, False)], self.load_bytes[(b, True)])
            return next(t for t in (np.int8, np.int16, np.int32, np.int64)
                        if np.dtype(t).itemsize >= min(eb, 8))

        self.bufs = {
            Buffer.INPUT: Buf("INPUT", cfg.input_buffer_entries, LOAD, CALC, batch,
                               dtype(Buffer.INPUT)),
            Buffer.WEIGHT: Buf("WEIGHT", cfg.weight_buffer_entries, LOAD, CALC, batch,
                                dtype(Buffer.WEIGHT)),
            Buffer.BIAS: Buf("BIAS", cfg.bias_buffer_entries, LOAD, CALC, batch,
                              dtype(Buffer.BIAS))}
        self.out = Buf("OUTPUT", cfg.output_buffer_entries, CALC, SAVE, batch, np.int64)
        self.fc_entries = min(cfg.fc_buffer_entries, cfg.input_buffer_entries)
        self.vc = np.full(3, -1, dtype=np.int64)
        self.deps = Dependencies()
        self.index = -1
        self.ins: Instruction | None = None
        self.engine = -1
        self.saturations: dict[int, int] = {}
        self.nops = 0
        self.pending: list[PendingCalc | PendingSave] = []
        self.pending_bytes = 0
        # what each INPUT extent holds (the LOAD that filled it, by its source and the data's
        # version), and the tiles deferred CALCs read (snapshotted before being overwritten)
        self.extents: list[tuple[int, int, tuple[Any, ...]]] = []
        self.tiles: dict[tuple[Any, ...], TileRef] = {}
        # what each WEIGHT extent holds (as `extents`), and the prepared weight matrices of
        # CONV CALC groups by the content they were made from; the engine's scratch memory
        self.w_extents: list[tuple[int, int, tuple[Any, ...]]] = []
        self.prepared: dict[tuple[Any, ...], PreparedMatrix] = {}
        self.ws = Workspace()
        self.host_epoch = 0
        # DDR: constants shared by the samples, the feature-map arena per sample
        self.ddr = DdrHazards(ddr_map, len(ddr))
        a0, a1 = self.arena = self.ddr.arena
        self.const = ddr
        self.adata = np.repeat(ddr[None, a0:a1], batch, axis=0)
        # a proven bound on |accumulators| per accumulator range (skips the overflow check)
        self.acc_bound: dict[tuple[int, int], int] = {}
        # |product| of two loaded values, each bounded by its element's bytes (whatever the
        # DDR holds): the products' exactness (products.exact_matmul) and accumulator bounds
        self.term_bound = 1 << (8 * (cfg.data_bytes + cfg.weight_bytes) - 2)

    def fail(self, message: str) -> NoReturn:
        raise SimulationError(self.index, self.ins, message)

    # --- DDR --------------------------------------------------------------------------------------
    def _read_bytes(self, geom: Geom, where: str) -> tuple[np.ndarray, bool]:
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
        eng = ENGINE_OF[type(ins)]
        self.engine = eng
        self.vc, pushes = self.deps.begin(self, eng, ins)
        if isinstance(ins, Load):
            self.load(ins)
        elif isinstance(ins, Calc):
            self.calc(ins)
        else:
            self.save(ins)
        self.deps.commit(eng, index, self.vc, pushes)
        return None

    def end(self) -> None:
        self.flush()
        assert self.ins is not None
        self.deps.end(self, self.ins)

    def load(self, ins: Load) -> None:
        if ins.buffer not in (Buffer.INPUT, Buffer.WEIGHT, Buffer.BIAS):
            self.fail(f"LOAD into buffer {ins.buffer}, which does not exist")
        if ins.fc_weights and ins.buffer == Buffer.BIAS:
            self.fail("fc_weights=1 on a BIAS load")
        packed = bool(ins.packed4)
        if packed and not arch.packed_load_allowed(self.cfg, ins.buffer, ins.fc_weights):
            self.fail(f"packed4 LOAD into {Buffer(ins.buffer).name} with fc_weights="
                      f"{ins.fc_weights} on {self.cfg.name} (only weight loads on a config with"
                      f" 1-byte weights; weight_bits = {self.cfg.weight_bits})")
        eb = self.load_bytes[(Buffer(ins.buffer), bool(ins.fc_weights))]
        buf = self.bufs[Buffer(ins.buffer)]
        n = ins.n1 * ins.n2 * ins.length
        limit = self.fc_entries if ins.buffer == Buffer.INPUT and ins.fc_weights else None
        dst = buf.span(self, ins.buf_addr, n, limit)
        seg = int(arch.load_segment_bytes(self.cfg, ins.buffer, ins.fc_weights, ins.packed4,
                                          ins.length))
        geom = self.ddr.segments(self, ins, eb, writing=False, seg=seg)
        where = self.ddr.where(geom)
        version = self.ddr.load(self, geom, where)
        if where != "const" and any(isinstance(p, PendingSave) and p.geom.start < geom.end
                                    and geom.start < p.geom.end for p in self.pending):
            self.flush()            # a deferred SAVE writes what this LOAD reads
        content = (where, geom, version, self.host_epoch, eb)
        if ins.buffer == Buffer.INPUT:
            self._overwrite_input(dst, content)
        elif ins.buffer == Buffer.WEIGHT:
            self.w_extents = replace_extent(self.w_extents, dst, content)
        if n == 0:
            buf.write(self, dst, np.zeros(0), shared=True)
            return
        raw, shared = self._read_bytes(geom, where)
        if packed:
            rows = raw.reshape(*raw.shape[:-1], ins.n1 * ins.n2, seg)
            values = unpack_nibbles(rows, ins.length).astype(np.float64)
            buf.write(self, dst, values.reshape(*raw.shape[:-1], -1), shared)
            return
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
        self.extents = replace_extent(self.extents, dst, content)

    def _tile_ref(self, tile: slice, ins: Calc) -> TileRef:
        """The deferred-CALC handle of an input tile: CALCs reading the same content (the same
        LOAD source and data version, even if loaded again) share it."""
        key = content_key(self.extents, tile) or ("mixed", self.index)
        ref = self.tiles.get(key)
        if ref is None or (ref.data is None and ref.span != tile):
            ref = TileRef(key, tile)
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
        if ins.kind not in CALC_TAPS:
            self.fail(f"CALC kind {ins.kind} is not CONV, FC or CONV1")
        if ins.stride < 1:
            self.fail("stride 0")
        inp, wgt, out = self.bufs[Buffer.INPUT], self.bufs[Buffer.WEIGHT], self.out
        vec = None
        wkey = None
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
            terms = ins.ti * CALC_TAPS[CalcKind(ins.kind)]
            ws = wgt.span(self, ins.wb_addr, ins.to * terms)
            wgt.read(self, ws, "weights")
            w = wgt.get(ws).copy()
            w = w.reshape(ins.to, terms) if w.ndim == 1 else w.reshape(-1, ins.to, terms)
            wkey = content_key(self.w_extents, ws) if w.ndim == 2 else None
            key = (ins.kind, ins.ib_addr, ins.ti, ins.in_rows, ins.in_cols, ins.out_rows,
                   ins.out_cols, ins.stride, ins.pad_top, ins.pad_left, ins.koff_y, ins.koff_x)
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
            rc = r * c
            pitch = ins.out_pitch or rc
            top = ins.out_addr + (ins.to - 1) * pitch + rc - 1      # the last entry written
            if rc and (top >= out.entries or ins.out_addr < 0):
                self.fail(f"finalized output reaches OUTPUT entry {top}, beyond"
                          f" its {out.entries} entries")
            if pitch == rc:                # output channels back to back: one range
                out_idx = out_runs = slice(ins.out_addr, ins.out_addr + ins.to * rc)
            else:
                out_idx = (ins.out_addr + np.arange(ins.to, dtype=np.int64)[:, None] * pitch
                           + np.arange(rc, dtype=np.int64)[None, :]).reshape(-1)
                out_runs = [(a, a + rc) for a in range(ins.out_addr, top + 1, pitch)]
        out.write(self, acc_idx, None)
        if out_idx is not None:
            out.write(self, out_runs, None)
        # |acc| ≤ (previous bound) + terms · max|product|: when that stays inside the
        # accumulator, the overflow check is unnecessary
        terms = ins.ti * CALC_TAPS[CalcKind(ins.kind)]
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
            self.pending.append(PendingCalc(self.index, ins, key, None, w, vec, bias, acc_idx,
                                         out_idx, check, None))
            self.flush()
            return
        ref = self._tile_ref(tile, ins)
        self.pending.append(PendingCalc(self.index, ins, key, ref, w, vec, bias, acc_idx, out_idx,
                                     check, wkey))
        # bound the memory held for deferred work: weights and products
        self.pending_bytes += w.nbytes + 8 * self.batch * ins.to * ins.out_rows * ins.out_cols
        if self.pending_bytes > _PENDING_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Carry out the deferred operations in program order: the CALCs (those reading the
        same tile the same way share one matrix product, computed at the first of them; CONV
        groups of other tiles with the same weights join that product) and the SAVEs between
        them."""
        if not self.pending:
            return
        pend, self.pending = self.pending, []
        self.pending_bytes = 0
        index, ins = self.index, self.ins
        groups: dict[tuple[int, tuple[int, ...]], list[PendingCalc]] = {}
        for op in pend:
            if isinstance(op, PendingCalc):
                groups.setdefault((id(op.tile), op.key), []).append(op)
        together = self._together(list(groups.values()))
        products: dict[int, np.ndarray] = {}
        for op in pend:
            self.index, self.ins = op.index, op.ins
            if isinstance(op, PendingSave):
                self.store(op)
                continue
            if id(op) not in products:
                members = groups[(id(op.tile), op.key)]
                chunk = together.get(id(members[0]))
                if chunk is None:
                    products.update(zip((id(p) for p in members), self._products(members),
                                        strict=True))
                else:
                    for g, prods in zip(chunk.groups, self._conv_chunk(chunk), strict=True):
                        products.update(zip((id(p) for p in g), prods, strict=True))
            self.compute(op, products.pop(id(op)))
        self.tiles = {}
        self.index, self.ins = index, ins

    def _tile(self, calcs: list[PendingCalc]) -> np.ndarray:
        """The input tile a group of CALCs reads, (1 or batch, ti, in_rows, in_cols)."""
        i, ref = calcs[0].ins, calcs[0].tile
        assert ref is not None
        buf = self.bufs[Buffer.INPUT]
        if ref.data is not None:
            t = ref.data
        else:
            t = buf.val[:1, ref.span] if buf.uniform[ref.span].all() else buf.val[:, ref.span]
        return t.reshape(-1, i.ti, i.in_rows, i.in_cols)

    def _together(self, groups: list[list[PendingCalc]]) -> dict[int, ConvChunk]:
        """CONV groups whose products are one library product: same weight contents (same
        LOADs) and input bits, in order of first appearance, up to _CHUNK_BYTES of products
        each (one GEMM call instead of one per tile: on a loaded machine each call of a
        threaded kernel can wait milliseconds for its threads). Keyed by the id of each
        group's first CALC."""
        chunks: dict[tuple[Any, ...], ConvChunk] = {}
        out: dict[int, ConvChunk] = {}
        for g in groups:
            first = g[0]
            if first.vec is not None or any(p.w.ndim != 2 or p.wkey is None for p in g):
                continue
            t = self._tile(g)
            key = (tuple(p.wkey for p in g), first.ins.kind, tile_bits(t))
            nbytes = 8 * len(t) * sum(p.w.shape[0] for p in g) * (first.ins.out_rows
                                                                  * first.ins.out_cols)
            ch = chunks.get(key)
            if ch is None or ch.nbytes + nbytes > _CHUNK_BYTES:
                ch = chunks[key] = ConvChunk(key, [], [], 0)
            ch.groups.append(g)
            ch.tiles.append(t)
            ch.nbytes += nbytes
            out[id(first)] = ch
        return out

    def _conv_chunk(self, chunk: ConvChunk) -> list[list[np.ndarray]]:
        """Per group of a chunk, each CALC's products (batch, to, out_rows, out_cols)."""
        calcs = chunk.groups[0]
        pw = self._conv_weights(calcs, chunk.key)
        prods = conv_products_many([(t, g[0].ins) for t, g in zip(chunk.tiles, chunk.groups,
                                                                   strict=True)],
                                   pw, self.ws)
        return [self._split(g, p) for g, p in zip(chunk.groups, prods, strict=True)]

    def _split(self, calcs: list[PendingCalc], prod: np.ndarray) -> list[np.ndarray]:
        """A group's stacked products (1 or batch, Σto, R, C) or (.., R·C), per CALC."""
        i = calcs[0].ins
        prod = np.broadcast_to(prod, (self.batch, *prod.shape[1:]))
        prod = prod.reshape(self.batch, -1, i.out_rows, i.out_cols)
        return np.split(prod, np.cumsum([p.ins.to for p in calcs])[:-1], axis=1)

    def _products(self, calcs: list[PendingCalc]) -> list[np.ndarray]:
        """Each CALC's products, (batch, to, out_rows, out_cols), exactly; the CALCs read the
        same tile the same way."""
        first = calcs[0]
        i = first.ins
        if first.vec is not None:                            # FC
            w, v = first.w, first.vec
            if w.ndim == 2:                                  # shared block: one GEMM
                prod = exact_matmul(np.atleast_2d(v), w.T, i.ti, self.term_bound)
                prod = np.broadcast_to(prod, (self.batch, i.to))
            else:
                prod = exact_matmul(w, np.broadcast_to(v, (self.batch, i.ti))[:, :, None],
                                    i.ti, self.term_bound)[..., 0]
            return [prod.reshape(self.batch, i.to, 1, 1)]
        t = self._tile(calcs)
        ws = [p.w for p in calcs]
        if any(w.ndim == 3 for w in ws):     # weights differing per sample (from the arena)
            ws = [np.broadcast_to(w, (self.batch, *w.shape[-2:])) for w in ws]
            w_all = np.concatenate(ws, axis=-2) if len(ws) > 1 else ws[0]
            pat = tile_patches(t, i)
            prod = exact_matmul(w_all, pat, pat.shape[-2], self.term_bound)  # (batch, Σto, R·C)
        else:                                # one weight matrix: the reference's engine
            bits = tile_bits(t)
            prod = conv_products(t, self._conv_weights(calcs, (None, i.kind, bits)), i, self.ws)
        return self._split(calcs, prod)

    def _conv_weights(self, calcs: list[PendingCalc], key: tuple[Any, ...]) -> PreparedMatrix:
        """The stacked weights of a CONV CALC group prepared for key[2]-bit inputs, reused
        when the same weight contents (key: their `content_key`s, the kind, the bits) were
        prepared before; key[0] None: contents unknown, not kept."""
        pw = None if key[0] is None else self.prepared.get(key)
        if pw is None:
            ws = [p.w for p in calcs]
            w_all = np.concatenate(ws, axis=0) if len(ws) > 1 else ws[0]
            pw = conv_weights(w_all, calcs[0].ins, key[2], self.method)
            if key[0] is not None:
                if len(self.prepared) >= _PREPARED_KEEP:
                    self.prepared.pop(next(iter(self.prepared)))
                self.prepared[key] = pw
        return pw

    def compute(self, p: PendingCalc, part: np.ndarray) -> None:
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
        geom = self.ddr.segments(self, ins, arch.save_element_bytes(cfg), writing=True)
        if geom.overlapping():
            self.fail("SAVE segments overlap in DDR")
        where = self.ddr.where(geom)
        if where != "arena" and geom.count:
            self.fail("SAVE outside the feature-map arena")
        self.ddr.save(self, geom, where)
        op = PendingSave(self.index, ins, src, geom)
        if self.pending:
            self.pending.append(op)
        else:
            self.store(op)

    def store(self, op: PendingSave) -> None:
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
        self.ddr.host_wrote(start, data.shape[1])
        self.host_epoch += 1

    def host_read(self, start: int, count: int) -> np.ndarray:
        """(batch, count) data values at `start` (inside the arena)."""
        db = self.cfg.data_bytes
        a = start - self.arena[0]
        raw = np.ascontiguousarray(self.adata[:, a:a + count * db])
        return unpack(raw.reshape(-1), db).reshape(self.batch, count)
