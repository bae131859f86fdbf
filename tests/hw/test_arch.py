"""deepfpga.hw.arch: the accelerator's rules, each checked against the encoding table or by hand."""

from __future__ import annotations

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.hw import arch, engines
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Buffer, Calc, CalcKind, Load, Save

CFG = load_config("tiny")


def test_field_limits_come_from_the_encoding_table() -> None:
    widths = {name: (bits, signed) for name, bits, signed in Calc.all_fields()}
    assert arch.CALC_DIM_MAX == (1 << widths["ti"][0]) - 1 == 4095
    assert (1 << dict((n, b) for n, b, _ in Load.all_fields())["length"]) - 1 == arch.DMA_COUNT_MAX
    assert 1 << widths["ob_addr"][0] == arch.OUTPUT_ENTRIES_MAX
    assert arch.DDR_BYTES_MAX == 1 << 32
    assert arch.DATA_SHIFT_RANGE == (-128, 127) and widths["data_shift"] == (8, True)
    assert arch.BIAS_SHIFT_RANGE == (0, 63)
    assert (arch.STRIDE_MAX, arch.PAD_MAX, arch.KOFF_MAX) == (7, 7, 15)
    # offsets 0, 3, …, 15 fit the 4-bit koff field: 6 sub-kernels per axis
    assert 3 * (arch.MAX_SUB_KERNELS - 1) <= arch.KOFF_MAX < 3 * arch.MAX_SUB_KERNELS
    with pytest.raises(KeyError):
        Calc.max("nonexistent")


def test_config_limits_are_the_isa_fields() -> None:
    with pytest.raises(InputError, match="'max_pad' must be an integer 0..7"):
        CFG.replace(max_pad=8)
    with pytest.raises(InputError, match="'max_stride' must be an integer 1..7"):
        CFG.replace(max_stride=0)


def test_max_stride_is_not_part_of_the_program_hash() -> None:
    # it only bounds what the compiler accepts; the programs it emits do not depend on it
    assert CFG.replace(max_stride=2).hash() == CFG.hash()
    assert CFG.replace(max_pad=2).hash() != CFG.hash()


def test_element_bytes_follow_buffer_and_role() -> None:
    cfg = load_config("zc706-paper").replace(data_bits=8, weight_bits=16, bias_bits=32,
                                             acc_bits=48)
    got = arch.load_element_bytes(cfg, [Buffer.INPUT, Buffer.INPUT, Buffer.WEIGHT,
                                        Buffer.WEIGHT, Buffer.BIAS], [0, 1, 0, 1, 0]).tolist()
    # FC role swap (§7.3): weight blocks into INPUT, the data vector into WEIGHT
    assert got == [1, 2, 2, 1, 4]
    assert arch.save_element_bytes(cfg) == 1


def test_run_bursts_by_hand() -> None:
    # tiny: 4-byte beats, bursts of at most 256 bytes (max_burst_bytes), cut at 4 KiB
    got = engines.run_bursts(CFG, [0, 2, 4094, 0, 3900, 8], [150, 150, 8, 600, 600, 0])
    assert got[0].tolist() == [1, 1, 2, 3, 3, 0]
    assert got[1].tolist() == [38, 38, 3, 150, 150, 0]   # from the beat-aligned start


def test_dma_bursts_merge_contiguous_segments() -> None:
    b, tx, beats = arch.dma_bursts(CFG, [0, 0], [40, 40], [4, 4], [40, 64], [1, 1], [0, 0])
    assert b.tolist() == [160, 160]
    assert tx.tolist() == [1, 4]                 # one run vs four separate segments
    assert beats.tolist() == [40, 40]


def test_dma_cycles_by_hand() -> None:
    # tiny: 10 cycles per burst, one 4-byte beat per cycle (DDR 8 B/cycle), 2 LOAD lanes
    assert arch.load_dma_cycles(CFG, 1, 38, 75).tolist() == 10 + 38
    assert arch.load_dma_cycles(CFG, 1, 38, 100).tolist() == 10 + 50     # the lanes are slower
    # SAVE: one value per cycle; each burst stalls it 10 − (2·4/2 + 2) + 1 = 5 cycles
    assert engines.save_stall_cycles(CFG) == 5
    assert arch.save_dma_cycles(CFG, 7, 392, 784).tolist() == 784 + 7 * 5


def test_calc_cycles_by_hand() -> None:
    # tiny: B = 2 banks, a grid of 2 channels × 2 pixels, deep staging
    assert (engines.bank_count(CFG), engines.grid_channels(CFG)) == (2, 2)
    # CONV ti 2, to 3, 4×4 outputs, stride 1, finalizing: 2 channel groups, 8 blocks of 2 pixels;
    # staging: 18 terms per channel, B = 2 per cycle
    grid = 3 * 9 + 8 * (2 + 2 * (18 + 3) + 3)
    # finalize: 16 values per channel, B = 2 a cycle, then the stream's latency
    conv = engines.SETUP_CYCLES + grid + engines.MAC_DRAIN_CYCLES + 3 * 8 + 12 + 1
    fc = engines.SETUP_CYCLES + 3 * 3 + engines.MAC_DRAIN_CYCLES + 1     # ⌈5 / B⌉ per output
    got = arch.calc_cycles(CFG, [CalcKind.CONV, CalcKind.FC, CalcKind.CONV], [2, 5, 0],
                           [3, 3, 5], [4, 1, 4], [4, 1, 4], [1, 1, 1], [0, 0, 0], [0, 1, 0],
                           [1, 0, 0]).tolist()
    issue = engines.CALC_ISSUE_CYCLES
    assert got == [conv + issue, fc + issue, engines.NOP_CYCLES + issue]
    # accumulating: the old sums cost one cycle per channel and block instead of one per group
    acc = arch.calc_cycles(CFG, CalcKind.CONV, 2, 3, 4, 4, 1, 0, 1, 1)
    assert int(acc) == conv + issue + 8 * (3 - 2)


