"""The reference executor against a direct Python-integer implementation of the contract.

`py_*` below transcribe docs/arithmetic.md literally with Python's unbounded integers and loops
(tiny sizes only); every fast path of deepfpga.quant.reference must agree with them bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfpga.errors import InputError, ShapeError
from deepfpga.ir import (
    INPUT,
    LRN,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
    chain,
)
from deepfpga.ir.layers import _window_out
from deepfpga.quant import gemm as G
from deepfpga.quant import patches as P
from deepfpga.quant import reference as R
from deepfpga.quant.fixedpoint import FixedFormat, to_fixed
from deepfpga.quant.kernels import f32_gemm_exact
from deepfpga.quant.qmodel import LayerFormats, QuantizedModel
from deepfpga.quant.random_model import random_qmodel

I8 = R.int8_gemm_available()
F32 = f32_gemm_exact()
METHODS = ["auto", "f64", "split", "int64"] + (["i8"] if I8 else []) + (["f32"] if F32 else [])


# --------------------------------------------------------------------------------------------
# the contract, transcribed with Python integers
# --------------------------------------------------------------------------------------------
def py_sat(v: int, bw: int) -> tuple[int, bool]:
    lo, hi = -(1 << (bw - 1)), (1 << (bw - 1)) - 1
    c = min(max(v, lo), hi)
    return c, c != v


def py_conv_acc(x, w, stride, pad):
    xs, ws = x.tolist(), w.tolist()
    n_, c_, h, wd = x.shape
    o_, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, pad
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1

    def px(n, c, y, xx):
        y, xx = y - ph, xx - pw
        return xs[n][c][y][xx] if 0 <= y < h and 0 <= xx < wd else 0  # zero padding

    return [[[[sum(ws[o][c][ky][kx] * px(n, c, y * sh + ky, xx * sw + kx)
                   for c in range(c_) for ky in range(kh) for kx in range(kw))
               for xx in range(wo)] for y in range(ho)] for o in range(o_)] for n in range(n_)]


def py_fc_acc(x, w):
    return [[sum(a * b for a, b in zip(row, wr, strict=True)) for wr in w.tolist()]
            for row in x.tolist()]


def py_finish_one(acc: int, b: int, fl_b: int, fl_acc: int, out: FixedFormat, relu: bool):
    acc = acc + (b << (fl_acc - fl_b))          # step 2, exact alignment
    if relu:
        acc = max(acc, 0)                       # step 3
    s = fl_acc - out.fl                         # step 4
    y = (acc + (1 << (s - 1))) >> s if s > 0 else acc << (-s)
    return py_sat(y, out.bw)


def py_finish(acc, bias, fl_b, fl_acc, out, relu):
    """acc nested lists with the channel at depth 1; returns (numpy int64, saturations)."""
    arr = np.array(acc, dtype=object)
    flat_y, nsat = [], 0
    for idx in np.ndindex(arr.shape):
        b = 0 if bias is None else int(bias[idx[1]])
        y, sat = py_finish_one(int(arr[idx]), b, fl_b, fl_acc, out, relu)
        flat_y.append(y)
        nsat += sat
    return np.array(flat_y, dtype=np.int64).reshape(arr.shape), nsat


def py_maxpool(y, kernel, stride, pad, ceil_mode):
    n_, c_, h, w = y.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    ho, wo = _window_out(h, kh, sh, ph, ceil_mode), _window_out(w, kw, sw, pw, ceil_mode)
    out = np.zeros((n_, c_, ho, wo), dtype=np.int64)
    for n, c, i, j in np.ndindex(out.shape):
        vals = [int(y[n, c, yy, xx])
                for yy in range(i * sh - ph, i * sh - ph + kh)
                for xx in range(j * sw - pw, j * sw - pw + kw)
                if 0 <= yy < h and 0 <= xx < w]       # padding never wins
        out[n, c, i, j] = max(vals)
    return out


def py_add(xs, fls, out: FixedFormat, relu: bool = False):
    """The contract's add in Python integers: align to the finest fl, exact sum, ReLU, data
    shift (round half up), saturate; saturations counted."""
    fl_c = max(fls)
    flat = [np.asarray(a, dtype=object).reshape(-1) for a in xs]
    s = fl_c - out.fl
    ys, n = [], 0
    for vals in zip(*flat, strict=True):
        acc = sum(int(v) << (fl_c - fl) for v, fl in zip(vals, fls, strict=True))
        if relu:
            acc = max(acc, 0)
        y = (acc + (1 << (s - 1))) >> s if s > 0 else acc << -s
        if y > out.qmax or y < out.qmin:
            n += 1
            y = min(max(y, out.qmin), out.qmax)
        ys.append(y)
    return np.array(ys, dtype=np.int64).reshape(np.shape(xs[0])), n


def py_execute(qm: QuantizedModel, x: np.ndarray):
    """The whole model, layer by layer, from the Python primitives above (host layers in
    float64 with the float executor's semantics). Returns outputs and saturations (a conv/FC
    followed only by a ReLU counts saturations after the ReLU, as the accelerator fuses it)."""
    from deepfpga.ir.float_exec import apply_layer

    g = qm.graph
    env = {INPUT: x.astype(np.int64)}
    sats = {}
    for layer in g.layers:
        f = qm.formats[layer.name]
        xs = [env[s] for s in layer.inputs]
        if isinstance(layer, Conv2d | Linear):
            w = qm.weights[layer.name]
            acc = (py_conv_acc(xs[0], w["weight"], layer.stride, layer.padding)
                   if isinstance(layer, Conv2d) else py_fc_acc(xs[0], w["weight"]))
            b = w.get("bias")
            fl_b = f.bias.fl if f.bias is not None else f.fl_acc
            y, _ = py_finish(acc, b, fl_b, f.fl_acc, f.output, relu=False)
            readers = g.consumers(layer.name)
            fused = (len(readers) == 1 and isinstance(readers[0], ReLU)
                     and layer.name not in g.outputs)
            _, n = py_finish(acc, b, fl_b, f.fl_acc, f.output, relu=fused)
        elif isinstance(layer, ReLU):
            y, n = np.maximum(xs[0], 0), 0
        elif isinstance(layer, MaxPool2d):
            y, n = py_maxpool(xs[0], layer.kernel, layer.stride, layer.padding,
                              layer.ceil_mode), 0
        elif isinstance(layer, Flatten):
            y, n = xs[0].reshape(xs[0].shape[0], -1), 0
        elif isinstance(layer, Dropout):
            y, n = xs[0], 0
        elif isinstance(layer, Add):
            y, n = py_add(xs, [qm.format_of(s).fl for s in layer.inputs], f.output)
        else:
            vals = [torch.from_numpy(np.ldexp(a.astype(np.float64), -qm.format_of(s).fl))
                    for a, s in zip(xs, layer.inputs, strict=True)]
            yf = apply_layer(layer, {}, vals).numpy()
            if layer.name in g.outputs:
                y, n = yf, 0
            else:
                y = to_fixed(yf, f.output)
                n = int(np.count_nonzero(np.rint(np.ldexp(yf, f.output.fl)) != y))
        env[layer.name], sats[layer.name] = y, n
    return {o: env[o] for o in g.outputs}, sats, env


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------
@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 5))
    w = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 5))
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    bw_d, bw_w, bw_b = draw(st.integers(4, 16)), draw(st.integers(4, 16)), draw(st.integers(4, 32))
    fl_in, fl_w = draw(st.integers(-4, 20)), draw(st.integers(-4, 20))
    fl_b = fl_in + fl_w - draw(st.integers(0, 8))
    fl_out = draw(st.integers(-4, 20))
    extreme = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    relu, pool = draw(st.booleans()), draw(st.booleans())
    pk = draw(st.integers(2, 3))
    pool_args = ((pk, pk), (draw(st.integers(1, 2)),) * 2, (draw(st.integers(0, pk // 2)),) * 2,
                 draw(st.booleans()))
    return dict(shape=(n, c, h, w), wshape=(o, c, kh, kw), stride=(sh, sw), pad=(ph, pw),
                fin=FixedFormat(bw_d, fl_in), fw=FixedFormat(bw_w, fl_w),
                fb=FixedFormat(bw_b, fl_b), fout=FixedFormat(bw_d, fl_out), extreme=extreme,
                seed=seed, relu=relu, pool=pool, pool_args=pool_args)


def _ints(rng, shape, fmt, extreme):
    if extreme:  # the ends of the range: -2^(bw-1)·-2^(bw-1) products, largest sums
        return rng.choice(np.array([fmt.qmin, fmt.qmax, fmt.qmin]), size=shape)
    return rng.integers(fmt.qmin, fmt.qmax, size=shape, endpoint=True)


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------
@given(case=conv_cases())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_conv_layer_matches_python_contract(case):
    rng = np.random.default_rng(case["seed"])
    x = _ints(rng, case["shape"], case["fin"], case["extreme"])
    w = _ints(rng, case["wshape"], case["fw"], case["extreme"])
    b = _ints(rng, case["wshape"][:1], case["fb"], case["extreme"])
    want_acc = np.array(py_conv_acc(x, w, case["stride"], case["pad"]), dtype=np.int64)
    for m in METHODS:
        try:
            got = R.conv_acc(x, w, case["stride"], case["pad"], method=m)
        except InputError:
            assert m in ("f64", "f32")  # refused only where the float path would not be exact
            continue
        assert got.dtype == np.int64 and np.array_equal(got, want_acc), m
    fmts = LayerFormats(case["fin"], case["fout"], case["fw"], case["fb"])
    want_y, want_n = py_finish(want_acc.tolist(), b, case["fb"].fl, fmts.fl_acc, case["fout"],
                               case["relu"])
    y, n = R.finish(want_acc, b, fmts, case["relu"])
    assert np.array_equal(y, want_y) and n == want_n
    assert y.min(initial=0) >= case["fout"].qmin and y.max(initial=0) <= case["fout"].qmax
    if case["pool"]:
        k, s, p, ceil = case["pool_args"]
        h, w_ = y.shape[2:]
        if _window_out(h, k[0], s[0], p[0], ceil) > 0 and _window_out(w_, k[1], s[1], p[1],
                                                                     ceil) > 0:
            got = R.maxpool_int(y, k, s, p, ceil, qmin=case["fout"].qmin)
            assert np.array_equal(got, py_maxpool(y, k, s, p, ceil))


@given(n=st.integers(1, 3), f=st.integers(1, 40), o=st.integers(1, 5),
       bw=st.integers(2, 24), seed=st.integers(0, 2**32 - 1), extreme=st.booleans())
@settings(max_examples=60, deadline=None)
def test_fc_acc_matches_python(n, f, o, bw, seed, extreme):
    rng = np.random.default_rng(seed)
    fmt = FixedFormat(bw, 0)
    x, w = _ints(rng, (n, f), fmt, extreme), _ints(rng, (o, f), fmt, extreme)
    want = np.array(py_fc_acc(x, w), dtype=np.int64)
    for m in METHODS:
        try:
            got = R.fc_acc(x, w, method=m)
        except InputError:
            assert m in ("f64", "f32")
            continue
        assert np.array_equal(got, want), m


def test_extreme_products_of_every_width():
    for bw in (8, 16, 24, 31):
        q = -(1 << (bw - 1))
        x = np.full((2, 3), q)
        w = np.full((4, 3), q)
        want = np.full((2, 4), 3 * q * q)
        for m in METHODS:
            if (m == "f64" and 3 * q * q > R.F64_EXACT) or (m == "f32" and q * q > R.F32_EXACT):
                with pytest.raises(InputError, match="not exact"):
                    R.fc_acc(x, w, method=m)
                continue
            assert np.array_equal(R.fc_acc(x, w, method=m), want), (bw, m)
    # a single 32x32-bit product reaches 2^62: beyond any accumulator, refused
    with pytest.raises(InputError, match="2\\^62"):
        R.fc_acc(np.full((1, 1), -(1 << 31)), np.full((1, 1), -(1 << 31)))


def test_float64_path_at_and_beyond_2_53():
    # Exactly at the bound: max|x|·Σ|w| = 2^26·2^27 = 2^53, with odd partial sums.
    x = np.array([[1 << 26, -(1 << 26) + 1, 3, -(1 << 26)]])
    w = np.array([[(1 << 25) + 1, (1 << 25) - 1, -1, (1 << 26) - 1]])
    assert (1 << 26) * int(np.abs(w).sum()) == R.F64_EXACT
    want = np.array(py_fc_acc(x, w))
    assert np.array_equal(R.fc_acc(x, w, method="f64"), want)
    # Beyond it, a plain float64 product loses the 1: 2^54 + 1 - 2^54.
    x = np.array([[1 << 25, 1, 1 << 25]])
    w = np.array([[1 << 29, 1, -(1 << 29)]])
    assert int((x.astype(np.float64) @ w.T.astype(np.float64))[0, 0]) != 1
    with pytest.raises(InputError, match="not exact"):
        R.fc_acc(x, w, method="f64")
    for m in ("auto", "split", "int64") + (("i8",) if I8 else ()):
        assert R.fc_acc(x, w, method=m).tolist() == [[1]], m
    # The same through a convolution (1x1 kernel on a 1x1 map).
    xc, wc = x.reshape(1, 3, 1, 1), w.reshape(1, 3, 1, 1)
    assert R.conv_acc(xc, wc, method="split").ravel().tolist() == [1]


@pytest.mark.parametrize("budget", [64, 24000])  # one-row bands; groups of 2 of 3 images
def test_chunked_and_blocked_products(monkeypatch, budget):
    """K chunking (int32 safety) and row/image blocking give the same integers."""
    rng = np.random.default_rng(3)
    x = rng.integers(-32768, 32768, (3, 5, 9, 7))
    w = rng.integers(-32768, 32768, (4, 5, 3, 3))
    want = np.array(py_conv_acc(x, w, (2, 1), (1, 2)), dtype=np.int64)
    monkeypatch.setattr(G, "_I8_K_CHUNK", 8)
    monkeypatch.setattr(G, "_SPLIT_K_CHUNK", 5)
    monkeypatch.setattr(P, "_BLOCK_BYTES", budget)
    monkeypatch.setattr(G, "_PAR_MIN_ELEMS", 1)  # split every block's tail over 3 threads
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    for m in METHODS:
        if m != "f32":  # 16-bit products exceed 2^24: float32 is refused (tested below)
            assert np.array_equal(R.conv_acc(x, w, (2, 1), (1, 2), method=m), want), m
    xf, wf = rng.integers(-128, 128, (5, 30)), rng.integers(-128, 128, (3, 30))
    assert np.array_equal(R.fc_acc(xf, wf), xf @ wf.T)


def test_digits_recombine():
    t = np.array([-(1 << 15), -1, 0, 1, 255, 256, 32639, (1 << 15) - 1])
    for n, b in ((2, 8), (3, 8), (1, 16), (2, 16)):
        for balanced in (False, True):
            ds, c = G._digits(t, n, b, balanced)
            back = sum((d.astype(np.int64) << (b * i)) for i, d in enumerate(ds)) + c
            assert np.array_equal(back, t)
            lower = ds[:-1] if balanced else ds
            assert all(d.min() >= -(1 << (b - 1)) and d.max() < (1 << (b - 1)) for d in lower)
    ds, _ = G._digits(t, 2, 8, balanced=True)
    assert ds[-1].max() == 128  # 32767 = 128·256 - 1: why the caller checks the top digit


def test_int8_chunk_is_exact_at_its_worst_case():
    assert G._I8_K_CHUNK * 128 * 128 < (1 << 31)  # the proof's arithmetic
    if not I8:
        pytest.skip("torch._int_mm unavailable or inexact on this CPU")
    a = torch.full((2, G._I8_K_CHUNK), -128, dtype=torch.int8)
    assert int(torch._int_mm(a, a.t())[0, 0]) == G._I8_K_CHUNK * 128 * 128
    # K beyond one chunk: the executor splits it; the result still matches int64
    x = np.full((1, 3 * G._I8_K_CHUNK + 5), -128)
    assert R.fc_acc(x, x, method="i8").tolist() == [[x.shape[1] * 128 * 128]]


def test_maxpool_padding_never_wins_and_ceil():
    y = np.full((1, 1, 3, 3), -128)
    y[0, 0, 2, 2] = -127
    got = R.maxpool_int(y, 2, 2, 1, True, qmin=-128)
    assert np.array_equal(got, py_maxpool(y, (2, 2), (2, 2), (1, 1), True))
    assert got.min() == -128
    # default padding value works for any integer range
    y = np.array([[[[-(1 << 40), 5], [3, -(1 << 41)]]]])
    assert R.maxpool_int(y, 2, 1, 1).tolist()[0][0][0] == [-(1 << 40), 5, 5]


def test_scoring_pool_equals_torch_pooling():
    """The calibration walk's 2×2 pooling of accumulators (three maxima of strided views) is
    torch's max pooling, odd sizes and ceil mode included, for every value type it meets."""
    from deepfpga.quant.calibrate import _passthrough_any_int

    rng = np.random.default_rng(8)
    for shape in [(2, 3, 6, 8), (1, 2, 5, 7), (1, 1, 3, 3), (3, 1, 2, 2)]:
        for ceil in (False, True):
            layer = MaxPool2d("p", (), kernel=(2, 2), stride=(2, 2), ceil_mode=ceil)
            for dt in (np.int32, np.int64, np.float64):
                v = rng.integers(-(1 << 30), 1 << 30, size=shape).astype(dt)
                want = torch.nn.functional.max_pool2d(torch.from_numpy(v), 2, 2,
                                                      ceil_mode=ceil).numpy()
                got = _passthrough_any_int(layer, v)
                assert got.dtype == v.dtype and np.array_equal(got, want), (shape, ceil, dt)


