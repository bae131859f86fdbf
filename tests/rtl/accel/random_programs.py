"""Random legal whole-ISA programs for the accelerator (tests only), in *groups*.

A group is what the compiler emits for one tile, with every field drawn at random: LOADs of an
input tile (CONV) or an FC vector and weight block (the §7.3 role swap) from random DDR
geometries — constants, the host-written input or an earlier group's saved output — with random
lengths, strides (0, overlapping, gapped) and offsets, weights packed two per byte (packed4)
at random where the config allows it; LOADs of the weights of one or more 3×3
sub-kernels (or of a 1×1 kernel, CONV1) and of the biases; a chain of CALCs (CONV and CONV1:
random tile, stride 1..max_stride,
paddings ≤ max_pad, sub-kernels at koff 0/3/6 or a random koff, accumulate then finalize with
random bias, shifts, ReLU, out_bits, pool, pitch; FC: input blocks accumulated); SAVEs of the
finalized values into the group's own DDR area with random segment geometry. Groups alternate
between the two halves of every buffer, so one group's LOADs overlap the previous group's CALCs
and SAVEs. The dependency tokens come from the compiler's own `Builder` (from the declared
accesses), so every program is race-free and token-balanced by construction.

The program comes with a manifest in which each group is a stage whose output tensor is its
DDR area: `sim.functional.simulate_program` snapshots it at the group's end and the RTL driver
(`rtl.accel.driver.RtlRunner`) at the group's last SAVE, so the two are compared group by group.
`RandomProgram.compiled()` gives program, image and manifest as the `Compiled` the driver runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfpga.compiler.alloc import Region
from deepfpga.compiler.artifact import (
    AccelStep,
    Compiled,
    ConfigRef,
    Manifest,
    Partition,
    ProgramStats,
    StageEntry,
    StageFormats,
    TensorEntry,
)
from deepfpga.compiler.builder import Builder
from deepfpga.compiler.layout import align
from deepfpga.compiler.tiling import Tiling
from deepfpga.hw import arch
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import pool_width, staging_depth
from deepfpga.hw.isa import Buffer, CalcKind, Instruction, Program, encode_program, program_stats
from deepfpga.quant.fixedpoint import FixedFormat

CONST_BYTES = 24 << 10          # random constants (weights, biases, anything a LOAD reads)
INPUT_ELEMENTS = 768            # the host-written input tensor, at the start of the arena
ARENA_BYTES = 40 << 10
AREA_ALIGN = 64


@dataclass(frozen=True)
class Group:
    name: str
    kind: str                   # "conv" or "fc"
    first: int                  # instruction range [first, stop)
    stop: int
    area: tuple[int, int]       # DDR bytes of its saved output


@dataclass(frozen=True)
class RandomProgram:
    cfg: AcceleratorConfig
    instructions: tuple[Instruction, ...]
    ddr_image: bytes
    manifest: Manifest
    groups: tuple[Group, ...]

    def program(self) -> Program:
        return Program(self.cfg.hash(), self.instructions)

    def program_bytes(self) -> bytes:
        return encode_program(self.program())

    def compiled(self) -> Compiled:
        return Compiled(self.cfg, self.program(), self.ddr_image, self.manifest)

    def random_input(self, rng: np.random.Generator, batch: int = 1) -> np.ndarray:
        d = self.cfg.data_bits
        return rng.integers(-(1 << (d - 1)), 1 << (d - 1), size=(batch, INPUT_ELEMENTS))

    def listing(self, g: Group) -> str:
        return "\n".join(f"{k:4d} {self.instructions[k]}" for k in range(g.first, g.stop))


class _Gen:
    """The generator's view of the machine: what was written where, the two banks."""

    def __init__(self, cfg: AcceleratorConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.bld = Builder()
        self.a0 = CONST_BYTES
        self.a1 = CONST_BYTES + ARENA_BYTES
        self.written = np.zeros(ARENA_BYTES, dtype=bool)          # arena bytes with data
        n_in = INPUT_ELEMENTS * cfg.data_bytes
        self.written[:n_in] = True
        self.areas: list[tuple[str, int, int]] = [("input", self.a0, self.a0 + n_in)]
        self.next_area = align(self.a0 + n_in, AREA_ALIGN)
        self.out_written = np.zeros(cfg.output_buffer_entries, dtype=bool)
        self.fc_entries = min(cfg.fc_buffer_entries, cfg.input_buffer_entries)

    def r(self, lo: int, hi: int) -> int:
        """Uniform in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    # --- halves of the buffers ------------------------------------------------------------
    def half(self, entries: int, h: int) -> tuple[int, int]:
        n = entries // 2
        return h * n, n

    def out_halves(self, h: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(accumulators, staging) of bank h: OUTPUT in quarters."""
        q = self.cfg.output_buffer_entries // 4
        return (h * q, q), (2 * q + h * q, q)

    # --- LOADs ----------------------------------------------------------------------------
    def _factor(self, n: int) -> tuple[int, int, int]:
        """(length, n1, n2) with length·n1·n2 = n."""
        divs = [d for d in range(1, n + 1) if n % d == 0]
        n2 = int(self.rng.choice(divs)) if self.p(0.5) else 1
        rest = n // n2
        divs = [d for d in range(1, rest + 1) if rest % d == 0]
        n1 = int(self.rng.choice(divs)) if self.p(0.6) else 1
        return rest // n1, n1, n2

    def _const_geom(self, n: int, eb: int, packed: int = 0) -> dict[str, int]:
        for _ in range(4):
            length, n1, n2 = self._factor(n)
            seg = int(arch.load_segment_bytes_of(eb, packed, length))
            s1 = int(self.rng.choice([seg, 0, self.r(0, 3 * seg + 5), seg + self.r(1, 9)]))
            row = (n1 - 1) * s1 + seg
            s2 = int(self.rng.choice([row, 0, self.r(0, 2 * row + 7), row + self.r(1, 40)]))
            span = (n2 - 1) * s2 + row
            if span <= CONST_BYTES:
                return {"ddr_addr": self.r(0, CONST_BYTES - span), "length": length, "n1": n1,
                        "stride1": s1, "n2": n2, "stride2": s2}
        one = int(arch.load_segment_bytes_of(eb, packed, n))
        return {"ddr_addr": self.r(0, CONST_BYTES - one), "length": n}    # one run

    def _arena_geom(self, n: int, eb: int, shape: tuple[int, int, int] | None
                    ) -> tuple[str, dict[str, int]] | None:
        """A geometry inside one written area (the input or a group's output), if one fits."""
        for _ in range(6):
            name, s, e = self.areas[self.r(0, len(self.areas) - 1)]
            if shape is not None and self.p(0.7):
                c, rows, cols = shape        # a (c, rows, cols) window of a wider map
                w = cols + self.r(0, 6)
                h = rows + self.r(0, 3)
                g = {"length": cols, "n1": rows, "stride1": w * eb, "n2": c,
                     "stride2": h * w * eb}
            else:
                length, n1, n2 = self._factor(n)
                g = {"length": length, "n1": n1, "stride1": length * eb + self.r(0, 2) * eb,
                     "n2": n2, "stride2": 0}
                g["stride2"] = (n1 - 1) * g["stride1"] + length * eb + self.r(0, 3) * eb
            span = (g["n2"] - 1) * g["stride2"] + (g["n1"] - 1) * g["stride1"] + g["length"] * eb
            if span > e - s:
                continue
            base = self.r(s, e - span)
            idx = np.concatenate([np.arange(base + j * g["stride2"] + i * g["stride1"],
                                            base + j * g["stride2"] + i * g["stride1"]
                                            + g["length"] * eb)
                                  for j in range(g["n2"]) for i in range(g["n1"])])
            if self.written[idx - self.a0].all():
                return name, {**g, "ddr_addr": base}
        return None

    def load(self, buf: Buffer, addr: int, n: int, layer: int, fc: int = 0,
             shape: tuple[int, int, int] | None = None, split: bool = True) -> None:
        """Fill entries [addr, addr + n) of `buf`, with one to three LOADs."""
        eb = int(arch.load_element_bytes(self.cfg, buf, fc))
        parts = [n]
        if split and n >= 4 and self.p(0.3):
            k = self.r(1, n - 1)
            parts = [k, n - k]
            shape = None
        a = addr
        for m in parts:
            # weights two per byte (LOAD packed4) where the config allows it, from constants
            packed = int(bool(arch.packed_load_allowed(self.cfg, buf, fc)) and self.p(0.5))
            src = self._arena_geom(m, eb, shape) if not packed and self.p(0.45) else None
            region, geom = src if src is not None else ("const",
                                                        self._const_geom(m, eb, packed))
            self.bld.load(buf.name, a, m, region, {"layer": layer, "buffer": int(buf),
                                                   "fc_weights": fc, "buf_addr": a,
                                                   "packed4": packed, **geom})
            a += m

    # --- finalize and SAVE ----------------------------------------------------------------
    def finalize_fields(self, to: int, npc: int, staging: tuple[int, int], h_bias: int,
                        layer: int, terms: int) -> tuple[dict[str, int], int]:
        """Random finalize fields, the biases loaded; returns (fields, pitch used). The shifts
        mostly bring accumulators of `terms` random products into the output range (so most
        values are neither 0 nor saturated), sometimes anything."""
        cfg = self.cfg
        a, d, b = cfg.acc_bits, cfg.data_bits, cfg.bias_bits
        s0, sn = staging
        pitch = 0
        if to > 1 and self.p(0.4):
            pitch = npc + self.r(0, 5)
            if (to - 1) * pitch + npc > sn:
                pitch = 0
        span = (to - 1) * (pitch or npc) + npc
        out_addr = self.r(s0, s0 + sn - span)
        has_bias = int(self.p(0.6))
        out_bits = int(self.rng.choice([d, d, self.r(2, d)]))
        # |acc| of `terms` products of full-range operands: about 2^(d + w - 2) · √terms
        acc = d + cfg.weight_bits - 2 + int(np.log2(max(1, terms)) / 2)
        fit = acc - out_bits + 1
        shift = fit + self.r(-3, 2) if self.p(0.75) else int(self.rng.choice(
            [self.r(-d - 2, 0), self.r(0, a + 2), self.r(-128, 127)]))
        bias_shift = max(0, acc - b + self.r(-4, 1)) if self.p(0.8) else self.r(0, a - b - 1)
        f = {"finalize": 1, "has_bias": has_bias, "relu": int(self.p(0.5)),
             "bias_shift": min(bias_shift, a - b - 1), "data_shift": max(-128, min(127, shift)),
             "out_bits": out_bits, "out_addr": out_addr, "out_pitch": pitch}
        if has_bias:
            b0, bn = self.half(cfg.bias_buffer_entries, h_bias)
            bb = self.r(b0, b0 + bn - to)
            self.load(Buffer.BIAS, bb, to, layer)
            f["bb_addr"] = bb
        return f, pitch

    def saves(self, name: str, layer: int, out_addr: int, to: int, npc: int, pitch: int
              ) -> tuple[int, int]:
        """SAVE the finalized (to, npc) values into a fresh DDR area; returns the area."""
        db = self.cfg.data_bytes
        runs = [(out_addr, to * npc)] if pitch in (0, npc) else \
            [(out_addr + o * pitch, npc) for o in range(to)]
        start = self.next_area + self.r(0, 3) * db
        at = start
        for ob, n in runs:
            pieces = [n] if n < 2 or self.p(0.7) else [n // 2, n - n // 2]
            for m in pieces:
                length, n1, n2 = self._factor(m)
                s1 = length * db + int(self.rng.choice([0, 0, self.r(1, 7)]))
                row = (n1 - 1) * s1 + length * db
                s2 = row + int(self.rng.choice([0, 0, self.r(1, 30)]))
                span = (n2 - 1) * s2 + row
                if at + span > self.a1:
                    raise RuntimeError("random program: arena full (make fewer groups)")
                self.bld.save(ob, m, name, {"layer": layer, "ob_addr": ob, "ddr_addr": at,
                                            "length": length, "n1": n1, "stride1": s1,
                                            "n2": n2, "stride2": s2})
                for j in range(n2):
                    for i in range(n1):
                        p = at + j * s2 + i * s1 - self.a0
                        self.written[p:p + length * db] = True
                at += span + self.r(0, 2) * db
                ob += m
        stop = align(at, db)
        self.next_area = align(stop, AREA_ALIGN)
        self.areas.append((name, start, stop))
        return start, stop

    def junk_nop(self, layer: int) -> None:
        """A CALC with ti = 0 or to = 0 and other fields at random: a no-operation."""
        ti, to = (0, self.r(0, 40)) if self.p(0.5) else (self.r(0, 40), 0)
        self.bld.calc([], [], {"layer": layer, "ti": ti, "to": to, "kind": self.r(0, 1),
                               "ib_addr": self.r(0, 1 << 20), "in_rows": self.r(0, 4095),
                               "out_cols": self.r(0, 4095), "stride": self.r(1, 7),
                               "finalize": self.r(0, 1), "out_addr": self.r(0, 1 << 19)})

    # --- groups ---------------------------------------------------------------------------
    def conv(self, k: int, name: str, variant: str = "conv") -> None:
        """variant "conv": small tiles; "big": tiles up to a buffer half and many output
        channels (long bursts, several channel groups); "deep": more input channels than the
        grid's weight staging holds (the one-accumulator MAC loop), weights in all of WEIGHT;
        "conv1": a 1×1 kernel (CALC kind CONV1, ti terms, weights dense (to, ti)) with up to
        the staging depth's input channels, sometimes beyond it (the loop), padding 0 as the
        compiler emits it (or at random)."""
        cfg, h = self.cfg, k % 2
        (i0, i_n), (w0, w_n) = (self.half(cfg.input_buffer_entries, h),
                                self.half(cfg.weight_buffer_entries, h))
        (acc0, acc_n), staging = self.out_halves(h)
        # sub-kernels: a K×K kernel cut at koff 0/3/6, or one 3×3 at a random offset
        ny, nx = self.r(1, 3), self.r(1, 3)
        if self.p(0.7) or variant in ("deep", "conv1"):
            ny = nx = 1
        subs = [(3 * y, 3 * x) for y in range(ny) for x in range(nx)]
        if len(subs) == 1 and self.p(0.3):
            subs = [(self.r(0, 15), self.r(0, 15))]
        nsub = len(subs)
        kind, taps = CalcKind.CONV, 9
        if variant == "conv1":
            kind, taps = CalcKind.CONV1, 1
            if self.p(0.75):
                subs = [(0, 0)]
            # ti ≤ the field, and the input tile within the constants it is loaded from
            ti_max = min(arch.CALC_DIM_MAX, CONST_BYTES // cfg.data_bytes // 4)
            deep = staging_depth(cfg) + 8 <= ti_max and self.p(0.25)
            if deep:
                w0, w_n = 0, cfg.weight_buffer_entries
            ti = staging_depth(cfg) + self.r(1, 8) if deep else \
                self.r(1, min(staging_depth(cfg), 256))
            to = 1 if deep else self.r(1, 12)
            rows, cols = self.r(1, 6), self.r(1, min(12, cfg.max_row_width))
            while ti * rows * cols > 4 * ti_max:
                rows, cols = max(1, rows - 1), max(1, cols - 1)
        elif variant == "deep":
            w0, w_n = 0, cfg.weight_buffer_entries
            ti, to = min(staging_depth(cfg) // 9 + self.r(1, 12), w_n // 9), 1
            rows, cols = self.r(1, 3), self.r(1, 4)
        elif variant == "big":
            ti, to = self.r(1, 8), self.r(1, 12)
            rows, cols = self.r(4, 16), self.r(8, cfg.max_row_width)
        else:
            ti, to = self.r(1, 4), self.r(1, 5)
            rows, cols = self.r(1, 9), self.r(1, min(12, cfg.max_row_width))
        to = min(to, cfg.bias_buffer_entries // 2)       # the biases fit a BIAS half
        while to * ti * taps * nsub > w_n:
            ti, to = max(1, ti - 1), max(1, to - 1)
            if ti == to == 1 and taps * nsub > w_n:
                subs, nsub = subs[:1], 1
        while ti * rows * cols > i_n:
            rows, cols = max(1, rows - 1), max(1, cols - (rows == 1))
        s = self.r(1, cfg.max_stride)
        pt, pl = self.r(0, cfg.max_pad), self.r(0, cfg.max_pad)
        kh, kw = 3 * ny, 3 * nx
        if variant == "conv1":
            kh = kw = 1
            pt, pl = (pt, pl) if subs != [(0, 0)] else (0, 0)

        def natural(n: int, p: int, kk: int) -> int:
            return max(1, (n + 2 * p - kk) // s + 1)

        orows = natural(rows, pt, kh) if self.p(0.6) else self.r(1, 6)
        ocols = natural(cols, pl, kw) if self.p(0.6) else self.r(1, 9)
        pool = int(self.p(0.35) and orows >= 2 and ocols >= 2)
        ocols = min(ocols, pool_width(cfg))
        while to * orows * ocols > acc_n:
            orows, to = max(1 + pool, orows - 1), max(1, to - 1)
            ocols = max(1 + pool, ocols - 1)
        npc = (orows // 2) * (ocols // 2) if pool else orows * ocols
        n_acc = to * orows * ocols
        ib = self.r(i0, i0 + i_n - ti * rows * cols)
        blk = to * ti * taps
        wb = self.r(w0, w0 + w_n - blk * nsub)
        ob = self.r(acc0, acc0 + acc_n - n_acc)
        self.load(Buffer.INPUT, ib, ti * rows * cols, k, shape=(ti, rows, cols))
        self.load(Buffer.WEIGHT, wb, blk * nsub, k)
        if self.p(0.15):
            self.junk_nop(k)
        fin, pitch = self.finalize_fields(to, npc, staging, h, k, taps * ti * nsub)
        acc_first = int(self.out_written[ob:ob + n_acc].all() and self.p(0.3))
        for j, (ky, kx) in enumerate(subs):
            f = {"layer": k, "kind": int(kind), "ib_addr": ib, "wb_addr": wb + j * blk,
                 "ob_addr": ob, "ti": ti, "to": to, "in_rows": rows, "in_cols": cols,
                 "out_rows": orows, "out_cols": ocols, "stride": s, "pad_top": pt,
                 "pad_left": pl, "koff_y": ky, "koff_x": kx,
                 "accumulate": int(j > 0 or acc_first), "out_bits": cfg.data_bits}
            reads = [("INPUT", ib, ib + ti * rows * cols), ("WEIGHT", wb + j * blk,
                                                           wb + (j + 1) * blk)]
            writes = [(ob, ob + n_acc)]
            if j == nsub - 1:
                f.update(fin, pool=pool)
                if fin["has_bias"]:
                    reads.append(("BIAS", fin["bb_addr"], fin["bb_addr"] + to))
                span = (to - 1) * (pitch or npc) + npc
                writes.append((fin["out_addr"], fin["out_addr"] + span))
            self.bld.calc(reads, writes, f)
        self.out_written[ob:ob + n_acc] = True
        self.saves(name, k, fin["out_addr"], to, npc, pitch)

    def fc(self, k: int, name: str) -> None:
        cfg, h = self.cfg, k % 2
        f0, f_n = self.half(self.fc_entries, h)
        w0, w_n = self.half(cfg.weight_buffer_entries, h)
        (acc0, acc_n), staging = self.out_halves(h)
        nblk = self.r(1, 3)
        to = min(self.r(1, 8), cfg.bias_buffer_entries // 2)
        blocks = [self.r(1, 24 if self.p(0.7) else 300) for _ in range(nblk)]
        while to * max(blocks) > f_n or sum(blocks) > w_n:
            blocks = [max(1, b // 2) for b in blocks]
            to = max(1, to - 1)
        ob = self.r(acc0, acc0 + acc_n - to)
        vb = self.r(w0, w0 + w_n - sum(blocks))
        fin, pitch = self.finalize_fields(to, 1, staging, h, k, sum(blocks))
        # the whole vector at once, or per block
        whole = self.p(0.5)
        if whole:
            self.load(Buffer.WEIGHT, vb, sum(blocks), k, fc=1)
        v = vb
        for j, ti in enumerate(blocks):
            if not whole:
                self.load(Buffer.WEIGHT, v, ti, k, fc=1)
            ib = self.r(f0, f0 + f_n - to * ti)
            self.load(Buffer.INPUT, ib, to * ti, k, fc=1, split=False)
            f = {"layer": k, "kind": int(CalcKind.FC), "ib_addr": ib, "wb_addr": v,
                 "ob_addr": ob, "ti": ti, "to": to, "accumulate": int(j > 0),
                 "out_bits": cfg.data_bits}
            reads = [("INPUT", ib, ib + to * ti), ("WEIGHT", v, v + ti)]
            writes = [(ob, ob + to)]
            if j == nblk - 1:
                f.update(fin)
                if fin["has_bias"]:
                    reads.append(("BIAS", fin["bb_addr"], fin["bb_addr"] + to))
                writes.append((fin["out_addr"], fin["out_addr"] + (to - 1) * (pitch or 1) + 1))
            self.bld.calc(reads, writes, f)
            v += ti
        self.out_written[ob:ob + to] = True
        self.saves(name, k, fin["out_addr"], to, 1, pitch)


def random_program(cfg: AcceleratorConfig, groups: list[tuple[str, int, bool]]
                   ) -> RandomProgram:
    """A program of one group per (kind, seed, end_after): kind "conv", "big", "deep", "conv1"
    or "fc";
    `end_after` closes an accelerator segment with an END after the group (the driver restarts
    the accelerator there, as between host layers); the last group is always followed by END."""
    rng0 = np.random.default_rng([len(groups), *(s for _, s, _ in groups)])
    gen = _Gen(cfg, rng0)
    out: list[Group] = []
    segments: list[tuple[int, int, list[str]]] = []
    seg_first, seg_names = 0, []
    for k, (kind, seed, end_after) in enumerate(groups):
        gen.rng = np.random.default_rng([seed, k])
        first = len(gen.bld)
        name = f"g{k}"
        if kind == "fc":
            gen.fc(k, name)
        else:
            gen.conv(k, name, kind)
        _, s, e = gen.areas[-1]
        out.append(Group(name, kind, first, len(gen.bld), (s, e)))
        seg_names.append(name)
        if end_after or k == len(groups) - 1:
            gen.bld.end(k)
            segments.append((seg_first, len(gen.bld), seg_names))
            seg_first, seg_names = len(gen.bld), []
    ins = tuple(gen.bld.instructions())
    image = np.concatenate([rng0.integers(0, 256, CONST_BYTES, dtype=np.uint8),
                            rng0.integers(0, 256, ARENA_BYTES, dtype=np.uint8)]).tobytes()
    return RandomProgram(cfg, ins, image, _manifest(cfg, gen, out, segments), tuple(out))


def _manifest(cfg: AcceleratorConfig, gen: _Gen, groups: list[Group],
              segments: list[tuple[int, int, list[str]]]) -> Manifest:
    """Each group a stage at its own schedule position whose output tensor is its DDR area.
    Placeholders where the simulator and the driver read nothing: the stages' input ("input"
    — a group reads constants and any earlier area), readers, computation shapes, weight
    formats, tiling, costs."""
    fmt = FixedFormat(cfg.data_bits, 0)
    db, n = cfg.data_bytes, len(groups)
    regions = (Region("const", "weights", 0, gen.a0, 0, n - 1, False),
               Region("arena", "fmap", gen.a0, gen.a1 - gen.a0, 0, n - 1, True))

    def tensor(name: str, start: int, size: int, producer: int) -> TensorEntry:
        return TensorEntry(name, (size,), fmt, True, "arena", start, producer, (),
                           producer == n - 1)

    tensors = {"input": tensor("input", gen.a0, INPUT_ELEMENTS, -1)}
    stages = []
    for k, g in enumerate(groups):
        size = (g.area[1] - g.area[0]) // db
        tensors[g.name] = tensor(g.name, g.area[0], size, k)
        stages.append(StageEntry(
            k, g.name, "fc" if g.kind == "fc" else "conv", (g.name,), "input", g.name,
            (INPUT_ELEMENTS,), (size,), (1, 1), (3, 3), 1, (0, 0), False, False, False,
            StageFormats(fmt, fmt, None, fmt), 0, 0, 0, Tiling(1, 1, 1, 1, "spatial"),
            (g.first, g.stop), 0.0, {}, k))
    ins = gen.bld.instructions()
    stats = program_stats(ins)
    return Manifest(
        model="random-program", weights="random",
        config=ConfigRef(cfg.name, cfg.device, cfg.hash().hex()),
        element_bytes={"data": cfg.data_bytes, "weight": cfg.weight_bytes,
                       "bias": cfg.bias_bytes},
        ddr_size=gen.a1, arena=(gen.a0, gen.a1), regions=regions, tensors=tensors,
        alias={"y": groups[-1].name}, input="input", outputs=(("y", groups[-1].name),),
        layers=tuple(stages),
        schedule=tuple(AccelStep(j, (a, b), tuple(names))
                       for j, (a, b, names) in enumerate(segments)),
        partition=Partition(tuple(g.name for g in groups), (), ()),
        program=ProgramStats(len(ins), gen.bld.nops, stats["LOAD"], stats["CALC"],
                             stats["SAVE"], stats["END"]))
