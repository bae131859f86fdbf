"""`deepfpga rtl pe -o DIR` and `rtl synth`: bad PE parameters and output directories."""

from __future__ import annotations

import pytest

DIR_KINDS = ("file/", "ro", "empty", "long", "isfile")


@pytest.mark.parametrize("args,match", [
    (["--bits", "0"], "bits"), (["--bits", "64"], "bits"), (["--convolvers", "0"], "convolvers"),
    (["--convolvers=-2"], "convolvers"), (["--acc-bits", "4"], "acc"),
    (["--max-pad", "9"], "pad"), (["--max-row-width", "0"], "row"),
    (["--target", "zc707"], "neither a preset"), (["--bits", "eight"], "invalid int"),
])
def test_bad_pe_parameters(args, match, work, refused):
    out = work / "v"
    refused(["rtl", "pe", *args, "-o", out], match)
    assert not out.exists()


@pytest.mark.parametrize("kind", DIR_KINDS)
def test_bad_output_dir(kind, work, bad_location, refused):
    path, match = bad_location(kind, "")
    refused(["rtl", "pe", f"--output={path}"], match, keep=[work / "existing.npz"])


@pytest.mark.parametrize("args,match", [
    (["--device", "xc9"], "invalid choice"),
    (["--device", "ecp5-85f", "--workdir", "WORK/existing.npz/w"], "is not a directory"),
    (["--device", "ecp5-85f", "--bits", "0"], "bits"),
    (["--device", "ecp5-85f", "--timeout", "nan"], "--timeout"),
    (["--device", "ecp5-85f", "--timeout=-1"], "--timeout"),
    (["--device", "ecp5-85f", "--timeout", "inf"], "--timeout"),
])
def test_bad_synth(args, match, work, refused):
    refused(["rtl", "synth", *[a.replace("WORK", str(work)) for a in args]], match)