def test_accumulator_bound_and_check():
    w = np.array([[1, -2, 3], [-4, 0, 0]])
    b = np.array([10, -100])
    assert R.accumulator_bound(w, b, 8) == max(6 * 128 + 10, 4 * 128 + 100)
    assert R.accumulator_bound(w.reshape(2, 3, 1, 1), None, 4) == 6 * 8
    R.check_accumulator("conv1", 2**31 - 1, 32)
    with pytest.raises(InputError, match="'conv1'.*32-bit"):
        R.check_accumulator("conv1", 2**31, 32)
    with pytest.raises(ShapeError):
        R.accumulator_bound(w, np.array([1, 2, 3]), 8)


def test_primitive_refusals():
    with pytest.raises(InputError, match="integer"):
        R.conv_acc(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 1, 1), dtype=np.int64))
    with pytest.raises(ShapeError):
        R.conv_acc(np.zeros((1, 2, 3, 3), dtype=int), np.zeros((1, 1, 1, 1), dtype=int))
    with pytest.raises(ShapeError, match="larger"):
        R.conv_acc(np.zeros((1, 1, 2, 2), dtype=int), np.zeros((1, 1, 3, 3), dtype=int))
    with pytest.raises(InputError, match="unknown accumulation method"):
        R.fc_acc(np.zeros((1, 2), dtype=int), np.zeros((1, 2), dtype=int), method="fast")
    with pytest.raises(ShapeError):
        R.fc_acc(np.zeros((1, 2), dtype=int), np.zeros((1, 3), dtype=int))
    f = LayerFormats(FixedFormat(8, 0), FixedFormat(8, 0), FixedFormat(8, 0), None)
    with pytest.raises(InputError, match="bias format"):
        R.finish(np.zeros((1, 2), dtype=int), np.zeros(2, dtype=int), f, False)
    with pytest.raises(InputError, match="2\\^62"):
        R.finish(np.array([[1 << 62]]), None, f, False)


