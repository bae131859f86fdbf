"""Atomic output files: a crash or a full disk never leaves a half-written result behind."""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepfpga.errors import InputError

# What reading a damaged .npz/.npy can raise: a broken zip directory, a corrupt deflate stream,
# a truncated member, a bad .npy header, a pickled object refused, an unknown zip version or
# compression method.
NPZ_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` via a temp file in the same directory and an atomic rename.

    The file gets ordinary permissions (0666 less the umask), not mkstemp's private 0600.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temp name is kept short: a target name near NAME_MAX must still work.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:64]}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_default(o: Any) -> Any:
    """numpy scalars and arrays, tuples and sets → plain JSON values (json.dumps `default`)."""
    if isinstance(o, np.integer | np.bool_):
        return o.item()
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple | set | frozenset):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Save a compressed `.npz` (no pickled objects) atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def parse_json(text: str, where: str) -> Any:
    """JSON from a model file; invalid, too deeply nested or non-finite JSON is an InputError."""
    def no_constants(name: str) -> Any:
        raise ValueError(f"non-finite number {name}")

    try:
        return json.loads(text, parse_constant=no_constants)
    except (json.JSONDecodeError, ValueError) as e:
        raise InputError(f"{where} holds invalid JSON ({e})") from None
    except RecursionError:
        raise InputError(f"{where} holds JSON nested too deeply") from None


def read_toml(path: Path, where: str) -> dict[str, Any]:
    """The TOML table of file `path`; a file that is not UTF-8 or not TOML is an InputError
    naming `where` (and the bad byte)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{where}: not a TOML text file (byte {e.start} is not UTF-8)") from None
    except OSError as e:
        raise InputError(f"{where}: cannot be read ({e.strerror})") from None
    return parse_toml(text, where)


def parse_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{where}: invalid TOML: {e}") from None


def check_output(path: str | os.PathLike[str], flag: str, *, directory: bool = False,
                 inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """Refuse an output location that cannot be written, before any work is done.

    `path` is an output file (or, with `directory`, an output directory that may not exist
    yet); `flag` names it in the message (e.g. "--out"). Nothing is created: the nearest
    existing ancestor must be a directory in which a file can be created (probed with a temp
    file: that also catches read-only file systems, and asks the kernel rather than guessing
    from permission bits, which root ignores). An output
    file that is one of `inputs` is refused, so that a run never overwrites what it reads.
    """
    text = os.fspath(path)
    if not text:
        raise InputError(f"{flag}: empty path")
    p = Path(text)
    where = f"{flag} {text}"
    for part in p.parts:
        if len(os.fsencode(part)) > 255:
            raise InputError(f"{where}: a path component is longer than 255 bytes")
    if p.exists() or p.is_symlink():
        if directory and not p.is_dir():
            raise InputError(f"{where}: exists and is not a directory")
        if not directory and p.is_dir():
            raise InputError(f"{where}: is a directory, not a file")
        if not directory and not p.exists():
            raise InputError(f"{where}: is a dangling symbolic link")
    for i in inputs:
        if i is not None and os.fspath(i) and same_file(p, Path(i)):
            raise InputError(f"{where}: is also an input ({os.fspath(i)}); refusing to"
                             " overwrite it")
    base = p if (directory and p.is_dir()) else p.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise InputError(f"{where}: {base} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".deepfpga-probe.", dir=base)
    except OSError as e:
        reason = e.strerror or errno.errorcode.get(e.errno or 0, str(e))
        raise InputError(f"{where}: cannot write in {base} ({reason})") from None
    os.close(fd)
    os.unlink(probe)
    return p


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (an existing one, or the same resolved location)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False
