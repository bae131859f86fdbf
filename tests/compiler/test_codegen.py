"""compiler.codegen: the instructions of one stage under its tiling."""

from __future__ import annotations

import pytest

from deepfpga.compiler import codegen
from deepfpga.compiler.builder import Builder
from deepfpga.compiler.codegen import Placement, emit_conv, emit_fc
from deepfpga.compiler.compile import architecture_model
from deepfpga.compiler.mapping import map_network
from deepfpga.compiler.tiling import Tiling, check_tiling
from deepfpga.hw.arch import DMA_COUNT_MAX
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Buffer, Calc, End, Load, Save
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.sim.timing import time_instructions

TINY = load_config("tiny")
PL = Placement("t:in", 0, "t:out", 1 << 16, "w:s", 1 << 17, "b:s", 1 << 18)


def _stages():
    g = chain("n", (5, 12, 12), [
        Conv2d("c", (), in_channels=5, out_channels=6, kernel=(5, 5), padding=(2, 2)),
        ReLU("r", ()), MaxPool2d("p", ()), Flatten("f", ()),
        Linear("l", (), in_features=6 * 6 * 6, out_features=10)])
    return map_network(architecture_model(g, TINY), TINY).stages


def _emit(stage, t: Tiling) -> list:
    assert not check_tiling(stage, t, TINY)
    b = Builder()
    (emit_conv if stage.kind == "conv" else emit_fc)(b, stage, t, TINY, PL)
    b.end()
    return b.instructions()


def test_conv_tiles_accumulate_then_finalize_once() -> None:
    conv = _stages()[0]
    t = Tiling(6, 12, 3, 4, "spatial", 0)
    ins = _emit(conv, t)
    calcs = [i for i in ins if isinstance(i, Calc) and i.to]
    n_tiles, n_in, n_out = 2, 2, 2          # 12/6 row tiles, 5/3 input groups, 6/4 out groups
    assert len(calcs) == n_tiles * n_out * n_in * conv.nsub
    chain_len = n_in * conv.nsub
    for k in range(0, len(calcs), chain_len):
        tile = calcs[k:k + chain_len]
        assert [c.accumulate for c in tile] == [0] + [1] * (chain_len - 1)
        assert [c.finalize for c in tile] == [0] * (chain_len - 1) + [1]
        assert tile[-1].pool == 1 and tile[-1].relu == 1
        # the 2×2 sub-kernels of the 5×5 kernel, at offsets 0 and 3
        assert {(c.koff_y, c.koff_x) for c in tile} == {(0, 0), (0, 3), (3, 0), (3, 3)}
    assert all(c.ti <= t.ti and c.to <= t.to and c.stride == 1 for c in calcs)
    saves = [i for i in ins if isinstance(i, Save)]
    assert len(saves) == n_tiles * n_out
    assert time_instructions(ins, TINY).cycles > 0


def test_grouped_saves_write_long_runs() -> None:
    conv = _stages()[0]
    per_tile = [i for i in _emit(conv, Tiling(4, 12, 5, 6, "spatial", 0)) if isinstance(i, Save)]
    grouped = [i for i in _emit(conv, Tiling(4, 12, 5, 6, "spatial", 3)) if isinstance(i, Save)]
    assert len(per_tile) == 3 and len(grouped) == 1
    # the whole pooled map of every channel in one contiguous run
    (g,) = grouped
    assert g.length * g.n1 * g.n2 == 6 * 6 * 6 and (g.n1 == 1 or g.stride1 == g.length * 2)


def test_fc_uses_the_role_swap() -> None:
    fc = _stages()[1]
    ins = _emit(fc, Tiling(1, 1, 72, 5, "out", 1))
    loads = [i for i in ins if isinstance(i, Load)]
    blocks = [i for i in loads if i.buffer == Buffer.INPUT]
    vectors = [i for i in loads if i.buffer == Buffer.WEIGHT]
    assert blocks and all(i.fc_weights for i in blocks)      # weight blocks → INPUT
    assert vectors and all(i.fc_weights for i in vectors)    # the data vector → WEIGHT
    assert sum(i.length * i.n1 * i.n2 for i in blocks) == 10 * 216
    assert isinstance(ins[-1], End)


def test_long_runs_are_cut_into_rows() -> None:
    assert codegen._segments(3, 100, 1000, 10, 2) == {"length": 100, "n1": 3, "stride1": 1000,
                                                      "n2": 1, "stride2": 0}
    long = codegen._segments(3, 10 * DMA_COUNT_MAX, 1 << 20, DMA_COUNT_MAX, 2)
    assert long == {"length": DMA_COUNT_MAX, "n1": 10, "stride1": 2 * DMA_COUNT_MAX, "n2": 3,
                    "stride2": 1 << 20}


def test_two_bank_lru() -> None:
    lru = codegen._LRU2()
    assert lru.get("a") == (0, False) and lru.get("b") == (1, False)
    assert lru.get("a") == (0, True)
    assert lru.get("c") == (1, False)          # b was least recently used
    assert lru.get("b") == (0, False)


@pytest.mark.parametrize("order", ["spatial", "weights"])
def test_both_loop_orders_produce_the_same_work(order: str) -> None:
    conv = _stages()[0]
    ins = _emit(conv, Tiling(6, 6, 5, 3, order, 0))
    calcs = [i for i in ins if isinstance(i, Calc) and i.to]
    assert len(calcs) == 4 * 2 * conv.nsub
    assert sum(i.length * i.n1 * i.n2 for i in ins if isinstance(i, Save)) == 6 * 6 * 6