# --------------------------------------------------------------------------------------------
# the executor
# --------------------------------------------------------------------------------------------
def small_chain() -> Graph:
    return chain("small", (2, 9, 8), [
        Conv2d("c1", (), 2, 4, (3, 3), (1, 1), (1, 1)), ReLU("r1", ()),
        MaxPool2d("p1", (), (2, 2), (2, 2), (0, 0), True),
        LRN("n1", (), 3),
        Conv2d("c2", (), 4, 3, (2, 3), (1, 2), (0, 1), bias=False), ReLU("r2", ()),
        AvgPool2d("a2", (), (2, 2), (1, 1)),
        Flatten("f", ()), Linear("fc1", (), 9, 7), ReLU("r3", ()), Dropout("d", ()),
        Linear("fc2", (), 7, 4), Softmax("sm", ()),
    ])


@pytest.mark.parametrize("bw", [4, 8, 12, 16])
@pytest.mark.parametrize("calibrated", [False, True])
def test_executor_matches_python_on_chain_with_host_layers(bw, calibrated):
    rng = np.random.default_rng(bw)
    g = small_chain()
    x = rng.integers(-(1 << (bw - 1)), 1 << (bw - 1), (3, *g.input_shape))
    qm = random_qmodel(g, rng, bw, bw, x_calib=x if calibrated else None, jitter=1)
    want_out, want_sats, want_env = py_execute(qm, x)
    res = R.execute(qm, x, keep="all")
    assert res.float_outputs == {"sm"}
    np.testing.assert_array_equal(res.output, want_out["sm"])
    assert res.output.dtype == np.float64
    assert dict(res.saturations) == want_sats
    for name, arr in res.layers.items():
        if name != "sm":
            assert arr.dtype == np.int64
            assert np.array_equal(arr, want_env[name]), name
    # every method, and the one-layer entry point, give the same integers
    for m in METHODS:
        if m == "f32" and bw > 12:  # 2^15·2^15 > 2^24: refused, as tested above
            continue
        other = R.execute(qm, x, keep={"fc2"}, method=m)
        assert np.array_equal(other.layers["fc2"], res.layers["fc2"]), m
    y, n = R.execute_layer(qm, "c2", [res.layers["n1"]])
    assert np.array_equal(y, res.layers["c2"]) and n == res.saturations["c2"]