def test_staging_takes_one_wide_weight_read_per_cycle() -> None:
    # zc706: B = 16; the 1,365-word staging in 16 banks of 86 rows (term t: bank t mod 16)
    cfg = load_config("zc706")
    assert engines.staging_banks(cfg) == engines.bank_count(cfg) == 16
    assert (engines.staging_depth(cfg), engines.staging_rows(cfg)) == (1365, 86)
    # a channel's 9·ti terms: full reads of 16, the last one partial
    assert engines.staging_cycles(cfg, [9, 16, 17, 576, 4608]).tolist() == [1, 1, 2, 36, 288]


def test_token_channels_are_one_table() -> None:
    assert arch.CHANNELS == ("LOAD→CALC", "CALC→LOAD", "CALC→SAVE", "SAVE→CALC")
    assert arch.flag_channels(arch.LOAD) == {"push_next": (0, False), "pop_next": (1, True)}
    assert arch.flag_channels(arch.SAVE) == {"pop_prev": (2, True), "push_prev": (3, False)}
    calc = arch.flag_channels(arch.CALC)
    assert set(calc) == set(arch.FLAGS)
    for (p, c), (push, pop) in arch.CHANNEL_FLAGS.items():
        ch = arch.CHANNELS.index(f"{arch.ENGINES[p]}→{arch.ENGINES[c]}")
        assert arch.flag_channels(p)[push] == (ch, False)
        assert arch.flag_channels(c)[pop] == (ch, True)
        assert arch.CONSUMER[ch] == c
    assert {Load: arch.LOAD, Calc: arch.CALC, Save: arch.SAVE} == arch.ENGINE_OF


@pytest.mark.parametrize(("kernel", "stride", "padding", "message"), [
    ((3, 3), (1, 2), (0, 0), "not square"),
    ((3, 3), (5, 5), (0, 0), r"layer 'x': stride 5 not supported by tiny \(max_stride 4\)"),
    ((7, 7), (1, 1), (4, 4), r"padding \(4, 4\) exceeds the padder of tiny \(max_pad 3\)"),
    ((3, 3), (1, 1), (3, 3), "not smaller than the kernel"),
    ((19, 19), (1, 1), (0, 0), "larger than 18×18"),
])
def test_check_conv_names_layer_and_limit(kernel, stride, padding, message) -> None:
    with pytest.raises(InputError, match=message):
        arch.check_conv("x", kernel, stride, padding, CFG)


def test_check_conv_accepts_what_the_config_allows() -> None:
    arch.check_conv("x", (18, 18), (4, 4), (3, 3), CFG)
    assert list(arch.supported_strides(CFG)) == [1, 2, 3, 4]


def test_check_shifts() -> None:
    arch.check_shifts("x", 63, -128)
    arch.check_shifts("x", None, 127)
    with pytest.raises(InputError, match="bias shift 64 outside 0..63"):
        arch.check_shifts("x", 64, 0)
    with pytest.raises(InputError, match="data shift 128 outside -128..127"):
        arch.check_shifts("x", 0, 128)


def test_rtl_gaps_are_listed_in_one_place() -> None:
    assert arch.rtl_gaps(CFG) == []          # the presets run on the RTL as they are
    assert arch.rtl_gaps(CFG.replace(max_stride=arch.STRIDE_MAX)) == []
    gaps = arch.rtl_gaps(CFG.replace(max_pad=5))
    assert len(gaps) == 1 and "max_pad 5 > 3" in gaps[0]
    assert {k for k, _, _ in arch.RTL_GAPS} == {"max_stride", "max_pad"}


def test_stays_float() -> None:
    from deepfpga.ir import LRN, ReLU, Softmax

    assert arch.stays_float(Softmax("s", ("x",)), ("s",))
    assert not arch.stays_float(Softmax("s", ("x",)), ("t",))
    assert not arch.stays_float(ReLU("r", ("x",)), ("r",))
    assert arch.stays_float(LRN("n", ("x",)), ("n",))


def test_vector_and_scalar_calls_agree() -> None:
    rng = np.random.default_rng(0)
    ti, to = rng.integers(1, 300, 50), rng.integers(1, 300, 50)
    rows, cols = rng.integers(1, 30, 50), rng.integers(1, 30, 50)
    vec = arch.calc_cycles(CFG, CalcKind.CONV, ti, to, rows, cols, 2, 1, 1, 1)
    one = [int(arch.calc_cycles(CFG, CalcKind.CONV, int(a), int(b), int(r), int(c), 2, 1, 1, 1))
           for a, b, r, c in zip(ti, to, rows, cols, strict=True)]
    assert vec.tolist() == one


def test_finalize_takes_b_values_of_one_channel_per_cycle() -> None:
    # tiny: B = 2. Without pool a channel's 5×3 = 15 values make 8 chunks (the last partial);
    # with pool each row is cut on its own: 5 rows × ⌈3 / 2⌉ = 10 chunks per channel
    assert engines.bank_count(CFG) == 2
    got = engines.fin_chunks(CFG, [4, 4, 1], [5, 5, 1], [3, 3, 1], [0, 1, 0]).tolist()
    assert got == [4 * 8, 4 * 10, 1]
