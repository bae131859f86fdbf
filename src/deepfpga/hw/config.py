"""Loading an AcceleratorConfig: presets, TOML files, validation naming the key, and the check
that the config fits its device. The class itself lives in deepfpga.hw.accelerator (re-exported
here: `from deepfpga.hw.config import AcceleratorConfig, load_config`).
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

from deepfpga.errors import InputError
from deepfpga.fileio import parse_toml, read_toml
from deepfpga.hw.accelerator import AcceleratorConfig
from deepfpga.hw.resources import check_fits

__all__ = ["PRESETS", "AcceleratorConfig", "config_from_dict", "config_to_toml", "load_config"]

PRESETS = ("zc706-paper", "zc706", "zedboard", "tiny", "zc706-8")


def config_from_dict(d: dict[str, Any], source: str) -> AcceleratorConfig:
    if not isinstance(d, dict):
        raise InputError(f"{source}: expected a table of keys, got {type(d).__name__}")
    names = {f.name: f for f in dataclasses.fields(AcceleratorConfig)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise InputError(f"{source}: unknown key {unknown[0]!r}"
                         f" (known: {', '.join(sorted(names))})")
    missing = sorted(k for k, f in names.items()
                     if k not in d and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise InputError(f"{source}: missing key {missing[0]!r}")
    notes = d.get("notes", {})
    if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
        raise InputError(f"{source}: key 'notes' must be a table of strings")
    for k, f in names.items():
        if k in d and f.type == "str" and not isinstance(d[k], str):
            raise InputError(f"{source}: key {k!r} must be a string")
        if k in d and f.type == "float" and isinstance(d[k], int) and not isinstance(d[k], bool):
            d = {**d, k: float(d[k])}
    try:
        return AcceleratorConfig(**d)
    except InputError as e:
        raise InputError(f"{source}: {e}") from None


def load_config(spec: str | Path) -> AcceleratorConfig:
    """A preset name (`zc706-paper`, `zedboard`, `tiny`) or the path of a TOML file."""
    spec_s = str(spec)
    if spec_s in PRESETS:
        source = f"preset {spec_s}"
        text = resources.files("deepfpga.hw.presets").joinpath(f"{spec_s}.toml").read_text()
        d = parse_toml(text, source)
    else:
        path = Path(spec_s)
        if not path.is_file():
            raise InputError(f"target {spec_s!r} is neither a preset ({', '.join(PRESETS)})"
                             " nor a TOML file")
        source = str(path)
        d = read_toml(path, source)
    cfg = config_from_dict(d, source)
    check_fits(cfg)
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    # a TOML basic string: JSON's escapes are TOML's (\" \\ \n \uXXXX)
    return json.dumps(str(v), ensure_ascii=False)


def config_to_toml(cfg: AcceleratorConfig, comment: str = "") -> str:
    """`cfg` as a target file that `load_config` reads back to an equal config (every key, in
    the class's order; `notes` as a table). `comment` lines go first, as TOML comments."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    d = cfg.to_dict()
    notes = d.pop("notes")
    lines += [f"{k} = {_toml_value(v)}" for k, v in d.items()]
    if notes:
        lines += ["", "[notes]"]
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"