def test_executor_dag_with_add_and_multiple_outputs():
    g = Graph("dag", (3, 6, 6), (
        Conv2d("a", (INPUT,), 3, 4, (3, 3), (1, 1), (1, 1)),
        ReLU("ra", ("a",)),
        Conv2d("b", (INPUT,), 3, 4, (1, 1)),
        Add("sum", ("ra", "b")),
        MaxPool2d("p", ("sum",), (2, 2), (2, 2)),
        Flatten("f", ("p",)),
        Linear("fc", ("f",), 36, 5),
    ), ("fc", "a"))
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, (2, 3, 6, 6))
    qm = random_qmodel(g, rng, 8, 8, x_calib=x)
    want_out, want_sats, _ = py_execute(qm, x)
    res = R.execute(qm, x)
    assert set(res.outputs) == {"fc", "a"}
    for k in want_out:
        assert np.array_equal(res.outputs[k], want_out[k])
    assert dict(res.saturations) == want_sats
    with pytest.raises(InputError, match="use .outputs"):
        _ = res.output


def test_relu_fusion_counts_only_positive_saturations():
    g = chain("one", (4,), [Linear("fc", (), 4, 2, bias=False), ReLU("r", ())])
    fmt = FixedFormat(8, 0)
    w = np.array([[100, 100, 100, 100], [-100, -100, -100, -100]])
    qm = QuantizedModel(g, fmt, {"fc": LayerFormats(fmt, fmt, fmt, None),
                                 "r": LayerFormats(fmt, fmt)}, {"fc": {"weight": w}})
    x = np.full((1, 4), 100)
    res = R.execute(qm, x, keep="all")
    assert res.layers["fc"].tolist() == [[127, -128]]  # the conv's own (pre-ReLU) output
    assert res.layers["r"].tolist() == [[127, 0]]
    assert res.saturations["fc"] == 1  # the negative value never saturates on the accelerator
    y, n = R.execute_layer(qm, "fc", [x])
    assert y.tolist() == [[127, -128]] and n == 1
    # the same layer as a graph output (no ReLU reads it alone) counts both ends
    g2 = chain("two", (4,), [Linear("fc", (), 4, 2, bias=False)])
    qm2 = QuantizedModel(g2, fmt, {"fc": LayerFormats(fmt, fmt, fmt, None)}, {"fc": {"weight": w}})
    assert R.execute(qm2, x).saturations["fc"] == 2


