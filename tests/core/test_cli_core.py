"""CLI conventions shared by every command."""

from deepfpga.cli import main
from deepfpga.cli.output import table


def test_no_command_exits_2(capsys):
    assert main([]) == 2


def test_unknown_command_exits_2(capsys):
    try:
        main(["frobnicate"])
    except SystemExit as e:
        assert e.code == 2
    assert "frobnicate" in capsys.readouterr().err


def test_table_aligns_numbers_right():
    t = table(["layer", "macs"], [["conv1", 10], ["fc", 12345]])
    lines = t.splitlines()
    assert lines[0].startswith("layer")
    assert lines[2].endswith("    10") and lines[3].endswith("12,345")
    assert len({len(x) for x in lines[2:]}) == 1
