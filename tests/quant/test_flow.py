"""The quantization flow on a tiny trained net: dynamic vs static, brute-force checks,
bias constraint, consistency with the bit-exact executor, and the CLI round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from deepfpga.cli import main
from deepfpga.errors import InputError
from deepfpga.ir import INPUT, Conv2d, Flatten, Graph, Linear, MaxPool2d, ReLU, Softmax, chain
from deepfpga.ir.float_exec import run_float
from deepfpga.quant.evaluate import evaluate
from deepfpga.quant.fixedpoint import FixedFormat, to_fixed
from deepfpga.quant.flow import quantize
from deepfpga.quant.qmodel import LayerFormats, QuantizedModel
from deepfpga.quant.reference import execute, quantize_input
from deepfpga.quant.weights import quant_error

N_CLASSES = 4


# --- a tiny net on synthetic, separable data ---------------------------------------------------
def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 images: class k is a bright 3x3 blob near corner k, on noise, with random gain."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    x = rng.uniform(0, 0.3, (n, 1, 8, 8))
    corners = [(1, 1), (1, 4), (4, 1), (4, 4)]
    for i, k in enumerate(y):
        r, c = corners[k]
        r += rng.integers(0, 2)
        c += rng.integers(0, 2)
        x[i, 0, r:r + 3, c:c + 3] += rng.uniform(0.4, 0.7)
    return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)


def _train() -> nn.Sequential:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: threads only add contention on a shared machine
    try:
        return _train_1()
    finally:
        torch.set_num_threads(threads)


def _train_1() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, N_CLASSES),
    )
    x, y = _data(1024, 0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for step in range(60):
        idx = slice((step * 64) % 1024, (step * 64) % 1024 + 64)
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
        opt.step()
    return net.eval()


def _graph(net: nn.Sequential, scales=(1.0, 1.0, 1.0), softmax: bool = False) -> Graph:
    """The net as a graph; `scales` (a, b, c) rescale conv1/conv2/fc1 outputs by a, b, c and
    undo it in the next layer (ReLU and max-pool commute with positive scaling), so the
    function is unchanged but the layers' ranges differ wildly."""
    a, b, c = scales
    sd = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    p = {
        "conv1": {"weight": sd["0.weight"] * a, "bias": sd["0.bias"] * a},
        "conv2": {"weight": sd["3.weight"] * b / a, "bias": sd["3.bias"] * b},
        "fc1": {"weight": sd["7.weight"] * c / b, "bias": sd["7.bias"] * c},
        "fc2": {"weight": sd["9.weight"] / c, "bias": sd["9.bias"]},
    }
    p = {k: {kk: vv.astype(np.float32) for kk, vv in v.items()} for k, v in p.items()}
    layers = [
        Conv2d("conv1", (), in_channels=1, out_channels=4, kernel=3, padding=1),
        ReLU("relu1", ()), MaxPool2d("pool1", ()),
        Conv2d("conv2", (), in_channels=4, out_channels=8, kernel=3, padding=1),
        ReLU("relu2", ()), MaxPool2d("pool2", ()),
        Flatten("flat", ()), Linear("fc1", (), in_features=32, out_features=16),
        ReLU("relu3", ()), Linear("fc2", (), in_features=16, out_features=N_CLASSES),
    ]
    if softmax:
        layers.append(Softmax("prob", ()))
    return chain("toy", (1, 8, 8), layers, p)


@pytest.fixture(scope="module")
def net() -> nn.Sequential:
    return _train()


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return _data(256, 1)[0]


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    return _data(600, 2)


@pytest.fixture(scope="module")
def skewed(net) -> Graph:
    return _graph(net, (32.0, 1 / 32, 16.0))


# --- helpers ---------------------------------------------------------------------------------
def _prefix(qm: QuantizedModel, upto: str, out_fmt: FixedFormat | None = None,
            layer: str | None = None) -> QuantizedModel:
    """The quantized model cut after `upto`; optionally with `layer`'s output format (and the
    pass-through layers that inherit it) replaced by `out_fmt`."""
    names = [la.name for la in qm.graph.layers]
    layers = qm.graph.layers[:names.index(upto) + 1]
    g = qm.graph.replace(layers=layers, outputs=(upto,))
    formats = {la.name: qm.formats[la.name] for la in layers}
    if out_fmt is not None:
        changed = {layer}
        for la in layers:
            f = formats[la.name]
            if la.name == layer:
                formats[la.name] = LayerFormats(f.input, out_fmt, f.weight, f.bias)
            elif la.inputs[0] in changed:
                formats[la.name] = LayerFormats(out_fmt, out_fmt if la.kind in
                                                ("relu", "maxpool", "flatten") else f.output,
                                                f.weight, f.bias)
                if la.kind in ("relu", "maxpool", "flatten"):
                    changed.add(la.name)
    weights = {k: v for k, v in qm.weights.items() if k in formats}
    return QuantizedModel(g, qm.input_format, formats, weights, {})