def test_float_input_and_saturation_report():
    g = small_chain()
    rng = np.random.default_rng(5)
    qm = random_qmodel(g, rng, 8, 8, fl_in=4)
    xf = rng.normal(0, 4, (2, *g.input_shape))
    res = R.execute(qm, xf, float_input=True, keep={INPUT})
    xi, nsat = R.quantize_input(qm, xf)
    assert res.saturations[INPUT] == nsat == int(np.count_nonzero(np.abs(xf) * 16 > 127.5))
    assert np.array_equal(res.layers[INPUT], xi)
    assert np.array_equal(res.output, R.execute(qm, xi).output)
    assert res.total_saturations == sum(res.saturations.values())


def test_on_layer_sees_every_layer_and_keep_does_not_change_results():
    g = small_chain()
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (2, *g.input_shape))
    qm = random_qmodel(g, rng, 8, 8, x_calib=x)
    seen = {}
    ex = R.ReferenceExecutor.build(qm)
    plain = ex.run(x)
    res = ex.run(x, on_layer=lambda n, a: seen.__setitem__(n, a.copy()))
    assert list(seen) == [lay.name for lay in g.layers]
    full = ex.run(x, keep="all")
    for name in seen:
        assert np.array_equal(seen[name], full.layers[name])
    assert np.array_equal(plain.output, res.output) and np.array_equal(full.output, res.output)
    assert plain.saturations == full.saturations == res.saturations
    assert set(ex.methods()) == {"c1", "c2", "fc1", "fc2"}


