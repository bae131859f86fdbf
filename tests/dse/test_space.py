"""dse.space: the default space, space files and their refusals, enumeration."""

from __future__ import annotations

import math
import re

import pytest

from deepfpga.dse.space import DEFAULT_AXES, Space, default_space, load_space, point_key
from deepfpga.errors import InputError


def test_default_space_is_the_documented_product() -> None:
    s = default_space()
    assert s.size == math.prod(len(v) for v in DEFAULT_AXES.values()) == 213_840
    assert s.uses_shares and s.names == tuple(DEFAULT_AXES)


def test_enumeration_visits_every_point_once_last_axis_fastest() -> None:
    s = Space((("num_pe", (1, 2)), ("convolvers_per_pe", (4, 8, 16))))
    pts = [s.point(s.genes(i)) for i in range(s.size)]
    assert pts[:3] == [{"num_pe": 1, "convolvers_per_pe": c} for c in (4, 8, 16)]
    assert len({point_key(p) for p in pts}) == 6
    assert point_key(pts[4]) == "num_pe=2,convolvers_per_pe=8"


def test_space_file_with_fixed_keys(small_space) -> None:
    s = load_space(small_space)
    assert s.size == 12 and s.uses_shares
    assert dict(s.fixed) == {"bram_share": 0.9, "weight_share": 0.2, "fc_share": 0.5}
    assert s.to_dict()["axes"]["convolvers_per_pe"] == [4, 8, 16]


@pytest.mark.parametrize("text,match", [
    ("[axes]\nnum_pe = [1, 2]\n[other]\n", "unknown table 'other'"),
    ("[fixed]\nnum_pe = 2\n", "needs an [axes] table"),
    ("[axes]\nnum_pe = 2\n", "must be a list"),
    ("[axes]\nnum_pe = []\n", "no values"),
    ("[axes]\nnum_pe = [1, 1]\n", "repeats a value"),
    ("[axes]\nnum_pe = [1.5]\n", "must be an integer"),
    ("[axes]\nnum_pe = [true]\n", "not a number"),
    ("[axes]\nddr_bandwidth_gbps = [nan]\n", "not finite"),
    ("[axes]\nnum_pes = [1]\n", "unknown key 'num_pes'"),
    ("[axes]\nclock_mhz = [100, 150]\n", "set by --clock"),
    ("[axes]\ndata_bits = [8]\n", "set by --bits"),
    ("[axes]\ndevice = [1]\n", "set by --device"),
    ("[axes]\nnum_pe = [1]\n[fixed]\nnum_pe = 2\n", "both an axis and fixed"),
    ("[axes]\nbram_share = [1.5]\n", "must be in (0, 1]"),
    ("[axes]\nbram_share = [0.5]\n", "missing 'input_share'"),
    ("[axes]\nbram_share = [1.0]\ninput_share = [0.4]\nweight_share = [0.2]\n"
     "fc_share = [0.5]\n[fixed]\ninput_buffer_bytes = 4096\n", "give one or the other"),
    ("[axes\n", "invalid TOML"),
])
def test_bad_space_files_are_refused_naming_the_key(tmp_path, text, match) -> None:
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(InputError, match=re.escape(match)):
        load_space(p)


def test_space_file_that_is_not_text(tmp_path) -> None:
    p = tmp_path / "s.toml"
    p.write_bytes(b"[axes]\nnum_pe = [1]\n\xff")
    with pytest.raises(InputError, match="byte 20 is not UTF-8"):
        load_space(p)
    with pytest.raises(InputError, match="no such file"):
        load_space(tmp_path / "missing.toml")