def _fixed_output(qm: QuantizedModel, x: np.ndarray) -> np.ndarray:
    x_int, _ = quantize_input(qm, x)
    out = execute(qm, x_int).output
    if isinstance(out, dict):
        out = out[qm.graph.outputs[0]]
    f = qm.format_of(qm.graph.outputs[0])
    return np.ldexp(np.asarray(out).astype(np.float64), -f.fl)


# --- tests -----------------------------------------------------------------------------------
def test_dynamic_beats_static_at_8_bits(skewed, calib, test_set):
    x, y = test_set
    f = evaluate(skewed, x, y)
    assert f.top1 > 0.95, "the toy net should learn the toy task"
    dyn = quantize(skewed, calib, bits="8")
    sta = quantize(skewed, calib, bits="8", static=True)
    rd, rs = evaluate(dyn, x, y), evaluate(sta, x, y)
    assert rd.top1 >= f.top1 - 0.02
    assert rs.top1 <= rd.top1 - 0.2
    assert sta.meta["calibration"]["output_rel_error"] > \
        5 * dyn.meta["calibration"]["output_rel_error"]
    # static: one fl for all weights, one for all biases, one for every map
    assert len({sta.formats[n].weight.fl for n in ("conv1", "conv2", "fc1", "fc2")}) == 1
    assert len({sta.formats[n].bias.fl for n in ("conv1", "conv2", "fc1", "fc2")}) == 1
    assert len({f.output.fl for f in sta.formats.values()} | {sta.input_format.fl}) == 1
    # dynamic adapts: the layers' weight fls follow their ranges
    wfl = {n: dyn.formats[n].weight.fl for n in ("conv1", "conv2", "fc1", "fc2")}
    assert wfl["conv2"] - wfl["conv1"] >= 8


@pytest.mark.parametrize("bits", ["16", "8", "8/4"])
def test_formats_widths_and_bias_constraint(net, calib, bits):
    qm = quantize(_graph(net), calib, bits=bits)
    qm.validate()
    w = {"16": (16, 16, 16, 16), "8": (8, 8, 8, 8), "8/4": (8, 8, 4, 8)}[bits]
    assert qm.input_format.bw == w[0]
    for layer in qm.graph.layers:
        f = qm.formats[layer.name]
        assert f.output.bw == w[0]
        if layer.kind in ("conv", "fc"):
            assert f.weight.bw == (w[1] if layer.kind == "conv" else w[2])
            assert f.bias.bw == w[3]
            assert f.bias.fl <= f.input.fl + f.weight.fl
        if layer.kind in ("relu", "maxpool", "flatten"):
            assert f.output == f.input
    rep = qm.meta["layers"]
    assert qm.meta["quantizer"]["bits"] == bits and qm.meta["quantizer"]["calib_size"] == 256
    assert rep["pool1"] == {"kind": "maxpool", "inherits": "relu1"}
    assert rep["conv1"]["output"]["measured_at"] == "pool1"
    assert rep["fc2"]["output"]["measured_at"] == "fc2"


def test_bias_fl_is_capped_by_accumulator(net, calib):
    # Large biases on a small-range layer: the bias' own optimum lies above fl_in + fl_w.
    g = _graph(net)
    p = {k: dict(v) for k, v in g.params.items()}
    p["fc2"]["bias"] = (np.array([1, -1, 0.5, -0.5]) * 1e-3).astype(np.float32)
    qm = quantize(g.replace(params=p), calib, bits="8")
    f = qm.formats["fc2"]
    assert f.bias.fl == f.input.fl + f.weight.fl