def test_executor_refusals():
    g = small_chain()
    rng = np.random.default_rng(1)
    qm = random_qmodel(g, rng, 8, 8)
    x = rng.integers(-128, 128, (1, *g.input_shape))
    with pytest.raises(ShapeError, match="expected a batch"):
        R.execute(qm, x[0])
    with pytest.raises(InputError, match="integer"):
        R.execute(qm, x.astype(np.float32))
    with pytest.raises(InputError, match="outside the format"):
        R.execute(qm, x * 4)
    with pytest.raises(InputError, match="unknown layers"):
        R.execute(qm, x, keep={"nope"})
    with pytest.raises(InputError, match="NaN"):
        R.execute(qm, np.full(x.shape, np.nan), float_input=True)
    with pytest.raises(InputError, match="reads 1 input"):
        R.execute_layer(qm, "c1", [x, x])
    with pytest.raises(InputError, match="prepared without"):
        R.ReferenceExecutor.build(qm, layers=["c1"]).run(x)
    gb = chain("bn", (1, 4, 4), [Conv2d("c", (), 1, 1, (1, 1)), BatchNorm2d("bn", (), 1)])
    f = FixedFormat(8, 0)
    qb = QuantizedModel(gb, f, {"c": LayerFormats(f, f, f, f), "bn": LayerFormats(f, f)},
                        {"c": {"weight": np.ones((1, 1, 1, 1), dtype=np.int64),
                               "bias": np.zeros(1, dtype=np.int64)}})
    with pytest.raises(InputError, match="batch norm"):
        R.execute(qb, np.zeros((1, 1, 4, 4), dtype=np.int64))


