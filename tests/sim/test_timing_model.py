"""Timing simulator on hand-made programs: cost formulas, token protocol, DDR sharing, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfpga.errors import InputError
from deepfpga.hw import arch, engines
from deepfpga.hw.arch import dma_runs
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.isa import INSTRUCTION_BYTES, Buffer, Calc, CalcKind, End, Load, Program, Save
from deepfpga.sim.timing import DeadlockError, LayerInfo
from deepfpga.sim.timing import time_instructions as simulate_timing


def make_cfg(**changes: object) -> AcceleratorConfig:
    base = dict(
        name="t", device="XC7Z045", clock_mhz=100.0, num_pe=2, convolvers_per_pe=4, kernel=3,
        max_row_width=64, data_bits=16, weight_bits=16, bias_bits=32, acc_bits=48,
        input_buffer_bytes=65536, output_buffer_bytes=65536, weight_buffer_bytes=8192,
        bias_buffer_bytes=1024, fc_buffer_bytes=32768, datain_port_num=8, weightin_port_num=2,
        dataout_port_num=4, ddr_bandwidth_gbps=1.6, burst_overhead_cycles=10,
        max_burst_bytes=256,
    )
    base.update(changes)
    return AcceleratorConfig(**base)  # type: ignore[arg-type]


CFG = make_cfg()   # DDR 16 B/cycle, 8-byte beats, 256-byte bursts, 2 LOAD lanes
S = engines.start_cycles(CFG)            # START → the first dispatch
ISSUE, TAIL = engines.LOAD_ISSUE_CYCLES, engines.LOAD_TAIL_CYCLES


def fetch(words: int, cfg: AcceleratorConfig = CFG) -> int:
    """Read-channel cycles of fetching `words` instruction words (a short segment's first LOAD
    carries them all), less the first burst's latency and first word: START's."""
    word = math.ceil(INSTRUCTION_BYTES // engines.beat_bytes(cfg) * engines.beat_cycles(cfg))
    return max(0, math.floor(engines.fetch_word_cycles(cfg) * words)
               - cfg.burst_overhead_cycles - word)


def load(nbytes: int, elements: int, cfg: AcceleratorConfig = CFG) -> int:
    bursts, beats = engines.run_bursts(cfg, 0, nbytes)
    return int(arch.load_dma_cycles(cfg, bursts, beats, elements))


def save(nbytes: int, elements: int, cfg: AcceleratorConfig = CFG) -> int:
    bursts, beats = engines.run_bursts(cfg, 0, nbytes)
    return int(arch.save_dma_cycles(cfg, bursts, beats, elements))


def calc(ins: Calc, cfg: AcceleratorConfig = CFG) -> int:
    return int(arch.calc_cycles(cfg, ins.kind, ins.ti, ins.to, ins.out_rows, ins.out_cols,
                                ins.stride, ins.pool, ins.accumulate, ins.finalize))


# --- CALC ---------------------------------------------------------------------------------------

def test_pure_compute_program_equals_formula() -> None:
    calcs = [
        Calc(ti=6, to=3, in_rows=8, in_cols=8, out_rows=8, out_cols=8, pad_top=1, pad_left=1),
        Calc(ti=4, to=2, in_rows=9, in_cols=9, out_rows=4, out_cols=4, stride=2, pool=1,
             finalize=1),
        Calc(kind=CalcKind.FC, ti=100, to=5),
    ]
    # the FC block by hand: ⌈100 / 2 banks⌉ cycles per output, setup, drain, issue
    assert calc(calcs[2]) == (engines.SETUP_CYCLES + 5 * 50 + engines.MAC_DRAIN_CYCLES + 1
                              + engines.CALC_ISSUE_CYCLES)
    by_hand = [calc(c) for c in calcs]
    t = simulate_timing([*calcs, End()], CFG)
    assert t.cycles == S + sum(by_hand)          # one CALC engine: strictly in sequence
    assert t.start_cycles.tolist()[:3] == [S, S + by_hand[0], S + by_hand[0] + by_hand[1]]
    assert t.engine_busy_cycles == {"LOAD": 0, "CALC": sum(by_hand), "SAVE": 0}
    assert t.ddr_busy_cycles == 0


# --- DMA ----------------------------------------------------------------------------------------

def test_dma_only_program_equals_burst_model() -> None:
    prog = [
        Load(buffer=Buffer.INPUT, length=100),                  # 200 B: 1 burst, 25 beats
        Load(buffer=Buffer.INPUT, length=40, n1=3, stride1=1000),   # 3 runs of 80 B
        Load(buffer=Buffer.INPUT, length=300),                  # 600 B: 256 + 256 + 88
        Load(buffer=Buffer.WEIGHT, length=32),
        Load(buffer=Buffer.BIAS, length=4),                     # 32-bit biases: 16 B
        Load(buffer=Buffer.INPUT, fc_weights=1, length=64),     # FC weights: weight bytes
        Load(buffer=Buffer.WEIGHT, fc_weights=1, length=20),    # FC vector: data bytes
        Save(length=16, n1=2, stride1=32, n2=2, stride2=500),   # 2 rows of 64 B
        End(),
    ]
    # read channel: bursts × 10 + max(beats, elements / 2 lanes), back to back
    by_hand = [10 + 50, 3 * 10 + 3 * 20, 3 * 10 + 150, 10 + 16, 10 + 2, 10 + 32, 10 + 10]
    assert [load(200, 100), 30 + 3 * 20] == by_hand[:2]
    t = simulate_timing(prog, CFG)
    e = t.end_cycles.tolist()
    # the first LOAD also carries the fetch of all 9 words; each ends TAIL after its last beat
    ends = np.cumsum([S + ISSUE + by_hand[0] + fetch(9), *by_hand[1:]]) + TAIL
    assert e[:7] == ends.tolist()
    # SAVE on the write channel, in parallel: one value per cycle, a stall per burst
    sv = int(arch.save_dma_cycles(CFG, 2, 16, 64))
    assert sv == 64 + 2 * engines.save_stall_cycles(CFG)
    assert e[7] == S + engines.SAVE_ISSUE_CYCLES + sv + engines.SAVE_TAIL_CYCLES
    assert t.cycles == max(e)
    lt = t.layers[0]
    assert lt.transactions == 1 + 3 + 3 + 1 + 1 + 1 + 1 + 2
    assert lt.bytes_loaded == 200 + 240 + 600 + 64 + 16 + 128 + 40
    assert lt.bytes_saved == 128
    assert lt.limit == "bandwidth"


def _runs(*args: int) -> list[tuple[int, int]]:
    """dma_runs as a list of the non-empty (count, bytes) groups."""
    ca, la, cb, lb = (int(v) for v in dma_runs(*args))
    return [(c, n) for c, n in ((ca, la), (cb, lb)) if c]


def test_segments_merge_only_when_contiguous() -> None:
    assert _runs(10, 4, 10, 1, 0) == [(1, 40)]            # rows back to back: one run
    assert _runs(10, 4, 10, 3, 40) == [(1, 120)]          # whole block contiguous
    assert _runs(10, 4, 10, 3, 64) == [(3, 40)]           # one run per row
    assert _runs(10, 4, 12, 3, 64) == [(12, 10)]          # gaps everywhere
    # gaps inside rows, but each row's last segment touches the next row's first
    assert _runs(10, 2, 20, 3, 30) == [(2, 20), (2, 10)]


def _brute_force(cfg: AcceleratorConfig, addr: int, seg: int, n1: int, s1: int, n2: int,
                 s2: int) -> tuple[int, int]:
    """Merge segments in issue order, then cut bursts as the BurstSplitter does: from the
    beat-aligned start, at most burst_limit_bytes, never across 4 KiB. (bursts, beats)."""
    runs: list[list[int]] = []
    for j in range(n2):
        for i in range(n1):
            a = addr + j * s2 + i * s1
            if runs and runs[-1][1] == a:
                runs[-1][1] = a + seg
            else:
                runs.append([a, a + seg])
    bb, lim = engines.beat_bytes(cfg), engines.burst_limit_bytes(cfg)
    bursts = beats = 0
    for a, e in runs:
        while a < e:
            a0 = a - a % bb
            end = min(a0 + lim, (a0 // 4096 + 1) * 4096, e)
            bursts += 1
            beats += -(-(end - a0) // bb)
            a = end
    return bursts, beats


@settings(max_examples=100, deadline=None)
@given(length=st.integers(1, 300), n1=st.integers(1, 6), n2=st.integers(1, 6),
       s1_kind=st.sampled_from(["dense", "gap", "overlap"]),
       s2_kind=st.sampled_from(["dense", "gap", "chain"]), gap=st.integers(1, 50),
       addr=st.integers(0, 9000), buffer=st.sampled_from([Buffer.INPUT, Buffer.WEIGHT,
                                                          Buffer.BIAS]))
def test_dma_bursts_match_brute_force(length: int, n1: int, n2: int, s1_kind: str,
                                      s2_kind: str, gap: int, addr: int, buffer: Buffer) -> None:
    eb = {Buffer.INPUT: 2, Buffer.WEIGHT: 2, Buffer.BIAS: 4}[buffer]
    seg = length * eb
    s1 = {"dense": seg, "gap": seg + gap, "overlap": max(0, seg - gap)}[s1_kind]
    s2 = {"dense": n1 * s1, "gap": n1 * s1 + seg + gap,
          "chain": (n1 - 1) * s1 + seg}[s2_kind]
    t = simulate_timing([Load(buffer=buffer, ddr_addr=addr, length=length, n1=n1, stride1=s1,
                              n2=n2, stride2=s2), End()], CFG)
    bursts, beats = _brute_force(CFG, addr, seg, n1, s1, n2, s2)
    assert t.layers[0].transactions == bursts
    elements = length * n1 * n2
    cyc = int(arch.load_dma_cycles(CFG, bursts, beats, elements))
    assert t.cycles == S + ISSUE + cyc + fetch(2) + TAIL


def test_element_size_follows_the_fc_role_swap() -> None:
    cfg = make_cfg(weight_bits=8, acc_bits=32)      # data 2 B, weights 1 B, bias 4 B
    loads = [Load(buffer=Buffer.INPUT, length=20),                  # feature map: 40 B
             Load(buffer=Buffer.INPUT, fc_weights=1, length=20),    # FC weights: 20 B
             Load(buffer=Buffer.WEIGHT, length=20),                 # kernels: 20 B
             Load(buffer=Buffer.WEIGHT, fc_weights=1, length=20),   # FC vector: 40 B
             Load(buffer=Buffer.BIAS, length=20)]                   # biases: 80 B
    got = [simulate_timing([ld, End()], cfg).layers[0].bytes_loaded for ld in loads]
    assert got == [40, 20, 20, 40, 80]
    t = simulate_timing([*loads, End()], cfg)
    assert t.layers[0].bytes_loaded == sum(got)


def test_beats_slow_down_with_the_ddr() -> None:
    # DDR 4 B/cycle: an 8-byte beat every 2 cycles
    cfg = make_cfg(ddr_bandwidth_gbps=0.4)
    assert engines.beat_cycles(cfg) == 2.0
    t = simulate_timing([Load(length=100), End()], cfg)
    assert t.cycles == engines.start_cycles(cfg) + ISSUE + 10 + 2 * 25 + fetch(2, cfg) + TAIL


# --- engines, tokens, DDR channels ----------------------------------------------------------------

def test_token_serialises_load_calc_save() -> None:
    c = Calc(ti=4, to=2, out_rows=8, out_cols=8, pop_prev=1, push_next=1)
    prog = [Load(length=100, push_next=1), c, Save(length=64, pop_prev=1), End()]
    t = simulate_timing(prog, CFG)
    ld = S + ISSUE + load(200, 100) + fetch(4) + TAIL
    sv = engines.SAVE_ISSUE_CYCLES + save(128, 64) + engines.SAVE_TAIL_CYCLES
    assert t.start_cycles.tolist() == [S, ld, ld + calc(c), ld + calc(c) + sv]
    assert t.cycles == ld + calc(c) + sv


def test_without_tokens_engines_overlap() -> None:
    c = Calc(ti=4, to=2, out_rows=8, out_cols=8)
    t = simulate_timing([Load(length=100), c, End()], CFG)
    assert t.start_cycles.tolist()[:2] == [S, S]
    assert t.cycles == S + max(calc(c), ISSUE + load(200, 100) + fetch(3) + TAIL)


@pytest.mark.parametrize("load_len,rows", [(100, 8), (800, 4), (300, 6)])
def test_double_buffering_overlaps_load_and_compute(load_len: int, rows: int) -> None:
    """Two banks: load k waits until calc k−2 freed its bank; each load waiting for the
    previous calc is slower."""
    n = 6
    double = []
    single = []
    for k in range(n):
        double += [Load(length=load_len, pop_next=int(k >= 2), push_next=1),
                   Calc(ti=4, to=2, out_rows=rows, out_cols=rows, pop_prev=1, push_prev=1)]
        single += [Load(length=load_len, pop_next=int(k >= 1), push_next=1),
                   Calc(ti=4, to=2, out_rows=rows, out_cols=rows, pop_prev=1, push_prev=1)]
    t2 = simulate_timing([*double, End()], CFG)
    t1 = simulate_timing([*single, End()], CFG)
    C = calc(double[1])
    L = load(2 * load_len, load_len)
    assert t2.cycles >= S + n * C and t2.cycles >= S + n * L
    assert t1.cycles >= S + n * (L + C)
    assert t2.cycles < t1.cycles


def test_load_and_save_use_their_own_channels() -> None:
    # No tokens: both ready at once; the read and the write channel work in parallel.
    t = simulate_timing([Load(length=100), Save(length=64), End()], CFG)
    s, e = t.start_cycles.tolist(), t.end_cycles.tolist()
    assert s[:2] == [S, S]
    assert e[0] == S + ISSUE + load(200, 100) + fetch(3) + TAIL
    assert e[1] == S + engines.SAVE_ISSUE_CYCLES + save(128, 64) + engines.SAVE_TAIL_CYCLES
    assert t.ddr_busy_cycles == load(200, 100) + fetch(3) + save(128, 64)


def test_consecutive_loads_queue_on_the_read_channel() -> None:
    """The next LOAD takes its tokens while the previous one's bursts are in flight; its bursts
    follow them on the channel without a gap."""
    t = simulate_timing([Load(length=100), Load(length=100), End()], CFG)
    s, e = t.start_cycles.tolist(), t.end_cycles.tolist()
    assert s[1] < e[0]
    assert e[1] - e[0] == load(200, 100)


def test_each_segment_fetches_its_words_again() -> None:
    """START refills the fetch from the segment's first word: a later segment's first LOAD
    carries that segment's fetch (here 3 words), not the program's."""
    seg = [Load(length=100), Load(length=100), End()]
    t = simulate_timing([Load(length=100), End(), *seg], CFG)
    e = t.end_cycles.tolist()
    t0 = e[1]
    assert e[2] - t0 == S + ISSUE + load(200, 100) + fetch(3) + TAIL
    assert e[3] - e[2] == load(200, 100)
    assert e[:2] == [S + ISSUE + load(200, 100) + fetch(2) + TAIL] * 2
    assert fetch(3) > 0


def test_pushes_never_popped_are_reported() -> None:
    t = simulate_timing([Load(length=4, push_next=1), Load(length=4, push_next=1), End()], CFG)
    assert t.unconsumed_tokens == {"LOAD→CALC": 2}


def test_missing_push_is_a_deadlock_not_a_hang() -> None:
    with pytest.raises(DeadlockError, match=r"CALC instruction 0 waits for LOAD→CALC token #1"):
        simulate_timing([Calc(pop_prev=1), End()], CFG)


def test_circular_wait_is_a_deadlock() -> None:
    prog = [Load(length=4, pop_next=1, push_next=1), Calc(pop_prev=1, push_prev=1), End()]
    with pytest.raises(DeadlockError) as e:
        simulate_timing(prog, CFG)
    msg = str(e.value)
    assert "LOAD instruction 0 waits for CALC→LOAD" in msg
    assert "CALC instruction 1 waits for LOAD→CALC" in msg


def test_deadlock_after_progress_names_the_token_number() -> None:
    prog = [Load(length=4, push_next=1), Calc(pop_prev=1), Calc(pop_prev=1), End()]
    with pytest.raises(DeadlockError, match=r"instruction 2 waits for LOAD→CALC token #2 but"
                                            r" only 1"):
        simulate_timing(prog, CFG)


@pytest.mark.parametrize("ins,flag", [(Load(pop_prev=1), "pop_prev"),
                                      (Save(push_next=1), "push_next"),
                                      (End(push_prev=1), "push_prev")])
def test_flag_without_neighbour_refused(ins: object, flag: str) -> None:
    prog = [ins] if isinstance(ins, End) else [ins, End()]
    with pytest.raises(InputError, match=rf"instruction 0 .*{flag}=1"):
        simulate_timing(prog, CFG)


def test_program_shape_refused() -> None:
    with pytest.raises(InputError, match="does not end with END"):
        simulate_timing([Load()], CFG)
    with pytest.raises(InputError, match="kind 3"):
        simulate_timing([Calc(kind=3), End()], CFG)
    with pytest.raises(InputError, match="LOAD buffer 3"):
        simulate_timing([Load(buffer=3), End()], CFG)
    other = make_cfg(num_pe=4)
    with pytest.raises(InputError, match="config hash mismatch"):
        simulate_timing(Program(other.hash(), (End(),)), CFG)


def test_end_closes_a_segment() -> None:
    """Everything before an END completes before anything after it starts."""
    prog = [Load(length=100), Calc(ti=4, to=2, out_rows=8, out_cols=8), End(),
            Load(length=100), End()]
    t = simulate_timing(prog, CFG)
    s, e = t.start_cycles.tolist(), t.end_cycles.tolist()
    assert s[:2] == [S, S] and s[2] == max(e[:2])         # END: both engines drained
    assert s[3] == s[2] + S                              # the next segment starts afresh
    assert t.cycles == e[3] == s[4]


def test_no_token_crosses_an_end() -> None:
    prog = [Load(length=4, push_next=1), End(), Calc(pop_prev=1), End()]
    with pytest.raises(DeadlockError, match="CALC instruction 2 waits for LOAD→CALC token #1"):
        simulate_timing(prog, CFG)
    t = simulate_timing([Load(length=4, push_next=1), End(), Load(length=4), End()], CFG)
    assert t.unconsumed_tokens == {"LOAD→CALC": 1}


def test_nop_calc_relays_a_dependency_in_one_cycle() -> None:
    # SAVE → (NOP CALC) → LOAD: the LOAD must not start before the SAVE ends
    prog = [Calc(ti=4, to=2, out_rows=8, out_cols=8, push_next=1),
            Save(length=64, pop_prev=1, push_prev=1),
            Calc(ti=0, to=0, pop_next=1, push_prev=1),
            Load(length=100, pop_next=1), End()]
    t = simulate_timing(prog, CFG)
    s, e = t.start_cycles.tolist(), t.end_cycles.tolist()
    assert e[2] - s[2] == engines.NOP_CYCLES + engines.CALC_ISSUE_CYCLES
    assert s[2] == e[1] and s[3] == e[2]
    assert t.layers[0].ops == 2 * 4 * 2 * 8 * 8 * 9      # the NOP does no work


def test_program_object_accepted() -> None:
    t = simulate_timing(Program(CFG.hash(), (Load(length=100), End())), CFG)
    assert t.cycles == simulate_timing([Load(length=100), End()], CFG).cycles > 0


# --- per-layer results --------------------------------------------------------------------------

def _two_layer_program() -> list:
    prog = []
    for layer, (ti, to) in enumerate([(4, 2), (8, 4)]):
        for k in range(3):
            prog += [Load(length=200, pop_next=int(k >= 2), push_next=1, layer=layer),
                     Calc(ti=ti, to=to, out_rows=8, out_cols=8, pop_prev=1, push_prev=1,
                          push_next=1, layer=layer),
                     Save(length=128, pop_prev=1, layer=layer)]
    prog += [Calc(kind=CalcKind.FC, ti=300, to=10, layer=2), End()]
    return prog


def test_per_layer_accounting() -> None:
    prog = _two_layer_program()
    t = simulate_timing(prog, CFG)
    assert [lt.index for lt in t.layers] == [0, 1, 2]
    assert [lt.kind for lt in t.layers] == ["conv", "conv", "fc"]
    assert [lt.instructions for lt in t.layers] == [9, 9, 1]
    # exclusive times add up to the frame
    assert sum(lt.time_s for lt in t.layers) == pytest.approx(t.seconds)
    assert t.cycles == int(t.end_cycles.max())
    for lt in t.layers:
        assert lt.span_s >= lt.bound_s * (1 - 1e-12)
        # (the first layer's exclusive time also holds the START latency)
        assert lt.span_s + S / (CFG.clock_mhz * 1e6) >= lt.time_s - 1e-15
    l0 = t.layers[0]
    assert l0.ops == 3 * 2 * 4 * 2 * 8 * 8 * 9          # instruction MACs × 2
    assert l0.bytes_loaded == 3 * 400 and l0.bytes_saved == 3 * 256
    assert l0.mean_burst_bytes == pytest.approx((1200 + 768) / l0.transactions)
    assert l0.gops == pytest.approx(l0.ops / l0.time_s / 1e9)
    assert l0.mult_util == pytest.approx(l0.gops / CFG.peak_gops)
    assert t.layers[2].ops == 2 * 300 * 10
    assert t.ops == sum(lt.ops for lt in t.layers)
    assert t.gops == pytest.approx(t.ops / t.seconds / 1e9)
    conv_t = t.layers[0].time_s + t.layers[1].time_s
    assert t.conv_gops == pytest.approx((t.layers[0].ops + t.layers[1].ops) / conv_t / 1e9)
    assert t.fps == pytest.approx(1 / t.seconds)
    assert t.ops_source == "instructions"


def test_layer_names_and_operations() -> None:
    info = {0: LayerInfo("conv1", "conv", 1000), 1: LayerInfo("conv2", "conv", 1400),
            2: LayerInfo("fc3", "fc", 6000)}
    t = simulate_timing(_two_layer_program(), CFG, info, ("prob",))
    assert [lt.name for lt in t.layers] == ["conv1", "conv2", "fc3"]
    assert [lt.ops for lt in t.layers] == [1000, 1400, 6000]
    assert t.host_layers == ("prob",)
    assert t.ops_source == "manifest"
    d = t.to_dict()
    assert d["layers"][1]["name"] == "conv2" and d["fps"] == t.fps
    # without the compiler's layer table, operations come from the CALCs
    assert simulate_timing(_two_layer_program(), CFG).ops_source == "instructions"


def test_empty_program_is_valid_json() -> None:
    import json

    t = simulate_timing([End()], CFG, {}, ("prob",))
    assert t.cycles == 0 and t.fps is None and t.layers == () and t.gops == 0.0
    d = json.loads(json.dumps(t.to_dict(), allow_nan=False))
    assert d["host_layers"] == ["prob"] and d["fps"] is None
