"""The whole PE, cycle-accurate (amaranth.sim), bit-exact against the reference on random tiles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.rtl.params import PEParams
from deepfpga.rtl.simulate import simulate
from deepfpga.rtl.tiles import TileJob, expected, random_job, validate_job

SMALL = PEParams(convolvers=2, data_bits=8, weight_bits=8, bias_bits=16, acc_bits=24,
                 max_row_width=10, max_pad=1)
CONFIGS = [
    SMALL,
    PEParams(convolvers=3, data_bits=16, weight_bits=16, bias_bits=32, acc_bits=48,
             max_row_width=9, max_pad=2),
    PEParams(convolvers=5, data_bits=6, weight_bits=4, bias_bits=8, acc_bits=14,
             max_row_width=7, max_pad=1),
]


def _jobs(p: PEParams, seed: int, n: int) -> list[TileJob]:
    rng = np.random.default_rng(seed)
    jobs = [random_job(rng, p, max_height=6) for _ in range(n)]
    # Make sure every feature appears whatever the draw: s = 0, s < 0 on small values, s > 0,
    # each with and without ReLU, pool, partial sums and bias, at both strides.
    forced = [
        dict(shift=0, relu=False, pool=False, accumulate=True, use_bias=False, stride=1),
        dict(shift=-2, relu=True, pool=True, accumulate=False, use_bias=True, stride=2),
        dict(shift=3, relu=False, pool=True, accumulate=True, use_bias=True, stride=1),
        dict(finish=False, pool=False, accumulate=True, use_bias=True, stride=2),
    ]
    return jobs + [random_job(rng, p, max_height=6, **f) for f in forced]


@pytest.mark.parametrize("p", CONFIGS, ids=lambda p: p.tag())
def test_random_tiles_bit_exact(p):
    jobs = _jobs(p, seed=p.convolvers, n=10)
    outs = simulate(p, jobs, seed=1, valid_prob=0.75, ready_prob=0.75)
    qmax, qmin = (1 << (p.data_bits - 1)) - 1, -(1 << (p.data_bits - 1))
    hit_max = hit_min = 0
    for k, (job, out) in enumerate(zip(jobs, outs, strict=True)):
        want, nsat = expected(job, p)
        assert np.array_equal(out.values, want), f"job {k}"
        assert out.sat_count == nsat, f"job {k}"
        if job.finish:
            hit_max += int(np.count_nonzero(want == qmax))
            hit_min += int(np.count_nonzero(want == qmin))
    # The draw covers what the brief asks for.
    assert {j.stride for j in jobs} == {1, 2}
    assert any(j.shift > 0 for j in jobs) and any(j.shift == 0 for j in jobs)
    assert any(j.shift < 0 and j.finish for j in jobs)
    for flag in ("relu", "pool", "finish"):
        assert {bool(getattr(j, flag)) for j in jobs} == {False, True}
    assert {j.psum is None for j in jobs} == {False, True}
    assert {j.bias is None for j in jobs} == {False, True}
    assert sum(o.sat_count for o in outs) > 0 and hit_max > 0 and hit_min > 0


def test_full_rate_and_back_pressure():
    """Without stalls: one pixel per cycle, so a tile takes its padded size plus the latency.
    Under heavy back-pressure the credit FIFO never loses a result."""
    p = SMALL
    rng = np.random.default_rng(11)
    jobs = [random_job(rng, p, stride=1, pool=False, width=10, height=6, pad=(1, 1, 1, 1))
            for _ in range(3)]
    fast = simulate(p, jobs, valid_prob=1.0, ready_prob=1.0)
    slow = simulate(p, jobs, seed=5, valid_prob=1.0, ready_prob=0.1)
    for job, f, s in zip(jobs, fast, slow, strict=True):
        want, nsat = expected(job, p)
        assert np.array_equal(f.values, want) and np.array_equal(s.values, want)
        hp, wp = job.padded_shape
        assert hp * wp <= f.cycles <= hp * wp + 25
        assert s.cycles > 5 * f.cycles


def test_weights_and_config_change_between_tiles():
    """Back-to-back tiles with different weights, sizes and modes reuse one PE correctly."""
    p = SMALL
    rng = np.random.default_rng(3)
    base = random_job(rng, p, stride=1, pool=True, width=8, height=6)
    other = TileJob(x=base.x, w=-base.w, pad=base.pad, stride=1, psum=None, bias=None,
                    finish=True, relu=True, pool=False, shift=base.shift + 1)
    jobs = [base, other, base]
    outs = simulate(p, jobs, seed=2, valid_prob=0.8, ready_prob=0.8)
    for job, out in zip(jobs, outs, strict=True):
        want, nsat = expected(job, p)
        assert np.array_equal(out.values, want)
        assert out.sat_count == nsat
    assert np.array_equal(outs[0].values, outs[2].values)


def test_from_config_matches_preset():
    from deepfpga.hw.config import load_config
    from deepfpga.rtl.pe import PE

    cfg = load_config("tiny")
    pe = PE.from_config(cfg)
    assert pe.params.convolvers == cfg.convolvers_per_pe
    assert pe.params.data_bits == cfg.data_bits
    assert pe.params.weight_bits == cfg.weight_bits
    assert pe.params.acc_bits == cfg.acc_bits
    assert pe.params.max_row_width == cfg.max_row_width
    assert pe.params.multipliers == 9 * cfg.convolvers_per_pe
    assert len(pe.pix.payload.as_value()) == cfg.convolvers_per_pe * cfg.data_bits
    pe._MustUse__silence = True            # built to inspect, not to elaborate


@pytest.mark.parametrize("bad,msg", [
    (dict(convolvers=0), "convolvers"),
    (dict(acc_bits=10, data_bits=8, weight_bits=8), "acc_bits"),
    (dict(bias_bits=40), "bias_bits"),
    (dict(max_pad=4), "max_pad"),
    (dict(max_row_width=0, max_pad=1), "max_row_width"),
    (dict(data_bits=1), "data_bits"),
])
def test_bad_params_name_the_key(bad, msg):
    with pytest.raises(InputError, match=msg):
        dataclasses.replace(SMALL, **bad)


def test_bad_jobs_are_refused():
    p = SMALL
    rng = np.random.default_rng(0)
    good = random_job(rng, p, width=5, height=5, pad=(0, 0, 0, 0), stride=1, pool=False)
    validate_job(good, p)
    cases = [
        (dict(x=np.zeros((2, 5, 13), np.int64)), "width"),
        (dict(x=np.full((2, 5, 5), 200, np.int64)), "range"),
        (dict(pad=(2, 0, 0, 0)), "pad"),
        (dict(stride=3), "stride"),
        (dict(shift=200), "shift"),
        (dict(pool=True, finish=False), "pool"),
        (dict(psum=np.zeros((2, 2), np.int64)), "psum"),
    ]
    for change, msg in cases:
        fields = {k: getattr(good, k) for k in ("x", "w", "pad", "stride", "psum", "bias",
                                                 "bias_shift", "finish", "relu", "pool",
                                                 "shift")}
        fields.update(change)
        with pytest.raises(InputError, match=msg):
            validate_job(TileJob(**fields), p)