def test_int32_finish_path_equals_int64_path():
    """The executor finishes narrow layers in int32 when the bound allows; same integers."""
    g = small_chain()
    rng = np.random.default_rng(21)
    x = rng.integers(-8, 8, (2, *g.input_shape))
    qm = random_qmodel(g, rng, 4, 4, x_calib=x)
    if I8:
        ex = R.ReferenceExecutor.build(qm)
        assert any(p.int32_ok for p in ex.prepared.values())
    a = R.execute(qm, x, keep="all")
    b = R.execute(qm, x, keep="all", method="int64")
    for k in a.layers:
        assert np.array_equal(a.layers[k], b.layers[k]), k
    assert a.saturations == b.saturations


def test_random_qmodel_is_valid_and_lively():
    g = small_chain()
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (4, *g.input_shape))
    qm = random_qmodel(g, rng, 8, 8, x_calib=x)
    qm.validate()
    res = R.execute(qm, x, keep="all")
    for name in ("c1", "c2", "fc1"):
        a = res.layers[name]
        assert np.count_nonzero(a) > a.size // 8, name  # not all zero
        assert np.count_nonzero(np.abs(a) == 128) < a.size // 4, name  # not all saturated
    assert math.isclose(res.output.sum(), 4.0, rel_tol=1e-9)
    with pytest.raises(InputError, match="distribution"):
        random_qmodel(g, rng, 8, 8, weight_dist="gauss")  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [16, 24, 32])
