"""Synthesis driver: log parsing (fast) and one small real run per flow (slow)."""

from __future__ import annotations

import pytest

from deepfpga.errors import InputError
from deepfpga.rtl.params import PEParams
from deepfpga.rtl.synth import parse_nextpnr_fmax, parse_yosys_stat, summarize, synthesize

SMALL = PEParams(convolvers=2, data_bits=8, weight_bits=8, bias_bits=16, acc_bits=24,
                 max_row_width=32, max_pad=1)

# The shape of Yosys 0.70's `stat` report (counts invented for the parser test).
STAT_LOG = """
2.55. Printing statistics.

=== deepfpga_pe ===

     2637 wires
       32 ports
      900 cells
        1   BUFG
        3   DSP48E1
        9   FDRE
        2   LUT6
        1   RAM64M
        1   RAMB18E1

3. Printing statistics.

=== deepfpga_pe ===

        +----------Local Count, excluding submodules.
        |
     2637 wires
     5318 wire bits
       32 ports
     1840 cells
        7   $scopeinfo
       18   DSP48E1
      725   FDRE
        5   FDSE
      245   LUT2
      151   LUT6
        1   RAM32M
       12   RAM64M
        2   RAMB36E1

End of script.
"""


def test_parse_yosys_stat_takes_the_last_report():
    cells = parse_yosys_stat(STAT_LOG)
    assert cells["DSP48E1"] == 18 and cells["FDRE"] == 725 and "wires" not in cells
    s = summarize(cells, "xilinx")
    assert s == {"luts": 245 + 151, "lutram_luts": 4 + 12 * 4, "ffs": 730, "bram18": 0,
                 "bram36": 2, "dsps": 18}


def test_parse_nextpnr_fmax_takes_the_final_figure():
    log = ("Info: Max frequency for clock '$glbnet$clk': 86.47 MHz (FAIL at 100.00 MHz)\n"
           "Info: Max frequency for clock '$glbnet$clk': 112.51 MHz (PASS at 100.00 MHz)\n")
    assert parse_nextpnr_fmax(log) == 112.51
    with pytest.raises(RuntimeError):
        parse_nextpnr_fmax("nothing here")


def test_unknown_device_is_refused():
    with pytest.raises(InputError, match="unknown device"):
        synthesize(SMALL, "xc7z999")


@pytest.mark.slow
def test_synth_xilinx_small_pe(tmp_path):
    r = synthesize(SMALL, "xc7z020", workdir=tmp_path, timeout_s=900)
    assert r.multipliers == 18
    # 8×8 products fit one DSP48E1 each; Yosys may leave a few in LUTs, never use more.
    assert 0 < r.dsps <= r.multipliers
    assert r.luts > 0 and r.ffs > 0
    assert (tmp_path / "synth.log").is_file()


@pytest.mark.slow
def test_synth_ecp5_small_pe_with_fmax(tmp_path):
    r = synthesize(SMALL, "ecp5-85f", workdir=tmp_path, timeout_s=1200)
    assert 0 < r.dsps <= r.multipliers
    assert r.fmax_mhz is not None and r.fmax_mhz > 10
    assert (tmp_path / "pnr.log").is_file()
