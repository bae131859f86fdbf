"""The exported Verilog under a second simulator (Icarus Verilog), against the same reference."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from deepfpga.rtl.icarus import run_icarus
from deepfpga.rtl.params import PEParams
from deepfpga.rtl.tiles import expected, random_job

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog")


def test_icarus_matches_reference(tmp_path):
    p = PEParams(convolvers=2, data_bits=8, weight_bits=8, bias_bits=16, acc_bits=24,
                 max_row_width=10, max_pad=1)
    rng = np.random.default_rng(21)
    jobs = [random_job(rng, p, max_height=6) for _ in range(8)]
    jobs += [random_job(rng, p, max_height=6, shift=-1, pool=True, accumulate=True,
                        use_bias=True, relu=False),
             random_job(rng, p, max_height=6, finish=False, pool=False, accumulate=True)]
    outs = run_icarus(p, jobs, tmp_path, seed=7, valid_pct=70, ready_pct=60)
    assert len(outs) == len(jobs)
    for k, (job, out) in enumerate(zip(jobs, outs, strict=True)):
        want, nsat = expected(job, p)
        assert np.array_equal(out.values, want), f"job {k}"
        assert out.sat_count == nsat, f"job {k}"
    assert sum(o.sat_count for o in outs) > 0


def test_icarus_wide_pe(tmp_path):
    """16-bit data, 48-bit accumulator, padding up to 2: wide ports through the hex vectors."""
    p = PEParams(convolvers=3, data_bits=16, weight_bits=16, bias_bits=32, acc_bits=48,
                 max_row_width=8, max_pad=2)
    rng = np.random.default_rng(22)
    jobs = [random_job(rng, p, max_height=5) for _ in range(5)]
    outs = run_icarus(p, jobs, tmp_path, seed=3, valid_pct=100, ready_pct=100)
    for job, out in zip(jobs, outs, strict=True):
        want, nsat = expected(job, p)
        assert np.array_equal(out.values, want)
        assert out.sat_count == nsat
