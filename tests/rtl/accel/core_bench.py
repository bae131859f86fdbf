"""amaranth.sim test bench for the accelerator top level (tests only): a behavioural AXI4 DDR
(random ready/valid, latency, checks every burst against the AXI rules the harness enforces),
an AXI4-Lite host, and the functional simulator as the reference."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from deepfpga.compiler.alloc import Region
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.engines import burst_limit_bytes
from deepfpga.hw.isa import Instruction, encode_instruction
from deepfpga.rtl.accel import spec
from deepfpga.sim.functional import SimulationError
from deepfpga.sim.hazards import DdrMap
from deepfpga.sim.machine import Machine


@dataclass
class RunResult:
    status: int
    error_code: int
    error_index: int
    end_index: int
    cycles: int
    sat_count: int
    ddr: bytearray
    bursts: list[tuple[str, int, int]] = field(default_factory=list)   # (kind, addr, beats)
    # (engine, start/end, instruction index, cycle)
    trace: list[tuple[str, str, int, int]] = field(default_factory=list)
    buffers: dict[int, list[int]] = field(default_factory=dict)
    ends: list[int] = field(default_factory=list)      # END of each segment that completed
    after_clear: tuple[int, int, int] | None = None    # STATUS, ERROR_CODE, irq after CLEAR


def check_burst(cfg: AcceleratorConfig, kind: str, addr: int, beats: int, size: int,
                burst: int) -> None:
    bb = cfg.axi_data_bits // 8
    assert burst == 1, f"{kind} burst type {burst}"
    assert 1 << size == bb, f"{kind} size {size}"
    assert addr % bb == 0, f"{kind} address {addr:#x} not beat-aligned"
    assert beats <= spec.AXI_MAX_BURST_BEATS
    assert beats * bb <= burst_limit_bytes(cfg), f"{kind} burst of {beats} beats too long"
    last = addr + beats * bb - 1
    assert addr // 4096 == last // 4096, f"{kind} burst [{addr:#x}, {last:#x}] crosses 4 KiB"


def run(dut, cfg: AcceleratorConfig, ddr: bytearray, prog_addr: int, prog_count: int, *,
        seed: int = 0, p_ready: float = 0.8, latency: int = 3, max_cycles: int = 20000,
        bad_ranges: Sequence[tuple[int, int]] = (), read_buffers: bool = False,
        segments: bool = False, clear: bool = False) -> RunResult:
    """Start the accelerator on the words at prog_addr; run to irq; return the registers
    (indices from prog_addr; cycles and saturations summed over segments), DDR and the observed
    bursts. With `segments`, restart after each END at END_INDEX + 1, as the host driver does;
    with `clear`, write CTRL.CLEAR at the end.
    Addresses in `bad_ranges` answer SLVERR."""
    rng = np.random.default_rng(seed)
    bb = cfg.axi_data_bits // 8
    res = RunResult(0, 0, 0, 0, 0, 0, ddr)
    state = {"cycle": 0, "stop": False}

    def bad(a: int) -> bool:
        return any(lo <= a < hi for lo, hi in bad_ranges) or a + bb > len(ddr)

    async def reads(ctx):
        pend: deque = deque()
        cur = None
        while not state["stop"]:
            ar_rdy = rng.random() < p_ready
            ctx.set(dut.m_axi_arready, ar_rdy)
            if ar_rdy and ctx.get(dut.m_axi_arvalid):
                a, n = ctx.get(dut.m_axi_araddr), ctx.get(dut.m_axi_arlen) + 1
                check_burst(cfg, "read", a, n, ctx.get(dut.m_axi_arsize),
                            ctx.get(dut.m_axi_arburst))
                res.bursts.append(("read", a, n))
                pend.append([state["cycle"] + latency, a, n])
            if cur is None and pend and pend[0][0] <= state["cycle"]:
                cur = pend.popleft()
            rv = cur is not None and rng.random() < p_ready
            ctx.set(dut.m_axi_rvalid, rv)
            if rv:
                a = cur[1]
                ctx.set(dut.m_axi_rdata, 0 if bad(a) else int.from_bytes(ddr[a:a + bb], "little"))
                ctx.set(dut.m_axi_rresp, 2 if bad(a) else 0)
                ctx.set(dut.m_axi_rlast, cur[2] == 1)
                if ctx.get(dut.m_axi_rready):
                    cur[1] += bb
                    cur[2] -= 1
                    if cur[2] == 0:
                        cur = None
            await ctx.tick()

    async def writes(ctx):
        aws: deque = deque()
        bq: deque = deque()
        cur = None
        while not state["stop"]:
            aw_rdy = rng.random() < p_ready
            ctx.set(dut.m_axi_awready, aw_rdy)
            if aw_rdy and ctx.get(dut.m_axi_awvalid):
                a, n = ctx.get(dut.m_axi_awaddr), ctx.get(dut.m_axi_awlen) + 1
                check_burst(cfg, "write", a, n, ctx.get(dut.m_axi_awsize),
                            ctx.get(dut.m_axi_awburst))
                res.bursts.append(("write", a, n))
                aws.append([a, n, False])
            if cur is None and aws:
                cur = aws.popleft()
            w_rdy = cur is not None and rng.random() < p_ready
            ctx.set(dut.m_axi_wready, w_rdy)
            if w_rdy and ctx.get(dut.m_axi_wvalid):
                a = cur[0]
                data = ctx.get(dut.m_axi_wdata).to_bytes(bb, "little")
                strb = ctx.get(dut.m_axi_wstrb)
                assert ctx.get(dut.m_axi_wlast) == (cur[1] == 1), "wlast"
                cur[2] |= bad(a)
                if not bad(a):
                    for k in range(bb):
                        if strb >> k & 1:
                            ddr[a + k] = data[k]
                cur[0] += bb
                cur[1] -= 1
                if cur[1] == 0:
                    bq.append([state["cycle"] + latency, 2 if cur[2] else 0])
                    cur = None
            bv = bool(bq) and bq[0][0] <= state["cycle"]
            ctx.set(dut.m_axi_bvalid, bv)
            if bv:
                ctx.set(dut.m_axi_bresp, bq[0][1])
                if ctx.get(dut.m_axi_bready):
                    bq.popleft()
            await ctx.tick()

    async def trace(ctx):
        while not state["stop"]:
            for e in ("load", "calc", "save"):
                for edge in ("start", "end"):
                    if ctx.get(getattr(dut, f"tr_{e}_{edge}")):
                        res.trace.append((e, edge, ctx.get(getattr(dut, f"tr_{e}_index")),
                                          state["cycle"]))
            await ctx.tick()
            state["cycle"] += 1

    async def host(ctx):
        base = 0                                       # first instruction of this segment
        while True:
            await axil_write(ctx, dut, spec.Reg.PROG_ADDR, prog_addr + 32 * base)
            await axil_write(ctx, dut, spec.Reg.PROG_COUNT, prog_count - base)
            await axil_write(ctx, dut, spec.Reg.CTRL, 1)
            for _ in range(max_cycles):
                if ctx.get(dut.irq):
                    break
                await ctx.tick()
            else:
                state["stop"] = True
                raise AssertionError(f"no irq after {max_cycles} cycles")
            res.status = await axil_read(ctx, dut, spec.Reg.STATUS)
            res.error_code = await axil_read(ctx, dut, spec.Reg.ERROR_CODE)
            res.error_index = base + await axil_read(ctx, dut, spec.Reg.ERROR_INDEX)
            res.end_index = base + await axil_read(ctx, dut, spec.Reg.END_INDEX)
            res.cycles += await axil_read(ctx, dut, spec.Reg.CYCLES_LO)
            res.sat_count += await axil_read(ctx, dut, spec.Reg.SAT_COUNT)
            if res.status != spec.Status.DONE:
                break
            res.ends.append(res.end_index)
            if not segments or res.end_index + 1 >= prog_count:
                break
            base = res.end_index + 1
        if clear:
            await axil_write(ctx, dut, spec.Reg.CTRL, 2)
            res.after_clear = (await axil_read(ctx, dut, spec.Reg.STATUS),
                               await axil_read(ctx, dut, spec.Reg.ERROR_CODE), ctx.get(dut.irq))
        if read_buffers:
            dp = dut.datapath
            for b, mem in enumerate((dp.inp, dp.wgt, dp.bias)):
                res.buffers[int(b)] = [ctx.get(c) for c in _cells(mem)]
        state["stop"] = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in (reads, writes, trace, host):
        sim.add_testbench(bench)
    sim.run()
    return res


def _cells(mem) -> list:
    """Simulator handles of a buffer's entries: a Memory, or the Datapath's BankedMemory."""
    if hasattr(mem, "cell"):
        return [mem.cell(i) for i in range(mem.entries)]
    return [mem.data[i] for i in range(mem.depth)]


async def axil_write(ctx, dut, addr: int, value: int, strb: int = 0xF) -> None:
    ctx.set(dut.s_axil_awaddr, addr)
    ctx.set(dut.s_axil_awvalid, 1)
    ctx.set(dut.s_axil_wdata, value)
    ctx.set(dut.s_axil_wstrb, strb)
    ctx.set(dut.s_axil_wvalid, 1)
    while not ctx.get(dut.s_axil_awready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(dut.s_axil_awvalid, 0)
    ctx.set(dut.s_axil_wvalid, 0)
    ctx.set(dut.s_axil_bready, 1)
    while not ctx.get(dut.s_axil_bvalid):
        await ctx.tick()
    await ctx.tick()
    ctx.set(dut.s_axil_bready, 0)


async def axil_read(ctx, dut, addr: int) -> int:
    ctx.set(dut.s_axil_araddr, addr)
    ctx.set(dut.s_axil_arvalid, 1)
    while not ctx.get(dut.s_axil_arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(dut.s_axil_arvalid, 0)
    ctx.set(dut.s_axil_rready, 1)
    while not ctx.get(dut.s_axil_rvalid):
        await ctx.tick()
    v = ctx.get(dut.s_axil_rdata)
    await ctx.tick()
    ctx.set(dut.s_axil_rready, 0)
    return v


def place_program(ddr: bytearray, prog_addr: int, instructions: Sequence[Instruction]) -> None:
    body = b"".join(encode_instruction(i) for i in instructions)
    ddr[prog_addr:prog_addr + len(body)] = body


@dataclass
class Reference:
    ddr: bytes
    buffers: dict[int, np.ndarray]           # values of the entries a LOAD wrote
    written: dict[int, np.ndarray]           # which entries
    error_index: int | None
    saturated: int = 0


def functional(cfg: AcceleratorConfig, ddr: bytes, arena: tuple[int, int],
               instructions: Sequence[Instruction], output: Sequence[int]) -> Reference:
    """Run the instructions on the functional simulator's machine (one sample; OUTPUT holding
    `output`, as if finalized by CALCs; DDR outside the arena constant, races not checked)."""
    ddr_map = DdrMap(arena, (Region("ddr", "fmap", 0, len(ddr), 0, 0, True),), {0: 0})
    m = Machine(cfg, ddr_map, np.frombuffer(bytes(ddr), dtype=np.uint8), 1, False)
    m.out.preset(np.asarray(output))
    err = None
    try:
        for k, ins in enumerate(instructions):
            m.step(k, ins)
        m.flush()
    except SimulationError as e:
        err = e.index
    img = bytearray(m.const.tobytes())
    img[arena[0]:arena[1]] = m.adata[0].tobytes()
    return Reference(bytes(img), {int(b): buf.val[0].astype(np.int64) for b, buf in m.bufs.items()},
                     {int(b): buf.written() for b, buf in m.bufs.items()}, err,
                     sum(m.saturations.values()))
