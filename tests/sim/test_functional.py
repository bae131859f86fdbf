"""Functional simulator == reference executor, bit for bit, layer by layer; and its refusals."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from deepfpga.compiler import Tiling, compile_model
from deepfpga.compiler.artifact import AccelStep
from deepfpga.compiler.compile import plan
from deepfpga.compiler.mapping import ModelInput, Stage
from deepfpga.compiler.tiling import check_tiling
from deepfpga.errors import InputError
from deepfpga.hw.arch import CALC_DIM_MAX
from deepfpga.hw.config import PRESETS, load_config
from deepfpga.hw.isa import Calc, CalcKind, End, Load, Program, Save, encode_program
from deepfpga.ir import LRN, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Softmax, chain
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import execute
from deepfpga.sim.functional import SimulationError, simulate, simulate_program

# --- random networks and tilings ----------------------------------------------------------------

def random_network(rng: np.random.Generator, host_layers: bool = True):
    """A random chain: convs (K 1–7, stride 1–3, padding, ReLU, fused 2×2 pools, sometimes a
    host max-pool or LRN), flatten, FC layers (sometimes an SVD-like pair), maybe softmax."""
    c = int(rng.integers(1, 6))
    h = int(rng.integers(6, 19))
    w = int(rng.integers(6, 19))
    shape = (c, h, w)
    layers = []
    for k in range(int(rng.integers(1, 4))):
        kk = int(rng.integers(1, 8))
        kk = min(kk, h, w)
        s = int(rng.integers(1, 4))
        p = int(rng.integers(0, min(kk - 1, 3) + 1))
        ho, wo = (h + 2 * p - kk) // s + 1, (w + 2 * p - kk) // s + 1
        if ho < 1 or wo < 1:
            break
        n = int(rng.integers(1, 9))
        layers.append(Conv2d(f"c{k}", (), in_channels=c, out_channels=n, kernel=(kk, kk),
                             stride=(s, s), padding=(p, p), bias=bool(rng.random() < 0.8)))
        c, h, w = n, ho, wo
        if rng.random() < 0.7:
            layers.append(ReLU(f"r{k}", ()))
        if h >= 2 and w >= 2 and rng.random() < 0.5:
            layers.append(MaxPool2d(f"p{k}", ()))
            h, w = h // 2, w // 2
        elif host_layers and h >= 3 and w >= 3 and rng.random() < 0.2:
            layers.append(MaxPool2d(f"hp{k}", (), kernel=(3, 3), stride=(2, 2)))
            h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
        if host_layers and rng.random() < 0.15:
            layers.append(LRN(f"n{k}", (), size=3))
    layers.append(Flatten("flat", ()))
    f = c * h * w
    for k in range(int(rng.integers(1, 3))):
        if rng.random() < 0.3:    # SVD-like pair: no bias, no ReLU between
            r = int(rng.integers(1, 6))
            layers.append(Linear(f"fa{k}", (), in_features=f, out_features=r, bias=False))
            f = r
        n = int(rng.integers(1, 40))
        layers.append(Linear(f"f{k}", (), in_features=f, out_features=n))
        f = n
        if rng.random() < 0.5:
            layers.append(ReLU(f"fr{k}", ()))
    if host_layers and rng.random() < 0.3:
        layers.append(Softmax("prob", ()))
    return chain("rand", shape, layers)


def random_tiling(stage: Stage, cfg, rng: np.random.Generator) -> Tiling | None:
    """A random feasible tiling (small sizes favoured), or None if none was found."""

    def pick(n: int) -> int:
        return int(min(n, max(1, math.ceil(n * rng.random() ** 2))))

    for _ in range(300):
        if stage.kind == "fc":
            to = pick(stage.out_channels)
            n_o = -(-stage.out_channels // to)
            t = Tiling(1, 1, pick(min(stage.in_channels, CALC_DIM_MAX)), to,
                       str(rng.choice(["out", "in"])), int(rng.integers(1, n_o + 1)))
        else:
            ho, wo = stage.conv_out
            tr, tc = pick(ho), pick(wo)
            if stage.pool:
                tr = min(ho, tr + tr % 2) if tr < ho else tr
                tc = min(wo, tc + tc % 2) if tc < wo else tc
            group = 0
            if tc >= wo and rng.random() < 0.5:
                group = int(rng.integers(1, -(-ho // tr) + 1))
            t = Tiling(tr, tc, pick(stage.in_channels), pick(stage.out_channels),
                       str(rng.choice(["spatial", "weights"])), group)
        if not check_tiling(stage, t, cfg):
            return t
    return None


def _compare(q, compiled, cfg, x):
    ref = execute(q, x[None], keep="all")
    sim = simulate(compiled, x)
    assert sim.layers, "nothing was compared"
    for name, got in sim.layers.items():
        want = ref.layers[name][0]
        if np.issubdtype(np.asarray(got).dtype, np.floating):
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert np.array_equal(got, want), f"layer {name} differs"
    for name, got in sim.outputs.items():
        np.testing.assert_array_equal(got, ref.outputs[name][0], err_msg=name)
    for st in compiled.manifest.layers:
        assert sim.saturations[st.name] == ref.saturations[st.name], st.name
    return sim


CASES = [(preset, seed) for preset in PRESETS for seed in range(5)]


@pytest.mark.parametrize(("preset", "seed"), CASES)
def test_random_networks_bit_exact_with_forced_tilings(preset: str, seed: int) -> None:
    cfg = load_config(preset)
    rng = np.random.default_rng(1000 * PRESETS.index(preset) + seed)
    g = random_network(rng)
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits, jitter=1)
    model = ModelInput(q.graph, q.input_format, q.formats, q.weights)
    stages = plan(model, cfg).mapping.stages
    force = {}
    for st in stages:
        t = random_tiling(st, cfg, rng)
        if t is not None:
            force[st.name] = t
    compiled = compile_model(q, cfg, force=force)
    for st in compiled.manifest.layers:
        if st.name in force:
            assert st.tiling == force[st.name]
    fmt = q.input_format
    x = rng.integers(fmt.qmin, fmt.qmax, size=g.input_shape, endpoint=True)
    _compare(q, compiled, cfg, x)


@pytest.mark.parametrize("preset", PRESETS)
def test_random_networks_with_chosen_tilings(preset: str) -> None:
    cfg = load_config(preset)
    rng = np.random.default_rng(77 + PRESETS.index(preset))
    for _ in range(2):
        g = random_network(rng)
        q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits)
        compiled = compile_model(q, cfg)
        x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=g.input_shape,
                         endpoint=True)
        _compare(q, compiled, cfg, x)


def random_pointwise_network(rng: np.random.Generator):
    """A chain of 1×1 convolutions (stride 1 or 2, padding 0; up to 40 channels; ReLU and fused
    pools sometimes), flatten and an FC layer."""
    c = int(rng.integers(1, 41))
    h, w = int(rng.integers(3, 15)), int(rng.integers(3, 15))
    shape = (c, h, w)
    layers = []
    for k in range(int(rng.integers(1, 4))):
        s = int(rng.choice([1, 2]))
        n = int(rng.integers(1, 41))
        layers.append(Conv2d(f"c{k}", (), in_channels=c, out_channels=n, kernel=(1, 1),
                             stride=(s, s), bias=bool(rng.random() < 0.7)))
        c, h, w = n, (h - 1) // s + 1, (w - 1) // s + 1
        if rng.random() < 0.6:
            layers.append(ReLU(f"r{k}", ()))
        if h >= 2 and w >= 2 and rng.random() < 0.3:
            layers.append(MaxPool2d(f"p{k}", ()))
            h, w = h // 2, w // 2
    layers += [Flatten("flat", ()), Linear("f", (), in_features=c * h * w, out_features=7)]
    return chain("pw", shape, layers)


@pytest.mark.parametrize(("preset", "seed"), [(p, s) for p in PRESETS for s in range(3)])
def test_random_pointwise_networks_bit_exact(preset: str, seed: int) -> None:
    """1×1 convolutions run as CONV1 CALCs (one term per input channel, weights dense (to, ti)
    in DDR), under random and chosen tilings, bit-exact against the reference."""
    cfg = load_config(preset)
    rng = np.random.default_rng(500 + 10 * PRESETS.index(preset) + seed)
    g = random_pointwise_network(rng)
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits, jitter=1)
    model = ModelInput(q.graph, q.input_format, q.formats, q.weights)
    stages = plan(model, cfg).mapping.stages
    force = {st.name: t for st in stages if (t := random_tiling(st, cfg, rng)) is not None}
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=g.input_shape,
                     endpoint=True)
    for forced in (force, {}):
        compiled = compile_model(q, cfg, force=forced)
        calcs = [i for i in compiled.program.instructions if isinstance(i, Calc) and i.to]
        convs = {st.name for st in stages if st.kind == "conv"}
        kinds = {int(i.kind) for i in calcs if compiled.manifest.layers[i.layer].name in convs}
        assert kinds == {CalcKind.CONV1}
        regions = {r.name: r for r in compiled.manifest.regions}
        for st in stages:
            if st.kind == "conv":      # dense (N, C): no zero-padded taps
                assert regions[f"w:{st.name}"].size >= st.out_channels * st.in_channels \
                    * cfg.weight_bytes
                assert regions[f"w:{st.name}"].size < (st.out_channels * st.in_channels
                                                       * cfg.weight_bytes) + 64
        _compare(q, compiled, cfg, x)


def test_grouped_saves_and_decomposed_kernel_exact() -> None:
    """Every loop order and SAVE grouping on one layer with a 7×7 kernel and pooling."""
    cfg = load_config("tiny")
    rng = np.random.default_rng(5)
    g = chain("g", (3, 16, 16), [
        Conv2d("c", (), in_channels=3, out_channels=5, kernel=(7, 7), padding=(3, 3)),
        ReLU("r", ()), MaxPool2d("p", ())])
    q = random_qmodel(g, rng, bw_d=16, bw_w=16)
    x = rng.integers(-2000, 2000, size=(3, 16, 16))
    for order in ("spatial", "weights"):
        for t in (Tiling(4, 16, 2, 2, order, 2), Tiling(6, 16, 3, 4, order, 1),
                  Tiling(4, 6, 1, 3, order, 0)):
            compiled = compile_model(q, cfg, force={"c": t})
            sim = _compare(q, compiled, cfg, x)
            assert sim.layers["p"].shape == (5, 8, 8)


def test_batch_input_runs_each_sample() -> None:
    cfg = load_config("tiny")
    rng = np.random.default_rng(9)
    g = chain("b", (2, 6, 6), [Conv2d("c", (), in_channels=2, out_channels=3, kernel=(3, 3)),
                                Flatten("f", ()), Linear("l", (), in_features=48,
                                                         out_features=4)])
    q = random_qmodel(g, rng, bw_d=16, bw_w=16)
    compiled = compile_model(q, cfg)
    x = rng.integers(-100, 100, size=(3, 2, 6, 6))
    sim = simulate(compiled, x)
    ref = execute(q, x)
    assert np.array_equal(sim.outputs["l"], ref.outputs["l"])
    assert sim.executed == len(compiled.program.instructions)     # one pass for the batch
    assert sim.saturations["c"] == ref.saturations["c"]


@pytest.mark.parametrize("bits", [8, 16])
def test_every_product_method_bit_exact(bits: int) -> None:
    """Each exact method the CONV products can take (the one the probe picks, and every one
    forced) gives the reference executor's result, on data and weights filling their range
    (batch of 2, odd channel counts: K not a multiple of 4)."""
    from deepfpga.quant.kernels import int8_gemm_available, kernel_speeds

    cfg = load_config("tiny")
    rng = np.random.default_rng(21 + bits)
    g = chain("m", (3, 10, 10), [
        Conv2d("c1", (), in_channels=3, out_channels=5, kernel=(3, 3), padding=(1, 1)),
        ReLU("r", ()),
        Conv2d("c2", (), in_channels=5, out_channels=7, kernel=(3, 3), stride=(2, 2)),
        Flatten("f", ()), Linear("l", (), in_features=7 * 4 * 4, out_features=6)])
    q = random_qmodel(g, rng, bw_d=bits, bw_w=bits)
    weights = {k: dict(v) for k, v in q.weights.items()}
    for name in ("c1", "c2"):    # weights at the ends of the range (offset-digit corrections)
        w = np.array(weights[name]["weight"])
        w.flat[::3] = -(1 << (bits - 1))
        w.flat[1::3] = (1 << (bits - 1)) - 1
        weights[name]["weight"] = w
    q = dataclasses.replace(q, weights=weights)
    compiled = compile_model(q, cfg, force={"c1": Tiling(5, 10, 2, 3, "spatial", 0)})
    fmt = q.input_format
    x = rng.integers(fmt.qmin, fmt.qmax, size=(2, *g.input_shape), endpoint=True)
    x[0, 0, 0, :] = fmt.qmin
    ref = execute(q, x, keep="all")
    methods = ["auto", "f64", "split", "int64"] + (["f32"] if bits == 8 else [])
    if int8_gemm_available():
        methods.append("i8")
    assert kernel_speeds().mac["f64"] is not None
    for method in methods:
        sim = simulate(compiled, x, method=method)
        for name, got in sim.layers.items():
            np.testing.assert_array_equal(got, ref.layers[name], err_msg=f"{method} {name}")
    if bits == 16:      # float32 cannot be exact for 16-bit products: refused, never rounded
        with pytest.raises(InputError, match="float32 path is not exact"):
            simulate(compiled, x, method="f32")


# --- error paths ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    cfg = load_config("tiny")
    rng = np.random.default_rng(3)
    g = chain("s", (2, 8, 8), [
        Conv2d("c", (), in_channels=2, out_channels=4, kernel=(3, 3), padding=(1, 1)),
        ReLU("r", ()), MaxPool2d("p", ()), Flatten("f", ()),
        Linear("l", (), in_features=64, out_features=5)])
    q = random_qmodel(g, rng, bw_d=16, bw_w=16)
    compiled = compile_model(q, cfg, force={"c": Tiling(4, 8, 2, 2, "spatial", 0)})
    x = rng.integers(-500, 500, size=(2, 8, 8))
    return cfg, q, compiled, x


def _run(cfg, compiled, x, instructions, ddr=None):
    """Simulate `instructions` (a hand-made or altered program) with the compiled manifest; a
    program of another length gets a one-segment schedule."""
    manifest = compiled.manifest
    if len(instructions) != len(compiled.program.instructions):
        manifest = dataclasses.replace(
            manifest, schedule=(AccelStep(0, (0, len(instructions)), ()),),
            layers=tuple(dataclasses.replace(d, instructions=(0, 0)) for d in manifest.layers))
    prog = encode_program(Program(cfg.hash(), tuple(instructions)))
    return simulate_program(prog, compiled.ddr_image if ddr is None else ddr, manifest, cfg, x)


def _replace_first(ins, cls, pred=lambda i: True, **changes):
    out = list(ins)
    k = next(k for k, i in enumerate(out) if isinstance(i, cls) and pred(i))
    out[k] = dataclasses.replace(out[k], **changes)
    return out, k


def test_unmodified_program_runs(small) -> None:
    cfg, q, compiled, x = small
    sim = _run(cfg, compiled, x, compiled.program.instructions)
    assert np.array_equal(sim.outputs["l"], execute(q, x[None]).outputs["l"][0])


def test_error_load_outside_buffer(small) -> None:
    cfg, _, compiled, x = small
    ins, k = _replace_first(compiled.program.instructions, Load,
                            lambda i: i.buffer == 0 and not i.fc_weights,
                            buf_addr=cfg.input_buffer_entries - 1)
    with pytest.raises(SimulationError, match=rf"instruction {k} \(LOAD\): INPUT buffer"
                                              r" entries .* outside its 8192 entries"):
        _run(cfg, compiled, x, ins)


def test_error_fc_weights_outside_fc_area(small) -> None:
    cfg, _, compiled, x = small
    ins, k = _replace_first(compiled.program.instructions, Load,
                            lambda i: i.fc_weights and i.buffer == 0,
                            buf_addr=cfg.fc_buffer_entries - 2)
    with pytest.raises(SimulationError, match=rf"instruction {k} .*FC weight area"):
        _run(cfg, compiled, x, ins)


def test_error_load_outside_ddr(small) -> None:
    cfg, _, compiled, x = small
    ins, k = _replace_first(compiled.program.instructions, Load,
                            ddr_addr=len(compiled.ddr_image) - 2)
    with pytest.raises(SimulationError, match=rf"instruction {k} .*outside the \d+-byte DDR"):
        _run(cfg, compiled, x, ins)


def test_error_save_into_weights_region(small) -> None:
    cfg, _, compiled, x = small
    ins, k = _replace_first(compiled.program.instructions, Save, ddr_addr=0)
    with pytest.raises(SimulationError, match=rf"instruction {k} \(SAVE\): DDR bytes .* outside"
                                              " every writable region"):
        _run(cfg, compiled, x, ins)


def test_error_load_outside_regions(small) -> None:
    cfg, _, compiled, x = small
    regions = sorted(compiled.manifest.regions, key=lambda r: r.start)
    gap = next(r.end for r, nxt in zip(regions, regions[1:], strict=False)
               if r.end + 4 <= nxt.start)
    ins, k = _replace_first(compiled.program.instructions, Load, ddr_addr=gap, n1=1, n2=1,
                            length=1)
    with pytest.raises(SimulationError, match=rf"instruction {k} .*outside every region"):
        _run(cfg, compiled, x, ins)


def test_error_read_never_loaded(small) -> None:
    cfg, _, compiled, x = small
    calc = Calc(ti=2, to=2, in_rows=4, in_cols=8, out_rows=2, out_cols=6, ib_addr=100)
    with pytest.raises(SimulationError, match=r"instruction 0 \(CALC\): reads INPUT entry 100"
                                              " .* never written"):
        _run(cfg, compiled, x, [calc, End()])


def test_error_save_of_never_finalized(small) -> None:
    cfg, _, compiled, x = small
    with pytest.raises(SimulationError, match=r"reads OUTPUT entry 7 .* never written"):
        _run(cfg, compiled, x, [Save(ob_addr=7, ddr_addr=compiled.manifest.arena[0]), End()])


def test_error_token_underflow(small) -> None:
    cfg, _, compiled, x = small
    with pytest.raises(SimulationError, match=r"instruction 0 \(CALC\): token underflow:"
                                              " pop_prev waits for a LOAD→CALC token"):
        _run(cfg, compiled, x, [Calc(pop_prev=1, to=0), End()])


def test_error_flag_without_neighbour(small) -> None:
    cfg, _, compiled, x = small
    ins, k = _replace_first(compiled.program.instructions, Load, push_prev=1)
    with pytest.raises(SimulationError, match=rf"instruction {k} \(LOAD\): push_prev=1 but"):
        _run(cfg, compiled, x, ins)


def test_error_tokens_left_at_end(small) -> None:
    cfg, _, compiled, x = small
    ins = list(compiled.program.instructions)
    k = max(i for i, v in enumerate(ins) if isinstance(v, Save))
    ins[k] = dataclasses.replace(ins[k], push_prev=1)
    with pytest.raises(SimulationError, match=r"\(END\): tokens pushed but never popped"):
        _run(cfg, compiled, x, ins)


def test_error_missing_dependency_is_a_race(small) -> None:
    cfg, _, compiled, x = small
    ins = list(compiled.program.instructions)
    # drop the first LOAD→CALC token: the CALC then reads entries its LOAD may not have written
    k = next(i for i, v in enumerate(ins) if isinstance(v, Calc) and v.pop_prev)
    j = max(i for i in range(k) if isinstance(ins[i], Load) and ins[i].push_next)
    ins[k] = dataclasses.replace(ins[k], pop_prev=0)
    ins[j] = dataclasses.replace(ins[j], push_next=0)
    with pytest.raises(SimulationError, match=rf"instruction {k} \(CALC\): reads .* written by"
                                              r" instruction \d+ \(LOAD\) .*race"):
        _run(cfg, compiled, x, ins)


def test_error_accumulator_overflow() -> None:
    base = load_config("tiny")
    cfg = base.replace(acc_bits=32)
    rng = np.random.default_rng(1)
    g = chain("o", (4, 6, 6), [Conv2d("c", (), in_channels=4, out_channels=2, kernel=(3, 3),
                                      bias=False)])
    q = random_qmodel(g, rng, bw_d=16, bw_w=16)
    small_w = {"c": {"weight": np.ones_like(q.weights["c"]["weight"])}}
    q = dataclasses.replace(q, weights=small_w)
    compiled = compile_model(q, cfg)
    ddr = bytearray(compiled.ddr_image)
    w = next(r for r in compiled.manifest.regions if r.name == "w:c")
    ddr[w.start:w.end] = b"\x00\x80" * (w.size // 2)   # -32768 each
    x = np.full((4, 6, 6), -32768)
    with pytest.raises(SimulationError, match=r"\(CALC\): accumulator overflow: .*32-bit"):
        simulate_program(compiled.program_bytes(), bytes(ddr), compiled.manifest, cfg, x)


def test_refuses_wrong_config_and_inputs(small) -> None:
    cfg, _, compiled, x = small
    other = load_config("zedboard")
    with pytest.raises(InputError, match="different accelerator configuration"):
        simulate_program(compiled.program_bytes(), compiled.ddr_image, compiled.manifest, other,
                         x)
    with pytest.raises(InputError, match="input has shape"):
        simulate(compiled, x[0])
    with pytest.raises(InputError, match="outside the input format"):
        simulate(compiled, np.full_like(x, 1 << 20))
    with pytest.raises(InputError, match="DDR image is"):
        simulate_program(compiled.program_bytes(), compiled.ddr_image[:-1], compiled.manifest,
                         cfg, x)
    with pytest.raises(InputError, match="CRC32 mismatch"):
        bad = bytearray(compiled.program_bytes())
        bad[-3] ^= 0x10
        simulate_program(bytes(bad), compiled.ddr_image, compiled.manifest, cfg, x)


def test_error_read_of_feature_map_never_saved(small) -> None:
    cfg, _, compiled, x = small
    pool = compiled.manifest.tensors["p"]
    fc = next(d for d in compiled.manifest.layers if d.name == "l")
    load = Load(buffer=1, fc_weights=1, ddr_addr=pool.address, length=4, layer=fc.index)
    with pytest.raises(SimulationError, match=r"instruction 0 \(LOAD\): reads DDR bytes of the"
                                              " feature-map arena that no SAVE"):
        _run(cfg, compiled, x, [load, End()])


def test_error_end_inside_segment_and_save_overlap(small) -> None:
    cfg, _, compiled, x = small
    ins, k = _replace_first(compiled.program.instructions, Save,
                            lambda s: s.n1 > 1, stride1=0)
    with pytest.raises(SimulationError, match=rf"instruction {k} \(SAVE\): SAVE segments overlap"):
        _run(cfg, compiled, x, ins)
    ins = list(compiled.program.instructions)
    ins[3] = End()
    with pytest.raises(SimulationError, match=r"instruction 3 \(END\)"):
        _run(cfg, compiled, x, ins)


@pytest.mark.parametrize("preset", ["tiny", "zedboard"])
def test_batch_with_host_layers_between_segments(preset: str) -> None:
    """A batch runs in one pass, host layers (max-pool 3×3/2, LRN, softmax) in between."""
    cfg = load_config(preset)
    rng = np.random.default_rng(11)
    g = chain("h", (3, 13, 13), [
        Conv2d("c1", (), in_channels=3, out_channels=6, kernel=(3, 3), padding=(1, 1)),
        ReLU("r1", ()), MaxPool2d("hp", (), kernel=(3, 3), stride=(2, 2)), LRN("n", (), size=3),
        Conv2d("c2", (), in_channels=6, out_channels=5, kernel=(3, 3)), ReLU("r2", ()),
        Flatten("f", ()), Linear("l", (), in_features=80, out_features=7), Softmax("s", ())])
    q = random_qmodel(g, rng, bw_d=cfg.data_bits, bw_w=cfg.weight_bits)
    compiled = compile_model(q, cfg)
    assert compiled.manifest.partition.host == ("hp", "n", "s")
    x = rng.integers(q.input_format.qmin, q.input_format.qmax, size=(4, 3, 13, 13))
    sim = simulate(compiled, x)
    ref = execute(q, x, keep="all")
    for name, got in sim.layers.items():
        np.testing.assert_array_equal(got, ref.layers[name], err_msg=name)
    np.testing.assert_array_equal(sim.outputs["s"], ref.outputs["s"])
    assert sim.saturations == {k: v for k, v in ref.saturations.items() if k in sim.saturations}
    fast = simulate(compiled, x, check_races=False)
    for name, got in sim.layers.items():
        np.testing.assert_array_equal(fast.layers[name], got, err_msg=name)


def test_exact_matmul_every_path_at_its_bounds():
    """float32 up to 2^24, float64 up to 2^53, int64 beyond: exact against Python integers."""
    from deepfpga.sim.products import exact_matmul

    def py(a, b):
        return np.array([[sum(int(x) * int(y) for x, y in zip(r, c, strict=True))
                          for c in b.T] for r in a], dtype=np.int64)

    rng = np.random.default_rng(4)
    # at 2^24 exactly: 1024 products of 2^14 (8-bit data and weights)
    a = np.full((2, 1024), -128.0)
    b = np.full((1024, 3), -128.0)
    assert exact_matmul(a, b, 1024, 1 << 14)[0, 0] == 1 << 24  # float32 where IEEE here
    # just past 2^24 the float32 path is not taken; odd sums stay exact
    a2 = rng.integers(-128, 128, (3, 1025)).astype(np.float64)
    a2[:, 0] = 1
    b2 = rng.integers(-128, 128, (1025, 2)).astype(np.float64)
    assert np.array_equal(exact_matmul(a2, b2, 1025, 1 << 14), py(a2, b2))
    # past 2^53 worst case: data-checked float64, then int64
    big = np.array([[1 << 25, 1, 1 << 25]], dtype=np.float64)
    w = np.array([[1 << 29], [1], [-(1 << 29)]], dtype=np.float64)
    assert exact_matmul(big, w, 3, 1 << 62).tolist() == [[1]]
    small = rng.integers(-1000, 1000, (2, 5)).astype(np.float64)
    ws = rng.integers(-1000, 1000, (5, 4)).astype(np.float64)
    assert np.array_equal(exact_matmul(small, ws, 5, 1 << 62), py(small, ws))
