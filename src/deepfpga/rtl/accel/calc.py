"""The CALC engine: runs one CALC instruction (CONV, CONV1 or FC, every field of docs/isa.md)
against the buffers' CALC ports (wide: B consecutive entries per access, see buffers.BankedMemory).

A CALC runs in phases:
1. SETUP (`decode.Setup.STEPS` cycles): operand and result sizes by one shared multiplier;
   CHECK: range checks and unsupported fields, in the functional simulator's order.
2. MAC, on one of two loops. Every accumulator (o, y, x) is a sum over terms (i, ky, kx); the
   window position (y·stride + koff_y + ky − pad_top, x·stride + koff_x + kx − pad_left) is
   tracked by adders and a position outside the tile reads 0, so padding, decomposed kernels
   (koff) and every stride 1..7 are the same loop.
   - GRID (CONV with 9·ti ≤ staging depth; a CONV1, 1×1, has ti terms: t = i, ky = kx = 0):
     `lanes.grid_channels` output channels × B pixels
     (stride 1; one pixel otherwise) per cycle: PSTAGE copies a channel group's weights into the
     staging memory (staging.py), B terms per cycle, then per block of B pixels of a row PPRE
     reads the old accumulators (if `accumulate`), PTERMS runs the 9·ti (ti) terms, PDRAIN,
     PPOST writes the sums.
   - ONE (FC, and deeper CONVs): one accumulator at a time, in OUTPUT order; FC takes B terms
     per cycle (INPUT holds the weight block, WEIGHT the vector), CONV one.
   Sums are exact and must fit acc_bits (else ACC_OVERFLOW, the simulator's check).
3. FIN (if `finalize`): the accumulators are read back in order, B per cycle (a chunk never
   spans two channels, nor two rows when pooling), and streamed through the finalize
   (finalize.py) into OUTPUT at out_addr + o·pitch.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import (
    bank_count,
    grid_channels,
    operand_bits,
    pool_width,
    staging_depth,
    sum_bits,
)
from deepfpga.hw.isa import CalcKind
from deepfpga.rtl.accel.buffers import BufferGeometry, WideRead, WideWrite
from deepfpga.rtl.accel.decode import Setup, calc_fields
from deepfpga.rtl.accel.finalize import build_finalize, fin_sequence
from deepfpga.rtl.accel.lanes import build_grid, channel_lanes
from deepfpga.rtl.accel.spec import WORD_BITS, ErrorCode
from deepfpga.rtl.accel.staging import StagingWrite
from deepfpga.rtl.accel.timing import block_width

SAT_BITS = 32
MAC_LATENCY = 3        # address → read → product → sum/write


@dataclass(frozen=True)
class EnginePorts:
    """The buffers' CALC ports (created by the Datapath, driven by the engine)."""

    inp: WideRead
    wgt: WideRead
    bias: WideRead
    out_rd: WideRead
    out_wr: WideWrite


