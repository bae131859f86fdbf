"""Packed 4-bit weights (LOAD packed4) in the compiler, the functional and timing simulators:
bit-exact against the reference executor on `zedboard` with 4-bit CONV and FC weights (odd
rows: pad nibbles), the DDR layout, refusals where packing is not allowed, the disassembly,
and the cycle rules (halved bytes, write lanes, odd segments)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from deepfpga.compiler import compile_model
from deepfpga.compiler.disasm import format_instruction
from deepfpga.compiler.layout import WeightStore, pack_nibbles, unpack_nibbles
from deepfpga.errors import InputError
from deepfpga.hw import arch, engines
from deepfpga.hw.config import load_config
from deepfpga.hw.isa import Buffer, Load, Program
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
from deepfpga.quant.qfile import save_qmodel
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import execute
from deepfpga.sim.functional import SimulationError, simulate
from deepfpga.sim.timing import simulate_timing, time_instructions

ZED = load_config("zedboard")


def _net():
    return chain("p4", (3, 12, 12), [
        Conv2d("c1", (), in_channels=3, out_channels=5, kernel=(3, 3), padding=(1, 1)),
        ReLU("r1", ()), MaxPool2d("p1", ()),
        Conv2d("c2", (), in_channels=5, out_channels=6, kernel=(1, 1)), ReLU("r2", ()),
        MaxPool2d("p2", ()),
        Flatten("f", ()), Linear("l1", (), in_features=54, out_features=17), ReLU("r3", ()),
        Linear("l2", (), in_features=17, out_features=10)])


def _model(bw_w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = random_qmodel(_net(), rng, bw_d=8, bw_w=bw_w)
    x = rng.integers(-128, 127, size=(3, 3, 12, 12), endpoint=True)
    return q, x


def test_nibbles_round_trip_low_first_and_padded() -> None:
    rows = np.array([[1, -2, 7], [-8, 0, -1]])
    b = pack_nibbles(rows)
    assert b.tolist() == [[0xE1, 0x07], [0x08, 0x0F]]
    np.testing.assert_array_equal(unpack_nibbles(b, 3), rows)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_nibbles(np.array([[8]]))


def test_packed_model_bit_exact_and_half_the_weight_bytes() -> None:
    q, x = _model(4)
    c = compile_model(q, ZED)
    loads = [i for i in c.program.instructions if isinstance(i, Load) and i.packed4]
    assert {(i.buffer, i.fc_weights) for i in loads} == {(Buffer.WEIGHT, 0), (Buffer.INPUT, 1)}
    assert any(i.length % 2 for i in loads)
    for i in loads:     # each segment ⌈length/2⌉ bytes, segments adjacent
        assert i.stride1 == (i.length + 1) // 2
    ref = execute(q, x, keep="all")
    got = simulate(c, x)
    for name, v in got.layers.items():
        np.testing.assert_array_equal(v, ref.layers[name], err_msg=name)
    assert all(got.saturations[k] == ref.saturations[k] for k in got.saturations)
    # the same model at 8-bit weight elements: about twice the weight bytes
    q8 = dataclasses.replace(q, formats={
        k: dataclasses.replace(f, weight=dataclasses.replace(f.weight, bw=8))
        if f.weight is not None else f for k, f in q.formats.items()})
    c8 = compile_model(q8, ZED)
    wbytes = {r.name: r.size for r in c.manifest.regions if r.kind == "weights"}
    wbytes8 = {r.name: r.size for r in c8.manifest.regions if r.kind == "weights"}
    for name, n in wbytes.items():
        assert n < wbytes8[name] <= 2 * n
    assert "p4" in format_instruction(loads[0])
    # fewer bytes from DDR; zedboard's LOAD is write-bound (B = 8 lanes, 8-byte beats), so the
    # time does not halve (odd rows are even written one by one)
    t, t8 = simulate_timing(c), simulate_timing(c8)
    assert sum(lt.bytes_loaded for lt in t.layers) < sum(lt.bytes_loaded for lt in t8.layers)


def test_not_packed_where_not_allowed() -> None:
    """16-bit weight elements (zc706) or 8-bit weights: stored one per element."""
    q, _ = _model(4)
    for cfg, qq in ((load_config("zc706"), q), (ZED, _model(8)[0])):
        c = compile_model(qq, cfg)
        assert not any(isinstance(i, Load) and i.packed4 for i in c.program.instructions)
    assert WeightStore(1, True).row_bytes(27) == 14 and WeightStore(2, False).row_bytes(27) == 54


@pytest.mark.parametrize("buffer, fc", [(Buffer.BIAS, 0), (Buffer.INPUT, 0), (Buffer.WEIGHT, 1)])
def test_packed_load_refused_into_other_buffers(buffer: int, fc: int) -> None:
    q, x = _model(4)
    c = compile_model(q, ZED)
    ins = list(c.program.instructions)
    k = next(k for k, i in enumerate(ins) if isinstance(i, Load) and i.buffer == buffer
             and i.fc_weights == fc)
    ins[k] = dataclasses.replace(ins[k], packed4=1)
    bad = dataclasses.replace(c, program=Program(ZED.hash(), tuple(ins)))
    with pytest.raises(SimulationError, match="packed4 LOAD into") as e:
        simulate(bad, x)
    assert e.value.index == k
    with pytest.raises(InputError, match=f"instruction {k}: packed4 LOAD"):
        time_instructions(ins, ZED, {})


def test_write_lanes_and_odd_segments() -> None:
    # zedboard: 8-byte beats, B = 8 lanes: 8-bit weights are write-bound already, packed too
    assert arch.packed_load_allowed(ZED, Buffer.INPUT, 1)
    assert not arch.packed_load_allowed(ZED, Buffer.INPUT, 0)
    assert not arch.packed_load_allowed(load_config("zc706"), Buffer.WEIGHT, 0)
    assert int(arch.load_segment_bytes(ZED, Buffer.INPUT, 1, 1, 27)) == 14
    assert int(arch.load_segment_bytes(ZED, Buffer.INPUT, 1, 0, 27)) == 27
    lanes = engines.load_lanes(ZED)
    assert int(engines.load_write_cycles(ZED, 4096)) == 4096 // lanes
    # 5 odd segments of 27: ⌈27/8⌉ = 4 cycles each, not ⌈135/8⌉ = 17
    assert int(arch.load_split_segments(27, 5, 1, 1)) == 5
    assert int(arch.load_split_segments(28, 5, 1, 1)) == 0
    assert int(engines.load_write_cycles(ZED, 135, 5)) == 20
    # zc706-8: B = 16 lanes on 8-byte beats: packing halves a long weight run's cycles
    z8 = load_config("zc706-8")
    n = 1 << 16
    full = arch.run_dma(z8, n, 1, save=False)[1]
    half = arch.run_dma(z8, n // 2, 1, save=False, elements=n)[1]
    assert abs(2 * int(half) - int(full)) <= int(full) * 0.05


def test_simulate_bits_for_an_architecture(capsys, tmp_path) -> None:
    """`simulate --bits 8/4`: 4-bit FC weights (packed on zc706-8, halving the FC loads'
    bytes); refused for a quantized model, which has its own widths, and for a bad preset."""
    from deepfpga.cli import main

    fc_bytes = {}
    for bits in ("8", "8/4"):
        assert main(["simulate", "fmnist-vgg", "--target", "zc706-8", "--bits", bits,
                     "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert bits in d["source"]
        fc_bytes[bits] = sum(lt["bytes_loaded"] for lt in d["timing"]["layers"]
                             if lt["kind"] == "fc")
    assert fc_bytes["8/4"] < 0.55 * fc_bytes["8"]
    assert main(["simulate", "fmnist-vgg", "--target", "zc706-8", "--bits", "4"]) == 2
    assert "--bits '4': expected one of" in capsys.readouterr().err
    q, _ = _model(4)
    path = tmp_path / "q.npz"
    save_qmodel(path, q)
    assert main(["simulate", str(path), "--target", "zedboard", "--bits", "8/4"]) == 2
    assert "quantized model with its own widths" in capsys.readouterr().err
