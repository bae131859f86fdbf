"""The exact-product engine (deepfpga.quant.gemm): every method, including whichever one the
timed probe picks on this machine, against Python integers, and at each method's bound."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfpga.errors import InputError
from deepfpga.quant import gemm as G
from deepfpga.quant import kernels as K
from deepfpga.quant import reference as R

F32 = K.f32_gemm_exact()
I8 = K.int8_gemm_available()


def py_fc(x: np.ndarray, w: np.ndarray) -> list[list[int]]:
    return [[sum(int(a) * int(b) for a, b in zip(row, wr, strict=True)) for wr in w.tolist()]
            for row in x.tolist()]


def _ints(rng: np.random.Generator, shape: tuple[int, ...], bits: int) -> np.ndarray:
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape)


@given(n=st.integers(1, 4), f=st.integers(1, 300), o=st.integers(1, 6),
       xb=st.integers(2, 12), wb=st.integers(2, 12), seed=st.integers(0, 2**32 - 1),
       extreme=st.booleans())
@settings(max_examples=80, deadline=None)
def test_f32_and_auto_match_python(n, f, o, xb, wb, seed, extreme):
    """float32 (chunked below 2^24) and the machine's own 'auto' choice are exact."""
    rng = np.random.default_rng(seed)
    x, w = _ints(rng, (n, f), xb), _ints(rng, (o, f), wb)
    if extreme:
        x[:] = -(1 << (xb - 1))
        w[0] = -(1 << (wb - 1))
    want = np.array(py_fc(x, w), dtype=np.int64)
    methods = ["auto"] + (["f32"] if F32 else [])
    for m in methods:
        assert np.array_equal(R.fc_acc(x, w, method=m), want), m
    xc, wc = x.reshape(n, f, 1, 1), w.reshape(o, f, 1, 1)
    for m in methods:
        assert np.array_equal(R.conv_acc(xc, wc, method=m).reshape(n, o), want), m


