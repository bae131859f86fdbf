"""`deepfpga disasm PROGRAM`: damaged program files and manifests."""

from __future__ import annotations

import shutil

import pytest


def _damaged(files, work, how):
    d = work / "b"
    shutil.copytree(files.compiled, d)
    p = d / "program.bin"
    data = bytearray(p.read_bytes())
    p.write_bytes(bytes(how(data)))
    return p


def _flip(i):
    def f(b):
        b[i if i >= 0 else len(b) + i] ^= 0x40
        return b
    return f


CASES = {
    "empty": (lambda b: b"", "shorter than"),
    "header-only-half": (lambda b: b[:8], "shorter than"),
    "truncated": (lambda b: b[: len(b) - 3], "program"),
    "extra-bytes": (lambda b: b + b"\x00" * 5, "program"),
    "bad-magic": (_flip(0), "magic"),
    "bad-version": (_flip(5), "version"),
    "flipped-instruction": (_flip(-2), "CRC"),
    "flipped-crc": (_flip(12), "CRC"),
    "text": (lambda b: b"hello world, not a program at all" * 4, "magic"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_program(case, files, work, refused):
    p = _damaged(files, work, CASES[case][0])
    refused(["disasm", p, "--json"], CASES[case][1])


def test_program_against_wrong_target(files, refused):
    refused(["disasm", files.program, "--target", "zedboard"], "config")


def test_bad_target_file(files, work, refused):
    (work / "t.toml").write_bytes(b"\xff\xfe\x00")
    refused(["disasm", files.program, "--target", work / "t.toml"], "not a TOML text file")


@pytest.mark.parametrize("text,match", [("{", "invalid JSON"), ("[]", "object"),
                                        ('{"config": 3}', "manifest"),
                                        ('{"config": {"hash": "zz"}}', "manifest")])
def test_bad_manifest(text, match, files, work, refused):
    (work / "m.json").write_text(text)
    refused(["disasm", files.program, "--manifest", work / "m.json"], match)


@pytest.mark.parametrize("what", ["missing", "dir-without-program", "manifest-missing"])
def test_missing(what, files, work, refused):
    if what == "missing":
        refused(["disasm", work / "nope.bin"], "no such program")
    elif what == "dir-without-program":
        (work / "d").mkdir()
        refused(["disasm", work / "d"], "no such program")
    else:
        refused(["disasm", files.program, "--manifest", work / "no.json"], "no such manifest")