def test_weight_digits_balanced_or_offset(bits):
    """Weights near the top of the range need offset digits; both give exact products."""
    top = (1 << (bits - 1)) - 1
    x = np.array([[3, -2, 1, 0], [-9, 8, 7, -6]])
    for w_hi in (1000, top - 300, top):
        w = np.array([[w_hi, -(1 << (bits - 1)), 5, -7], [1, 2, 3, 4]])
        for m in ("i8", "split") if I8 else ("split",):
            pw = R.prepare_matrix(w, x_bits=8, method=m)
            if m == "i8" and bits == 16:  # two digits: balanced iff the top digit fits
                assert (pw.c == 0) == (w_hi < top - 127)
            assert np.array_equal(R.fc_acc(x, w, method=m), x @ w.T), (bits, w_hi, m)


def test_threaded_tail_and_small_blocks_in_the_executor(monkeypatch):
    monkeypatch.setattr(P, "_BLOCK_BYTES", 300)
    monkeypatch.setattr(G, "_I8_K_CHUNK", 16)
    monkeypatch.setattr(G, "_PAR_MIN_ELEMS", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    g = small_chain()
    rng = np.random.default_rng(31)
    for bw in (8, 16):
        x = rng.integers(-(1 << (bw - 1)), 1 << (bw - 1), (3, *g.input_shape))
        qm = random_qmodel(g, rng, bw, bw, x_calib=x, jitter=1)
        want_out, want_sats, want_env = py_execute(qm, x)
        res = R.execute(qm, x, keep="all")
        assert dict(res.saturations) == want_sats
        for name in ("c1", "c2", "fc1", "fc2"):
            assert np.array_equal(res.layers[name], want_env[name]), (bw, name)


def test_one_executor_shared_by_threads():
    """Concurrent runs of one executor (the second one takes a private workspace)."""
    from concurrent.futures import ThreadPoolExecutor

    g = small_chain()
    rng = np.random.default_rng(8)
    xs = [rng.integers(-2**15, 2**15, (2, *g.input_shape)) for _ in range(4)]
    qm = random_qmodel(g, rng, 16, 16, x_calib=xs[0])
    ex = R.ReferenceExecutor.build(qm)
    want = [ex.run(x, keep="all") for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: ex.run(x, keep="all"), xs))
    for a, b in zip(want, got, strict=True):
        assert all(np.array_equal(a.layers[k], b.layers[k]) for k in a.layers)
        assert a.saturations == b.saturations


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_add_int_matches_python_integers(data):
    """The element-wise add against its transcription in Python integers: operand formats of
    every kind (fl negative, above bw, far apart), right and left data shifts, ties, extremes,
    saturation both ways, with and without ReLU."""
    k = data.draw(st.integers(2, 3))
    bws = [data.draw(st.integers(2, 16)) for _ in range(k)]
    fls = [data.draw(st.integers(-8, 24)) for _ in range(k)]
    out = FixedFormat(data.draw(st.integers(2, 16)), data.draw(st.integers(-8, 30)))
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3)),
             data.draw(st.integers(1, 3)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    extreme = data.draw(st.booleans())
    xs = []
    for bw in bws:
        lo, hi = -(1 << (bw - 1)), (1 << (bw - 1)) - 1
        xs.append(rng.choice([lo, hi, 0, -1, 1], shape) if extreme
                  else rng.integers(lo, hi + 1, shape))
    relu = data.draw(st.booleans())
    y, n = R.add_int(xs, fls, out, relu=relu)
    want, want_n = py_add(xs, fls, out, relu=relu)
    assert y.dtype == np.int64 and np.array_equal(y, want)
    assert n == want_n


def test_add_int_rounds_ties_up_and_refuses_bad_operands():
    # 3 at fl 1 (1.5) + 0 at fl 0 → fl_c 1; to fl 0: (3 + 1) >> 1 = 2; -3 → (-3 + 1) >> 1 = -1
    y, n = R.add_int([np.array([[3, -3]]), np.array([[0, 0]])], [1, 0], FixedFormat(8, 0))
    assert y.tolist() == [[2, -1]] and n == 0
    with pytest.raises(InputError, match="2\\+ operands"):
        R.add_int([np.array([[1]])], [0], FixedFormat(8, 0))
    with pytest.raises(ShapeError, match="differ in shape"):
        R.add_int([np.zeros((1, 2), int), np.zeros((1, 3), int)], [0, 0], FixedFormat(8, 0))
    with pytest.raises(InputError, match="2\\^62"):
        R.add_int([np.array([[1 << 14]]), np.array([[0]])], [0, 60], FixedFormat(8, 0))
