"""`deepfpga disasm PROGRAM`: a compiled program as a readable listing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from deepfpga.cli.output import add_json_flag, print_json
from deepfpga.errors import InputError

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Manifest


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "disasm", help="list a compiled program, one line per instruction",
        description="Decode program.bin (header, CRC and config hash checked) and print one line"
                    " per instruction, grouped by layer. The config hash is checked against"
                    " --target, else against the manifest.json next to the program.",
    )
    p.add_argument("program", metavar="PROGRAM", help="program.bin, or a compiled OUTDIR")
    p.add_argument("--manifest", metavar="FILE",
                   help="manifest.json (default: next to the program) for layer names")
    p.add_argument("--target", metavar="PRESET_OR_TOML",
                   help="check the program against this accelerator config")
    add_json_flag(p)
    return p


def _manifest(path: Path | None) -> Manifest | None:
    from deepfpga.compiler.artifact import Manifest

    if path is None or not path.is_file():
        return None
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None
    try:
        return Manifest.from_dict(m)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def run(args: argparse.Namespace) -> int:
    from deepfpga.compiler.disasm import listing, listing_json
    from deepfpga.hw.isa import decode_program

    path = Path(args.program)
    if path.is_dir():
        path = path / "program.bin"
    if not path.is_file():
        raise InputError(f"no such program file: {path}")
    man_path = Path(args.manifest) if args.manifest else path.with_name("manifest.json")
    if args.manifest and not man_path.is_file():
        raise InputError(f"no such manifest file: {man_path}")
    manifest = _manifest(man_path)
    expected = None
    if args.target:
        from deepfpga.hw.config import load_config

        expected = load_config(args.target).hash()
    elif manifest is not None:
        try:
            expected = bytes.fromhex(manifest.config.hash)
        except ValueError:
            raise InputError(f"{man_path}: no valid config hash") from None
    program = decode_program(path.read_bytes(), expected)
    if args.json:
        print_json({"program": str(path), "config_hash": program.config_hash.hex(),
                    "checked_against": "target" if args.target else
                    ("manifest" if manifest is not None else None),
                    "instructions": listing_json(program, manifest)})
        return 0
    print(f"; {path}: {len(program.instructions)} instructions, config"
          f" {program.config_hash.hex()[:16]}…"
          + ("" if expected is not None else " (config not checked: no --target or manifest)"))
    print(listing(program, manifest))
    return 0