@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([8, 16]))
@settings(max_examples=20, deadline=None)
def test_auto_conv_matches_python(seed, bits):
    """A 3x3 convolution with stride and padding on the path this machine's probe picks."""
    rng = np.random.default_rng(seed)
    x, w = _ints(rng, (2, 3, 6, 5), bits), _ints(rng, (4, 3, 3, 3), bits)
    got = R.conv_acc(x, w, (2, 1), (1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((2, 4, 3, 5), dtype=object)
    for i, j in np.ndindex(3, 5):
        win = xp[:, :, 2 * i:2 * i + 3, j:j + 3].reshape(2, -1).astype(object)
        want[:, :, i, j] = win.dot(w.reshape(4, -1).astype(object).T)
    assert np.array_equal(got, want.astype(np.int64))


@pytest.mark.skipif(not F32, reason="float32 matmul is not IEEE float32 here")
def test_f32_chunks_at_and_past_2_24():
    # Exactly at the bound: max|x|·Σ|w| = 2^11·2^13 = 2^24 in one chunk.
    x = np.array([[-2048] * 4 + [2047] * 4])
    w = np.array([[1024] * 8])
    pw = G.prepare_matrix(w, x_bits=12, method="f32")
    assert pw.bound == G.F32_EXACT and pw.chunks == [(0, 8)]
    assert R.fc_acc(x, w, method="f32").tolist() == py_fc(x, w)
    # One more: two chunks, each within 2^24, still exact.
    w2 = np.array([[1024] * 7 + [1025]])
    pw2 = G.prepare_matrix(w2, x_bits=12, method="f32")
    assert pw2.bound == G.F32_EXACT + 2048 and len(pw2.chunks) == 2
    assert all(2048 * int(np.abs(w2[:, a:b]).sum(axis=1).max()) <= G.F32_EXACT
               for a, b in pw2.chunks)
    assert R.fc_acc(x, w2, method="f32").tolist() == py_fc(x, w2)
    # A single product beyond 2^24 is refused for float32; 'auto' routes it to a wider path.
    x3, w3 = np.array([[-4096, 1]]), np.array([[4097, 3]])
    with pytest.raises(InputError, match="float32 path is not exact"):
        R.fc_acc(x3, w3, method="f32")
    pw3 = G.prepare_matrix(w3, x_bits=13)
    assert pw3.method != "f32"
    assert R.fc_acc(x3, w3).tolist() == py_fc(x3, w3)


def test_f32_chunk_search_is_sound():
    rng = np.random.default_rng(5)
    for _ in range(20):
        k = int(rng.integers(1, 3000))
        w = _ints(rng, (5, k), 8)
        wa = np.abs(w).astype(np.int64)
        bounds = G._f32_bounds(wa, k, 128, int(np.abs(w).max()), int(np.abs(w).sum(1).max()))
        assert bounds is not None and bounds[0] == 0 and bounds[-1] == k
        assert all(a < b for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        assert all(128 * int(np.abs(w[:, a:b]).sum(axis=1).max()) <= G.F32_EXACT
                   for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def _fake_speeds(fastest: str) -> K.KernelSpeeds:
    mac: dict[str, float | None] = {"f32": 4e-12, "f64": 8e-12, "i8": 2e-12 if I8 else None,
                                    "int64": None}
    mac[fastest] = 1e-14
    return K.KernelSpeeds(mac, 1e-18)  # products dominate


@pytest.mark.parametrize("fastest", ["f32", "f64", "i8"])
@pytest.mark.parametrize("bits", [8, 16])
def test_auto_follows_the_measured_speeds(monkeypatch, fastest, bits):
    """Whatever the probe measures, 'auto' takes the fastest method that is exact, and the
    result is the same integers."""
    if fastest == "i8" and not I8:
        pytest.skip("torch._int_mm unavailable or inexact on this CPU")
    monkeypatch.setattr(G, "kernel_speeds", lambda: _fake_speeds(fastest))
    rng = np.random.default_rng(bits)
    x, w = _ints(rng, (3, 700), bits), _ints(rng, (4, 700), bits)
    pw = G.prepare_matrix(w, x_bits=bits)
    exact_f32 = F32 and bits == 8
    assert pw.method == (fastest if fastest != "f32" or exact_f32 else pw.method)
    if fastest == "f32" and not exact_f32:
        assert pw.method != "f32"
    assert R.fc_acc(x, w).tolist() == py_fc(x, w)


def test_demoted_float32_is_never_used(monkeypatch):
    """TF32/bfloat16 matmul settings make float32 inexact: the path is refused, not trusted."""
    monkeypatch.setattr(G, "kernel_speeds", lambda: _fake_speeds("f32"))
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert not K.f32_gemm_exact()
        w = np.ones((2, 3), dtype=np.int64)
        assert G.prepare_matrix(w, x_bits=8).method != "f32"
        with pytest.raises(InputError, match="float32 path is not exact"):
            G.prepare_matrix(w, x_bits=8, method="f32")
    finally:
        torch.set_float32_matmul_precision(before)
    assert K.f32_gemm_exact() == F32


def test_probe_is_short_cached_and_complete():
    t0 = time.perf_counter()
    a = K.kernel_speeds()
    b = K.kernel_speeds()
    assert time.perf_counter() - t0 < 5  # ~0.05 s alone; generous on a shared machine
    assert a.mac == b.mac and a.elem > 0
    assert (a.mac["i8"] is not None) == I8 and (a.mac["f32"] is not None) == F32
    assert a.mac["f64"] is not None and a.mac["f64"] > 0


def test_digit_fast_paths_match_the_general_split():
    """16-bit offset digits as bytes, and the balanced-fit test from the range alone."""
    a16 = np.arange(-(1 << 15), 1 << 15, dtype=np.int16).reshape(256, 256)
    fast, c = G._digits(a16, 2, 8)
    slow, c2 = G._digits(a16.astype(np.int64), 2, 8)
    assert c == c2 == 128 and all(np.array_equal(f, s) for f, s in zip(fast, slow, strict=True))
    assert np.array_equal(fast[0].astype(np.int64) + 256 * fast[1].astype(np.int64) + c,
                          a16.astype(np.int64))
    rng = np.random.default_rng(8)
    for n, b in ((2, 8), (3, 8), (2, 16)):
        for _ in range(50):
            lo, hi = sorted(int(v) for v in rng.integers(-(1 << (n * b - 1)), 1 << (n * b - 1),
                                                         2))
            ds, _ = G._digits(np.array([lo, hi], dtype=np.int64), n, b, balanced=True)
            fits = all(-(1 << (b - 1)) <= int(d) < 1 << (b - 1) for d in ds[-1])
            assert G._balanced_fits(lo, hi, n, b) == fits
