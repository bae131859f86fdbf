"""The Verilator harness and its AXI4 DDR model, against the test-only stand-in top level
(copy_dut.py): data movement, registers, trace, per-transaction latency, bandwidth, and the
bursts the model must refuse."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.rtl.accel.spec import ErrorCode, Reg, Status
from deepfpga.rtl.accel.verilator import Harness, build_model

PROG = 0x8000


def _harness(build, overhead=10, rate=8.0, size=1 << 16):
    return Harness(build, size, burst_overhead_cycles=overhead, ddr_bytes_per_cycle=rate,
                   log_transactions=True)


def _start(h, words, count=None):
    prog = b"".join(words)
    h.write_ddr(PROG, prog)
    h.write_reg(Reg.PROG_ADDR, PROG)
    h.write_reg(Reg.PROG_COUNT, len(words) if count is None else count)
    return h.run(len(words), max_cycles=200_000)


def test_copy_registers_trace(copy_build, copy_dut):
    w = copy_dut.word
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, 1024, dtype=np.uint8)
    with _harness(copy_build(32)) as h:
        assert h.read_reg(Reg.ID) == 0xDF9A0001
        h.write_ddr(0x1000, data)
        r = _start(h, [w(1, src=0x1000, dst=0x3000, len=255), w(2, cycles=7, sat=5),
                       w(3), w(1, src=0x1400, dst=0x3400, len=0), w(2, cycles=0, sat=9),
                       w(15)])
        assert r.status == "irq" and r.error == ""
        assert h.read_reg(Reg.STATUS) & Status.DONE
        assert h.read_reg(Reg.ERROR_CODE) == ErrorCode.NONE
        assert h.read_reg(Reg.END_INDEX) == 5
        assert h.read_reg(Reg.SAT_COUNT) == 14
        assert (h.read_ddr(0x3000, 1024) == data).all()
        assert (h.read_ddr(0x3400, 4) == 0).all()          # source 0x1400 holds zeros
        assert list(r.engine) == [0, 1, 2, 0, 1, -1]
        assert list(r.sat) == [0, 5, 0, 0, 9, 0]
        assert r.start[2] == r.end[2]                        # start and end in one cycle
        assert r.end[1] - r.start[1] == 8                    # 7 wait cycles + the end cycle
        assert (np.diff(r.start[:5]) > 0).all() and (r.end[:5] >= r.start[:5]).all()
        # the run ends no earlier than the last traced event
        assert r.cycles > r.end[:5].max()
        assert abs(h.read_reg(Reg.CYCLES_LO) - r.cycles) < 10
        st = h.stats()
        assert st["write_bytes"] == 1028 and st["write_bursts"] == 2
        assert st["read_bursts"] == 6 + 2


@pytest.mark.parametrize("overhead,rate", [(10, 8.0), (0, 4.0), (3, 2.0), (20, 1.0)])
def test_latency_and_bandwidth(copy_build, copy_dut, overhead, rate):
    """A read burst accepted at cycle a presents its first beat at a + 1 + overhead, then a beat
    every max(1, beat/rate) cycles; read and write beats share the byte rate."""
    w = copy_dut.word
    beat = 4
    with _harness(copy_build(32), overhead, rate) as h:
        r = _start(h, [w(1, src=0x1000, dst=0x2000, len=127), w(15)])
        assert r.status == "irq"
        log = h.transactions()
    fetch = log[(log[:, 0] == 0) & (log[:, 1] >= PROG)]
    interval = max(1.0, beat / rate)
    for _, _, beats, acc, first, last in fetch:
        assert first - acc == 1 + overhead
        assert last - first == int(np.ceil((beats - 1) * interval))
    # serial: the next fetch is accepted after the previous burst ended
    assert (fetch[1:, 3] > fetch[:-1, 5]).all()
    rd = log[(log[:, 0] == 0) & (log[:, 1] == 0x1000)][0]
    wr = log[log[:, 0] == 1][0]
    assert rd[4] - rd[3] >= 1 + overhead              # (R waits for WREADY: pass-through)
    moved = 2 * 128 * beat                            # read + write bytes of the copy
    span = max(rd[5], wr[5]) - min(rd[4], wr[4]) + 1
    if rate < 2 * beat:                               # bandwidth-bound: within one beat
        assert abs(span * rate - moved) <= 2 * beat
    else:                                             # one beat per cycle per channel
        assert span == 128


@pytest.mark.parametrize("word_fields,needle", [
    ({"src": 0x0FF0, "dst": 0x2000, "len": 7}, "read burst #1 at cycle"),
    ({"src": 0x1000, "dst": 0x2FFC, "len": 1}, "write burst"),
    ({"src": 0x1000, "dst": 0x2000, "len": 3, "burst": 2}, "not an INCR burst"),
    ({"src": 0x1000, "dst": 0x2000, "len": 3, "burst": 0}, "not an INCR burst"),
    ({"src": 0x1000, "dst": 0x2000, "len": 3, "size": 1}, "not full width"),
])
def test_refused_bursts(copy_build, copy_dut, word_fields, needle):
    w = copy_dut.word
    with _harness(copy_build(32)) as h:
        r = _start(h, [w(1, **word_fields), w(15)])
        assert r.status == "refused"
        assert needle in r.error
        if "len" in word_fields and word_fields["src"] == 0x0FF0:
            assert "crosses a 4 KiB boundary" in r.error and "araddr=0x00000ff0" in r.error
        if word_fields.get("dst") == 0x2FFC:
            assert "crosses a 4 KiB boundary" in r.error and "awaddr=0x00002ffc" in r.error
        with pytest.raises(RuntimeError, match="refused|burst|INCR|width|boundary"):
            h.read_reg(Reg.STATUS)                    # the harness stays stopped


def test_longest_legal_burst_and_boundary_edge(copy_build, copy_dut):
    """256 beats ending exactly at a 4 KiB boundary are legal."""
    w = copy_dut.word
    with _harness(copy_build(32)) as h:
        data = np.arange(1024, dtype=np.uint32).view(np.uint8)[:1024]
        h.write_ddr(0x1C00, data)
        r = _start(h, [w(1, src=0x1C00, dst=0x4C00, len=255), w(15)])
        assert r.status == "irq"
        assert (h.read_ddr(0x4C00, 1024) == data).all()


def test_errors_and_limits(copy_build, copy_dut):
    w = copy_dut.word
    with _harness(copy_build(32), size=1 << 16) as h:
        # a read outside the DDR array answers DECERR; the DUT flags AXI_ERROR
        r = _start(h, [w(1, src=0x20000, dst=0x2000, len=3), w(15)])
        assert r.status == "irq"
        assert h.read_reg(Reg.STATUS) & Status.ERROR
        assert h.read_reg(Reg.ERROR_CODE) == ErrorCode.AXI_ERROR
        assert any("outside the DDR array" in n for n in h.notes())
        # no END within PROG_COUNT
        r = _start(h, [w(2, cycles=1), w(2, cycles=1)], count=2)
        assert r.status == "irq" and h.read_reg(Reg.ERROR_CODE) == ErrorCode.FETCH_RANGE
        assert h.read_reg(Reg.ERROR_INDEX) == 2
        r = _start(h, [w(2), w(9), w(15)])
        assert h.read_reg(Reg.ERROR_CODE) == ErrorCode.UNKNOWN_OPCODE
        assert h.read_reg(Reg.ERROR_INDEX) == 1
        # the cycle limit
        h.write_ddr(PROG, w(2, cycles=60000) + w(15))
        r = h.run(2, max_cycles=500)
        assert r.status == "timeout" and 500 <= r.cycles < 520
        with pytest.raises(Exception, match="outside"):
            h.write_ddr((1 << 16) - 2, b"1234")


def test_build_cache(copy_build, copy_dut, tmp_path):
    b = copy_build(32)
    again = build_model(copy_dut.verilog_text(32), 32)
    assert again.cached and again.library == b.library and again.key == b.key
    assert not list(b.library.parent.parent.glob(f".{b.key[:12]}.*"))   # no temp dirs left


@pytest.mark.slow
@pytest.mark.parametrize("dw", [64, 256])
def test_wide_bus(copy_build, copy_dut, dw):
    """Wider AXI data (uint64 and multi-word Verilator ports) moves the same bytes."""
    w = copy_dut.word
    rng = np.random.default_rng(dw)
    data = rng.integers(0, 256, 2048, dtype=np.uint8)
    with _harness(copy_build(dw), rate=dw / 8) as h:
        h.write_ddr(0x1000, data)
        r = _start(h, [w(1, src=0x1000, dst=0x3000, len=2048 // (dw // 8) - 1), w(15)])
        assert r.status == "irq", r.error
        assert (h.read_ddr(0x3000, 2048) == data).all()
        assert h.read_reg(Reg.END_INDEX) == 1


def test_watch_copies_ddr_when_an_instruction_ends(copy_build, copy_dut):
    """A watch takes the DDR bytes at the end of its instruction, before later writes."""
    w = copy_dut.word
    with _harness(copy_build(32)) as h:
        h.write_ddr(0x1000, bytes(range(64)))
        h.write_ddr(0x1100, bytes(range(100, 164)))
        first = h.watch(0, 0x2000, 64)
        never = h.watch(5, 0x2000, 64)
        r = _start(h, [w(1, src=0x1000, dst=0x2000, len=15), w(2, cycles=3),
                       w(1, src=0x1100, dst=0x2000, len=15), w(15)])
        assert r.status == "irq"
        assert bytes(h.watched(first)) == bytes(range(64))
        assert bytes(h.read_ddr(0x2000, 64)) == bytes(range(100, 164))
        assert h.watched(never) is None
        h.clear_watches()
        with pytest.raises(Exception, match="outside"):
            h.watch(0, (1 << 16) - 8, 64)