def test_weight_fl_equals_brute_force(skewed, calib):
    qm = quantize(skewed, calib, bits="8/4")
    for name in ("conv1", "conv2", "fc1", "fc2"):
        w = skewed.params[name]["weight"]
        bw = qm.formats[name].weight.bw
        errs = {fl: quant_error(w, FixedFormat(bw, fl)) for fl in range(-30, 40)}
        best = min(errs.values())
        assert errs[qm.formats[name].weight.fl] == best
        assert qm.formats[name].weight.fl == min(k for k, v in errs.items() if v == best)


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_feature_map_fl_equals_brute_force(skewed, calib, metric):
    """The flow scores candidates by requantizing one accumulator; brute force re-runs the
    executor on the whole prefix network for every fl. Same errors, same choice."""
    qm = quantize(skewed, calib, bits="8", metric=metric)
    rep = qm.meta["layers"]
    floats = run_float(skewed, calib, return_all=True)
    for name, upto in ((INPUT, INPUT), ("conv1", "pool1"), ("conv2", "pool2"), ("fc1", "relu3"),
                       ("fc2", "fc2")):
        chosen = qm.format_of(name)
        tried = {c[0]: c[1] for c in rep[name]["output"]["candidates"]}
        ref = (calib if upto == INPUT else floats[upto]).astype(np.float64)
        brute = {}
        for fl in range(chosen.fl - 3, chosen.fl + 5):
            fmt = FixedFormat(chosen.bw, fl)
            if name == INPUT:
                q = np.ldexp(to_fixed(calib, fmt).astype(np.float64), -fl)
            else:
                q = _fixed_output(_prefix(qm, upto, fmt, name), calib)
            d = q - ref
            brute[fl] = float(np.abs(d).mean() if metric == "l1" else np.square(d).mean())
        for fl, e in tried.items():
            if fl in brute:
                assert e == pytest.approx(brute[fl], rel=1e-9, abs=1e-15), (name, fl)
        assert chosen.fl == min(brute, key=lambda k: (brute[k], k)), (name, brute)


def test_flow_outputs_match_the_executor(skewed, calib):
    qm = quantize(skewed, calib, bits="8")
    q = _fixed_output(qm, calib)
    r = run_float(skewed, calib).astype(np.float64)
    cal = qm.meta["calibration"]
    assert cal["output_error"] == pytest.approx(np.abs(q - r).mean(), rel=1e-12)
    assert cal["top1_agreement"] == pytest.approx(np.mean(q.argmax(1) == r.argmax(1)))


@pytest.mark.slow
def test_spilled_streaming_gives_the_same_model(net, calib, monkeypatch):
    """Budgets so small that every tensor beyond the images is spilled to a temporary file
    and read back batch by batch (batches of 10 images, nothing cached): the same formats,
    weights and biases as the walk in memory, errors equal up to summation order."""
    from deepfpga.quant import calibrate

    g = _graph(net, (32.0, 1 / 32, 16.0), softmax=True)
    calib = calib[:96]
    want = quantize(g, calib, bits="8")
    spills = []
    real = calibrate._Spilled.append

    def append(self, q, f):
        spills.append(id(self))
        real(self, q, f)

    monkeypatch.setattr(calibrate, "_BATCH_ELEMS", 10 * 4 * 8 * 8)
    monkeypatch.setattr(calibrate, "_STORE_BYTES", 0)
    monkeypatch.setattr(calibrate, "_CACHE_BYTES", 0)
    monkeypatch.setattr(calibrate._Spilled, "append", append)
    got = quantize(g, calib, bits="8")
    assert len(set(spills)) >= 4 and len(spills) >= 4 * 10      # the maps, 10 batches each
    assert got.input_format == want.input_format and got.formats == want.formats
    for name, arrays in want.weights.items():
        for k, v in arrays.items():
            assert np.array_equal(got.weights[name][k], v), (name, k)
    for name, rep in want.meta["layers"].items():
        if "output" in rep:
            for (fl, e, n), (fl2, e2, n2) in zip(rep["output"]["candidates"],
                                                 got.meta["layers"][name]["output"]["candidates"],
                                                 strict=True):
                assert (fl, n) == (fl2, n2) and e == pytest.approx(e2, rel=1e-9)
    assert got.meta["calibration"]["top1_agreement"] == want.meta["calibration"][
        "top1_agreement"]


def test_16_bit_dynamic_is_close_to_float(net, calib, test_set):
    g = _graph(net)
    x, y = test_set
    qm = quantize(g, calib, bits="16")
    assert qm.meta["calibration"]["output_rel_error"] < 1e-3
    assert evaluate(qm, x, y).correct1 == pytest.approx(evaluate(g, x, y).correct1, abs=2)


@pytest.mark.parametrize("metric", ["l2", "kl"])
def test_other_metrics_give_accurate_models(net, calib, test_set, metric):
    g = _graph(net)
    x, y = test_set
    qm = quantize(g, calib, bits="8", metric=metric, weight_metric="l2")
    assert qm.meta["quantizer"]["metric"] == metric
    assert evaluate(qm, x, y).top1 >= evaluate(g, x, y).top1 - 0.03


def test_host_softmax_and_ranking(net, calib, test_set):
    g = _graph(net, softmax=True)
    x, y = test_set
    qm = quantize(g, calib, bits="8")
    f = qm.formats["prob"]
    assert f.output.bw == 8 and f.input == qm.formats["fc2"].output
    assert qm.meta["layers"]["prob"]["output"]["candidates"]
    # ranking uses the logits before the softmax: identical with and without it
    q_plain = quantize(_graph(net), calib, bits="8")
    assert evaluate(qm, x, y).correct1 == evaluate(q_plain, x, y).correct1