class CalcEngine(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig, ports: EnginePorts):
        self.cfg, self.ports = cfg, ports
        super().__init__({
            "calc_valid": In(1), "calc_ready": Out(1), "calc_word": In(WORD_BITS),
            "calc_done": Out(1), "calc_error": Out(8), "calc_sat": Out(SAT_BITS),
        })

    def elaborate(self, platform):
        cfg, ports = self.cfg, self.ports
        geo = BufferGeometry.of(cfg)
        a = cfg.acc_bits
        nb_ = bank_count(cfg)
        n_grp = grid_channels(cfg)
        m = Module()

        word = Signal(WORD_BITS)
        f = calc_fields(word)
        step = Signal(range(Setup.STEPS + 1))
        in_setup = Signal()
        setup = Setup(m, f, step, in_setup, group=n_grp)
        check = Signal(8)
        m.d.comb += check.eq(setup.error(f, geo, cfg.max_row_width, cfg.data_bits,
                                         pool_width(cfg)))
        fc = f["kind"] == CalcKind.FC
        err = Signal(8)
        sat = Signal(SAT_BITS)
        ovf = Signal()
        lim = 1 << (a - 1)

        # --- loop state ----------------------------------------------------------------------
        o, y, x, i = Signal(12), Signal(12), Signal(12), Signal(12)
        ky, kx = Signal(2), Signal(2)
        ybase, xbase = Signal(signed(20)), Signal(signed(20))
        yoff = Signal(signed(30))
        kyoff = Signal(14)
        chan = Signal(26)
        wa, wo_base = Signal(26), Signal(26)
        accp = Signal(21)
        fcp, fc_row = Signal(26), Signal(26)
        par = Signal()                       # GRID loop
        one_issue, par_issue = Signal(), Signal()
        # block width: a wide INPUT read holds B consecutive entries of a row, i.e. ⌊B/s⌋
        # pixels at stride s (pixel p = entry lane s·p); the ONE loop takes one pixel
        stride = f["stride"]
        bw = Mux(par, Array(Const(block_width(nb_, st), range(nb_ + 1)) for st in range(8))
                 [stride], 1)
        bw_step = Mux(par, Array(Const(block_width(nb_, st) * st, range(nb_ * 8))
                                 for st in range(8))[stride], stride)
        nblk = Signal(range(nb_ + 1))        # real pixels in this block
        m.d.comb += nblk.eq(Mux(f["out_cols"] - x < bw, f["out_cols"] - x, bw))

        tr = ybase + ky
        tc = xbase + kx
        row_ok = (tr >= 0) & (tr < f["in_rows"])
        conv_addr = chan + yoff + kyoff + tc
        lane_ok = Signal(nb_)
        for j in range(nb_):
            col = tc + stride * j
            col_ok = (col >= 0) & (col < f["in_cols"])
            m.d.comb += lane_ok[j].eq(Mux(fc, i + j < f["ti"],
                                          row_ok & col_ok & (j < bw)))
        # FC and CONV1 (a 1×1 kernel): one tap, t = i; CONV: t = i·9 + ky·3 + kx
        last_tap = fc | (f["kind"] == CalcKind.CONV1) | ((ky == 2) & (kx == 2))
        last_i = Mux(fc, i + nb_ >= f["ti"], i == f["ti"] - 1)
        first = (i == 0) & (ky == 0) & (kx == 0)
        last = last_tap & last_i
        last_x = x + bw >= f["out_cols"]
        last_y = y == f["out_rows"] - 1
        last_o = o == f["to"] - 1
        wo_step = Mux(fc, 0, setup.ti9)

        # grid sequencing
        t = Signal(range(staging_depth(cfg) + 1))
        su, sk = Signal(range(n_grp + 1)), Signal(16)
        j = Signal(range(n_grp + 1))
        jptr = Signal(21)
        pre_issue, post_we = Signal(), Signal()
        rem = f["to"] - o
        grp = Mux(rem > n_grp, n_grp, rem)
        last_j = j == grp - 1

        # FIN: chunks of B accumulators (finalize.py)
        fin_issue, clear = Signal(), Signal()
        fseq = fin_sequence(m, cfg, f, setup, run=fin_issue, clear=clear)

        # --- buffer reads (data the cycle after) -----------------------------------------------
        pix_lanes = ports.inp.connect(m, Mux(fc, fcp, conv_addr).as_signed())
        w_lanes = ports.wgt.connect(m, wa.as_signed())
        o_lanes = ports.out_rd.connect(
            m, Mux(fin_issue, fseq.addr, Mux(pre_issue, jptr, accp)).as_signed())
        bias_lanes = ports.bias.connect(m, Cat(f["bb_addr"] + fseq.channel, 0).as_signed())

        # --- MAC pipeline: stage 1 (buffer data), stage 2 (products), sums ---------------------
        v1, first1, last1 = Signal(), Signal(), Signal()
        ok1 = Signal(nb_)
        accp1 = Signal(21)
        m.d.sync += [v1.eq(one_issue | par_issue), ok1.eq(lane_ok), first1.eq(first),
                     last1.eq(last), accp1.eq(accp)]
        # pixel lane k: entry lane s·k (CONV at stride s), entry lane k (FC)
        lane_of = Mux(fc, 1, stride)
        pix = [Mux(ok1[k], Array(pix_lanes[min(st * k, nb_ - 1)] for st in range(8))[lane_of],
                   0) for k in range(nb_)]
        v2, first2, last2 = Signal(), Signal(), Signal()
        accp2 = Signal(21)
        prod2 = Signal(signed(2 * operand_bits(cfg) + nb_.bit_length() + 1))
        old2 = Signal(signed(a))
        one_sum = sum(pix[k] * w_lanes[k] for k in range(nb_))   # CONV: lane 0 only
        m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1), accp2.eq(accp1),
                     prod2.eq(one_sum), old2.eq(Mux(f["accumulate"], o_lanes[0], 0))]
        total = Signal(signed(sum_bits(cfg)))
        s_new = Mux(first2, old2, total) + prod2
        with m.If(v2):
            m.d.sync += total.eq(s_new)
        mac_we = v2 & last2 & ~par
        with m.If(mac_we & ((s_new >= lim) | (s_new < -lim))):
            m.d.sync += ovf.eq(1)

        # --- the grid ------------------------------------------------------------------------
        # PSTAGE reads B consecutive terms sk.. of channel su (sk a multiple of B): term sk + r
        # goes to staging bank r, row sk / B, the cycle after (the WEIGHT read's latency)
        st_v1, pre_v1 = Signal(), Signal()
        st_u1, st_k1, pre_j1 = Signal.like(su), Signal.like(sk), Signal.like(j)
        st_m1 = Signal(nb_)
        m.d.sync += [st_v1.eq(0), pre_v1.eq(pre_issue), pre_j1.eq(j), st_u1.eq(su),
                     st_k1.eq(sk), st_m1.eq(Cat(sk + r < setup.ti9 for r in range(nb_)))]
        staging = StagingWrite(we=st_v1, row=st_k1 >> (nb_.bit_length() - 1), lane=st_u1,
                               mask=st_m1, data=w_lanes)
        grid = build_grid(m, cfg, staging=staging, t_addr=t, pix=pix, v2=v2, first2=first2,
                          old_we=pre_v1, old_chan=pre_j1, old_lanes=o_lanes,
                          keep_old=f["accumulate"])
        post = channel_lanes(grid, j)
        post_en = Signal(nb_)
        m.d.comb += post_en.eq(Cat(k < nblk for k in range(nb_)))
        with m.If(post_we):
            for k in range(nb_):
                with m.If(post_en[k] & ((post[k] >= lim) | (post[k] < -lim))):
                    m.d.sync += ovf.eq(1)

        # --- FIN -----------------------------------------------------------------------------
        fin = build_finalize(m, cfg, f, fseq, issue=fin_issue, acc=o_lanes,
                             bias=bias_lanes[0], clear=clear, sat=sat)

        # --- OUTPUT writes: one accumulator, a grid block, or a finalized chunk --------------
        wlanes = [Mux(post_we, post[k][:a], fin.wdata[k]) for k in range(nb_)]
        ports.out_wr.connect(
            m, Mux(mac_we, accp2, Mux(post_we, jptr, fin.waddr)).as_signed(),
            Mux(post_we, post_en, Mux(mac_we, 1, fin.we)),
            [Mux(mac_we, s_new[:a], wlanes[0])] + wlanes[1:])

        drain = Signal(range(MAC_LATENCY + 2))
        m.d.comb += [self.calc_error.eq(err), self.calc_sat.eq(sat)]

        def next_term():
            """The next term (i, ky, kx) of the same accumulator."""
            with m.If(fc):
                m.d.sync += i.eq(i + nb_)
            with m.Elif(~last_tap):
                with m.If(kx == 2):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1), kyoff.eq(kyoff + f["in_cols"])]
                with m.Else():
                    m.d.sync += kx.eq(kx + 1)
            with m.Else():
                m.d.sync += [kx.eq(0), ky.eq(0), kyoff.eq(0), i.eq(i + 1),
                             chan.eq(chan + setup.rc_in)]

        def first_term():
            m.d.sync += [kx.eq(0), ky.eq(0), kyoff.eq(0), i.eq(0), chan.eq(f["ib_addr"])]

        def next_pixel() -> Value:
            """Advance (y, x) by one block; returns "this was the channel's last block"."""
            with m.If(~last_x):
                m.d.sync += [x.eq(x + bw), xbase.eq(xbase + bw_step)]
            with m.Else():
                m.d.sync += [x.eq(0), xbase.eq(setup.x0)]
                with m.If(~last_y):
                    m.d.sync += [y.eq(y + 1), ybase.eq(ybase + f["stride"]),
                                 yoff.eq(yoff + setup.ystep)]
                with m.Else():
                    m.d.sync += [y.eq(0), ybase.eq(setup.y0), yoff.eq(setup.yoff0)]
            return last_x & last_y

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.calc_ready.eq(1)
                with m.If(self.calc_valid):
                    m.d.sync += [word.eq(self.calc_word), step.eq(0), err.eq(0), ovf.eq(0)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += [in_setup.eq(1), clear.eq(1)]
                m.d.sync += step.eq(step + 1)
                with m.If((f["to"] == 0) | (f["ti"] == 0)):
                    m.next = "DONE"                  # no-op: only its tokens act
                with m.Elif(step == Setup.STEPS - 1):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [
                    o.eq(0), y.eq(0), x.eq(0), i.eq(0), ky.eq(0), kx.eq(0),
                    ybase.eq(setup.y0), xbase.eq(setup.x0), yoff.eq(setup.yoff0), kyoff.eq(0),
                    chan.eq(f["ib_addr"]), wa.eq(f["wb_addr"]), wo_base.eq(f["wb_addr"]),
                    accp.eq(f["ob_addr"]), fcp.eq(f["ib_addr"]), fc_row.eq(f["ib_addr"]),
                    drain.eq(0),
                    su.eq(0), sk.eq(0), t.eq(0), j.eq(0),
                ]
                with m.If(check != 0):
                    m.d.sync += err.eq(check)
                    m.next = "DONE"
                with m.Elif(setup.acc_n == 0):
                    m.next = "DONE"
                with m.Elif(~fc & (setup.ti9 <= staging_depth(cfg))):
                    m.d.sync += par.eq(1)
                    m.next = "PSTAGE"
                with m.Else():
                    m.d.sync += par.eq(0)
                    m.next = "ONE"
            with m.State("ONE"):
                m.d.comb += one_issue.eq(1)
                m.d.sync += [wa.eq(wa + Mux(fc, nb_, 1)), fcp.eq(fcp + nb_)]
                with m.If(~last):
                    next_term()
                with m.Else():
                    # the accumulator is complete: next (o, y, x)
                    first_term()
                    m.d.sync += [accp.eq(accp + 1), wa.eq(wo_base),
                                 fcp.eq(fc_row + f["ti"]), fc_row.eq(fc_row + f["ti"])]
                    with m.If(next_pixel()):
                        m.d.sync += [o.eq(o + 1), wa.eq(wo_base + wo_step),
                                     wo_base.eq(wo_base + wo_step)]
                        with m.If(last_o):
                            m.next = "MAC_DRAIN"
            with m.State("PSTAGE"):
                # the group's weights, WEIGHT[wb + o·9ti ...] → staging words k.., lane u
                m.d.sync += [wa.eq(wa + nb_), st_v1.eq(1)]
                with m.If(sk + nb_ >= setup.ti9):
                    m.d.sync += [sk.eq(0), su.eq(su + 1), wa.eq(wa + setup.ti9 - sk)]
                    with m.If(su == grp - 1):
                        m.d.sync += [j.eq(0), jptr.eq(accp)]
                        m.next = "PPRE"
                with m.Else():
                    m.d.sync += sk.eq(sk + nb_)
            with m.State("PPRE"):
                with m.If(f["accumulate"]):
                    m.d.comb += pre_issue.eq(1)
                m.d.sync += [j.eq(j + 1), jptr.eq(jptr + setup.rc)]
                with m.If(~f["accumulate"] | last_j):
                    m.next = "PTERMS"
            with m.State("PTERMS"):
                m.d.comb += par_issue.eq(1)
                m.d.sync += t.eq(t + 1)
                with m.If(~last):
                    next_term()
                with m.Else():
                    first_term()
                    m.d.sync += [t.eq(0), drain.eq(0), j.eq(0), jptr.eq(accp)]
                    m.next = "PDRAIN"
            with m.State("PDRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == MAC_LATENCY - 1):
                    m.next = "PPOST"
            with m.State("PPOST"):
                m.d.comb += post_we.eq(1)
                m.d.sync += [j.eq(j + 1), jptr.eq(jptr + setup.rc)]
                with m.If(last_j):
                    m.d.sync += [j.eq(0), accp.eq(accp + nblk), jptr.eq(accp + nblk)]
                    m.next = "PPRE"
                    with m.If(next_pixel()):
                        skip = accp + nblk + setup.grp_skip
                        m.d.sync += [o.eq(o + n_grp), accp.eq(skip), jptr.eq(skip),
                                     su.eq(0), sk.eq(0)]
                        m.next = "PSTAGE"
                        with m.If(rem <= n_grp):
                            m.d.sync += drain.eq(0)
                            m.next = "MAC_DRAIN"
            with m.State("MAC_DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == MAC_LATENCY):
                    with m.If(ovf):
                        m.d.sync += err.eq(ErrorCode.ACC_OVERFLOW)
                        m.next = "DONE"
                    with m.Elif(f["finalize"]):
                        m.next = "FIN"
                    with m.Else():
                        m.next = "DONE"
            with m.State("FIN"):
                m.d.comb += fin_issue.eq(1)
                with m.If(fseq.last):
                    m.next = "FIN_DRAIN"
            with m.State("FIN_DRAIN"), m.If(~fin.busy):
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.calc_done.eq(1)
                m.next = "IDLE"
        return m
