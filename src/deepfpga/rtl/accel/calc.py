"""The CALC engine: runs one CALC instruction (CONV or FC, every field of docs/isa.md) against
the buffers' CALC ports.

A CALC runs in phases:
1. SETUP (`decode.Setup.STEPS` cycles): operand and result sizes by one shared multiplier;
   CHECK: range checks and unsupported fields, in the functional simulator's order.
2. MAC: for every accumulator (o, y, x) in OUTPUT order, every term (i, ky, kx) — one product per
   cycle, pipelined (address → buffer read → product → sum). The window position
   (y·stride + koff_y + ky − pad_top, x·stride + koff_x + kx − pad_left) is tracked by adders,
   and a position outside the tile reads 0, so padding, decomposed kernels (koff) and every
   stride 1..7 are the same loop. `accumulate` adds the old accumulator (read at the first
   term), the sum is exact and must fit acc_bits (else ACC_OVERFLOW).
   FC is the same loop with one tap: INPUT holds the weight block, WEIGHT the vector.
3. FIN (if `finalize`): the accumulators are read back in order and streamed through
   bias << bias_shift (64-bit, as the functional simulator's int64), ReLU, the data shift with
   run-time out_bits saturation (counted), and the 2×2/2 max pool (floor), into OUTPUT at
   out_addr + o·pitch.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from deepfpga.compiler.isa import CalcKind
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.accel.buffers import BufferGeometry, operand_bits
from deepfpga.rtl.accel.decode import Setup, calc_fields
from deepfpga.rtl.accel.finalize import build_finalize, pool_width
from deepfpga.rtl.accel.lanes import build_lanes, group_size, staging_depth
from deepfpga.rtl.accel.spec import WORD_BITS, ErrorCode

SAT_BITS = 32
MAC_LATENCY = 3        # address → read → product → sum/write


def engine_signature(cfg: AcceleratorConfig) -> dict:
    geo = BufferGeometry.of(cfg)
    ob = operand_bits(cfg)
    return {
        "calc_valid": In(1), "calc_ready": Out(1), "calc_word": In(WORD_BITS),
        "calc_done": Out(1), "calc_error": Out(8), "calc_sat": Out(SAT_BITS),
        # buffer ports (synchronous reads: data the cycle after the address)
        "in_addr": Out(geo.addr_bits(geo.input_entries)), "in_data": In(signed(ob)),
        "w_addr": Out(geo.addr_bits(geo.weight_entries)), "w_data": In(signed(ob)),
        "b_addr": Out(geo.addr_bits(geo.bias_entries)), "b_data": In(signed(cfg.bias_bits)),
        "o_raddr": Out(geo.addr_bits(geo.output_entries)),
        "o_rdata": In(signed(cfg.acc_bits)),
        "o_we": Out(1), "o_waddr": Out(geo.addr_bits(geo.output_entries)),
        "o_wdata": Out(signed(cfg.acc_bits)),
    }


class CalcEngine(wiring.Component):
    def __init__(self, cfg: AcceleratorConfig):
        self.cfg = cfg
        super().__init__(engine_signature(cfg))

    def elaborate(self, platform):
        cfg = self.cfg
        geo = BufferGeometry.of(cfg)
        a = cfg.acc_bits
        m = Module()

        word = Signal(WORD_BITS)
        f = calc_fields(word)
        step = Signal(range(Setup.STEPS + 1))
        in_setup = Signal()
        setup = Setup(m, f, step, in_setup, group=group_size(cfg))
        check = Signal(8)
        m.d.comb += check.eq(setup.error(f, geo, cfg.max_row_width, cfg.data_bits,
                                         pool_width(cfg)))
        fc = f["kind"] == CalcKind.FC
        err = Signal(8)
        sat = Signal(SAT_BITS)
        ovf = Signal()

        # --- MAC loop state ------------------------------------------------------------------
        o, y, x, i = Signal(12), Signal(12), Signal(12), Signal(12)
        ky, kx = Signal(2), Signal(2)
        ybase, xbase = Signal(signed(20)), Signal(signed(20))
        yoff = Signal(signed(30))
        kyoff = Signal(14)
        chan = Signal(26)
        wa, wo_base = Signal(26), Signal(26)
        accp = Signal(21)
        fcp = Signal(26)
        mac_issue = Signal()
        # output-channel-parallel MAC (lanes.py): staging, old accumulators, terms, write-back
        n_grp = group_size(cfg)
        par = Signal()
        par_issue = Signal()
        t = Signal(range(staging_depth(cfg) + 1))
        su, sk = Signal(range(n_grp + 1)), Signal(16)
        j = Signal(range(n_grp + 1))
        jptr = Signal(21)
        pre_issue, post_we = Signal(), Signal()
        rem = f["to"] - o
        grp = Mux(rem > n_grp, n_grp, rem)
        last_j = j == grp - 1

        tr = ybase + ky
        tc = xbase + kx
        inside = Mux(fc, 1, (tr >= 0) & (tr < f["in_rows"]) & (tc >= 0) & (tc < f["in_cols"]))
        conv_addr = chan + yoff + kyoff + tc
        in_addr = Mux(fc, fcp, Mux(inside, conv_addr, 0))
        last_tap = fc | ((ky == 2) & (kx == 2))
        last_i = i == f["ti"] - 1
        first = (i == 0) & (ky == 0) & (kx == 0)
        last = last_tap & last_i
        last_x = x == f["out_cols"] - 1
        last_y = y == f["out_rows"] - 1
        last_o = o == f["to"] - 1
        wo_step = Mux(fc, 0, setup.ti9)

        # --- FIN loop state ------------------------------------------------------------------
        fo = Signal(12)
        fk = Signal(24)
        faddr = Signal(21)
        fin_issue = Signal()

        m.d.comb += [
            self.in_addr.eq(in_addr),
            self.w_addr.eq(wa),
            self.b_addr.eq(f["bb_addr"] + fo),
            self.o_raddr.eq(Mux(fin_issue, faddr, Mux(pre_issue, jptr, accp))),
        ]

        # --- MAC pipeline: stage 1 (buffer data), stage 2 (product), sum -------------------
        v1, ins1, first1, last1 = Signal(), Signal(), Signal(), Signal()
        accp1 = Signal(21)
        m.d.sync += [v1.eq(mac_issue | par_issue), ins1.eq(inside), first1.eq(first),
                     last1.eq(last), accp1.eq(accp)]
        pix = Mux(ins1, self.in_data, 0)
        v2, first2, last2 = Signal(), Signal(), Signal()
        accp2 = Signal(21)
        prod2 = Signal(signed(2 * operand_bits(cfg)))
        old2 = Signal(signed(a))
        m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1), accp2.eq(accp1),
                     prod2.eq(pix * self.w_data),
                     old2.eq(Mux(f["accumulate"], self.o_rdata, 0))]
        total = Signal(signed(a + 18))
        s_new = Mux(first2, old2, total) + prod2
        with m.If(v2):
            m.d.sync += total.eq(s_new)
        lim = 1 << (a - 1)
        mac_we = v2 & last2 & ~par

        st_v1, pre_v1 = Signal(), Signal()
        st_u1, st_k1, pre_j1 = Signal.like(su), Signal.like(sk), Signal.like(j)
        m.d.sync += [st_v1.eq(0), pre_v1.eq(pre_issue), pre_j1.eq(j), st_u1.eq(su),
                     st_k1.eq(sk)]
        lanes = build_lanes(m, cfg, st_we=st_v1, st_addr=st_k1, st_lane=st_u1,
                            st_data=self.w_data, t_addr=t, pix=pix, v2=v2, first2=first2,
                            old_we=pre_v1, old_lane=pre_j1, old_data=self.o_rdata,
                            keep_old=f["accumulate"])
        post_sum = lanes.sums[j]
        with m.If(post_we & ((post_sum >= lim) | (post_sum < -lim))):
            m.d.sync += ovf.eq(1)
        with m.If(mac_we & ((s_new >= lim) | (s_new < -lim))):
            m.d.sync += ovf.eq(1)

        # --- FIN pipeline ------------------------------------------------------------------
        clear = Signal()
        fin = build_finalize(m, cfg, f, issue=fin_issue, acc=self.o_rdata, bias=self.b_data,
                             clear=clear, sat=sat, npc=setup.npc, pitch=setup.pitch)
        fin_busy, fin_we = fin.busy, fin.we

        m.d.comb += [
            self.o_we.eq(mac_we | fin_we | post_we),
            self.o_waddr.eq(Mux(mac_we, accp2, Mux(post_we, jptr, fin.waddr))),
            self.o_wdata.eq(Mux(mac_we, s_new[:a], Mux(post_we, post_sum[:a], fin.wdata))),
        ]

        drain = Signal(range(MAC_LATENCY + 2))

        def next_term():
            """The next term (i, ky, kx) of the same accumulator."""
            with m.If(~last_tap):
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
            """Advance (y, x); returns "this was the channel's last pixel"."""
            with m.If(~last_x):
                m.d.sync += [x.eq(x + 1), xbase.eq(xbase + f["stride"])]
            with m.Else():
                m.d.sync += [x.eq(0), xbase.eq(setup.x0)]
                with m.If(~last_y):
                    m.d.sync += [y.eq(y + 1), ybase.eq(ybase + f["stride"]),
                                 yoff.eq(yoff + setup.ystep)]
                with m.Else():
                    m.d.sync += [y.eq(0), ybase.eq(setup.y0), yoff.eq(setup.yoff0)]
            return last_x & last_y
        m.d.comb += [self.calc_error.eq(err), self.calc_sat.eq(sat)]
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
                    accp.eq(f["ob_addr"]), fcp.eq(f["ib_addr"]),
                    fo.eq(0), fk.eq(0), faddr.eq(f["ob_addr"]), drain.eq(0),
                ]
                with m.If(check != 0):
                    m.d.sync += err.eq(check)
                    m.next = "DONE"
                with m.Elif(setup.acc_n == 0):
                    m.next = "DONE"
                with m.Elif(~fc & (setup.ti9 <= staging_depth(cfg)) & (n_grp > 1)):
                    m.d.sync += [par.eq(1), su.eq(0), sk.eq(0), t.eq(0)]
                    m.next = "PSTAGE"
                with m.Else():
                    m.d.sync += par.eq(0)
                    m.next = "MAC"
            with m.State("MAC"):
                m.d.comb += mac_issue.eq(1)
                m.d.sync += [wa.eq(wa + 1), fcp.eq(fcp + 1)]
                with m.If(~last):
                    next_term()
                with m.Else():
                    # the accumulator is complete: next (o, y, x)
                    first_term()
                    m.d.sync += [accp.eq(accp + 1), wa.eq(wo_base)]
                    with m.If(next_pixel()):
                        m.d.sync += [o.eq(o + 1), wa.eq(wo_base + wo_step),
                                     wo_base.eq(wo_base + wo_step)]
                        with m.If(last_o):
                            m.next = "MAC_DRAIN"
            with m.State("PSTAGE"):
                # the group's weights, WEIGHT[wb + o·9ti ...] → staging word k, lane u
                m.d.sync += [wa.eq(wa + 1), st_v1.eq(1)]
                with m.If(sk == setup.ti9 - 1):
                    m.d.sync += [sk.eq(0), su.eq(su + 1)]
                    with m.If(su == grp - 1):
                        m.d.sync += [j.eq(0), jptr.eq(accp)]
                        m.next = "PPRE"
                with m.Else():
                    m.d.sync += sk.eq(sk + 1)
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
                    m.d.sync += [j.eq(0), accp.eq(accp + 1), jptr.eq(accp + 1)]
                    m.next = "PPRE"
                    with m.If(next_pixel()):
                        m.d.sync += [o.eq(o + n_grp), accp.eq(accp + setup.grp_skip + 1),
                                     jptr.eq(accp + setup.grp_skip + 1), su.eq(0), sk.eq(0)]
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
                m.d.sync += faddr.eq(faddr + 1)
                with m.If(fk == setup.rc - 1):
                    m.d.sync += [fk.eq(0), fo.eq(fo + 1)]
                    with m.If(fo == f["to"] - 1):
                        m.next = "FIN_DRAIN"
                with m.Else():
                    m.d.sync += fk.eq(fk + 1)
            with m.State("FIN_DRAIN"), m.If(~fin_busy):
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.calc_done.eq(1)
                m.next = "IDLE"
        return m