def test_overrides(net, calib):
    qm = quantize(_graph(net), calib, bits="8",
                  overrides={"fc1": {"weight_bits": 4, "data_bits": 12}, "input": {"data_bits": 6}})
    assert qm.formats["fc1"].weight.bw == 4
    assert qm.formats["fc1"].output.bw == 12 and qm.formats["relu3"].output.bw == 12
    assert qm.formats["fc2"].input.bw == 12
    assert qm.input_format.bw == 6
    with pytest.raises(InputError, match=r"layers\.nope"):
        quantize(_graph(net), calib, overrides={"nope": {"data_bits": 8}})


def test_refusals(net, calib):
    g = _graph(net)
    with pytest.raises(InputError, match=r"expected \(N, 1, 8, 8\)"):
        quantize(g, calib[:, :, :4])
    with pytest.raises(InputError, match="no weights"):
        quantize(g.without_weights(), calib)
    with pytest.raises(InputError, match="unknown metric"):
        quantize(g, calib, metric="l3")
    with pytest.raises(InputError, match="unknown bit-width preset"):
        quantize(g, calib, bits="4")
    bad = calib.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        quantize(g, bad)


# --- CLI ---------------------------------------------------------------------------------------
def _json_out(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_quantize_evaluate_round_trip(net, tmp_path, capsys, calib, test_set):
    from deepfpga.frontends.float_model import save_float_model
    from deepfpga.quant.qfile import load_qmodel

    g = _graph(net)
    model = tmp_path / "toy.npz"
    save_float_model(g, model)
    cal = tmp_path / "calib.npz"
    np.savez(cal, x=calib, y=np.zeros(len(calib), dtype=np.int64))
    x, y = test_set
    test = tmp_path / "test.npz"
    np.savez(test, x=x, y=y)
    q = tmp_path / "toy-q8.npz"

    out = _json_out(capsys, ["quantize", str(model), "--calib", str(cal), "--calib-size", "200",
                             "--bits", "8", "--out", str(q), "--json"])
    assert out["out"] == str(q) and q.is_file()
    assert out["calib"]["size"] == 200
    assert [r["name"] for r in out["layers"]] == [la.name for la in g.layers]
    qm = load_qmodel(q)
    api = quantize(g, calib[:200], bits="8")
    assert {k: v.to_dict() for k, v in qm.formats.items()} == \
        {k: v.to_dict() for k, v in api.formats.items()}

    ev = _json_out(capsys, ["evaluate", str(q), "--data", str(test), "--json"])
    ref = evaluate(qm, x, y)
    assert (ev["kind"], ev["n"], ev["correct1"], ev["correct5"]) == \
        ("fixed", ref.n, ref.correct1, ref.correct5)
    assert ev["top1"] == ref.top1
    evf = _json_out(capsys, ["evaluate", str(model), "--data", str(test), "--limit", "100",
                             "--batch-size", "7", "--json"])
    reff = evaluate(g, x[:100], y[:100])
    assert (evf["kind"], evf["n"], evf["correct1"]) == ("float", 100, reff.correct1)

    # human output: a table with every layer, then the calibration line
    assert main(["quantize", str(model), "--calib", str(cal), "--static", "--bits", "8/4",
                 "--out", str(tmp_path / "s.npz")]) == 0
    text = capsys.readouterr().out
    assert "static 8/4-bit" in text and "fc2" in text and "calibration:" in text
    assert main(["evaluate", str(q), "--data", str(test)]) == 0
    assert "top-1" in capsys.readouterr().out


def test_cli_refusals(net, tmp_path, capsys, calib):
    from deepfpga.frontends.float_model import save_float_model

    model = tmp_path / "toy.npz"
    save_float_model(_graph(net), model)
    cal = tmp_path / "calib.npz"
    np.savez(cal, x=calib, y=np.zeros(len(calib), dtype=np.int64))
    bits = tmp_path / "bits.toml"
    bits.write_text("[layers.fc1]\nweight_bitz = 4\n")
    argv = ["quantize", str(model), "--calib", str(cal), "--bits-file", str(bits),
            "--out", str(tmp_path / "q.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "layers.fc1: unknown key 'weight_bitz'" in err and "Traceback" not in err
    bits.write_text("[layers.fc7]\nweight_bits = 4\n")
    assert main(argv) == 2
    assert "layers.fc7" in capsys.readouterr().err
    bits.write_text("[layers.fc1]\nweight_bits = 40\n")
    assert main(argv) == 2
    assert "layers.fc1.weight_bits = 40 is outside 2..32" in capsys.readouterr().err
    assert main(["quantize", str(model), "--calib", str(cal), "--calib-size", "0"]) == 2
    assert main(["evaluate", str(model), "--data", str(tmp_path / "none.npz")]) == 2
    assert not (tmp_path / "q.npz").exists()
