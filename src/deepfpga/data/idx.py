"""IDX files (the MNIST / Fashion-MNIST container), parsed with numpy and fully validated.

Layout: 2 zero bytes, a type code, the number of dimensions d, d big-endian uint32 sizes, then the
data in C order, big-endian. Only unsigned bytes (type 0x08) occur in (Fashion-)MNIST.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from deepfpga.errors import InputError

# type code -> big-endian dtype
_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decompress regardless of the suffix
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{path}: corrupt gzip stream ({e})") from None
    return raw


def parse_idx(data: bytes, source: str = "<bytes>", items: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a native-endian array; refuse bad magic numbers and sizes.
    `items`: `data` holds only the header and the first `items` entries of the first axis
    (fewer if the file has fewer), as `read_idx` reads them; those must all be there."""
    if len(data) < 4:
        raise InputError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise InputError(
            f"{source}: bad IDX magic {data[:4].hex()} (the first two bytes must be zero)"
        )
    code, ndim = data[2], data[3]
    if code not in _TYPES:
        raise InputError(
            f"{source}: bad IDX magic {data[:4].hex()} (unknown type code {code:#04x})"
        )
    if ndim == 0:
        raise InputError(f"{source}: bad IDX magic {data[:4].hex()} (zero dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"{source}: truncated IDX header ({len(data)} of {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _TYPES[code]
    if items is not None:
        dims = (min(items, dims[0]), *dims[1:])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        raise InputError(
            f"{source}: IDX size mismatch: header says {dims} ({expected} data bytes), "
            f"file has {got} data bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str], limit: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not. `limit`: only the first `limit` entries of
    the first axis are read (and decompressed), the rest of the file is left unread."""
    p = Path(path)
    if limit is None:
        return parse_idx(_read_bytes(p), str(p))
    return parse_idx(_read_head(p, limit), str(p), limit)


def _read_head(path: Path, limit: int) -> bytes:
    """The header and the bytes of the first `limit` entries (all there are, if fewer)."""
    if not path.is_file():
        raise InputError(f"IDX file not found: {path}")
    with path.open("rb") as f:
        zipped = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if zipped else path.open("rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[2] not in _TYPES:
                return head                     # parse_idx names what is wrong
            head += f.read(4 * head[3])
            if len(head) < 4 + 4 * head[3] or not head[3]:
                return head
            dims = np.frombuffer(head, dtype=">u4", count=head[3], offset=4).tolist()
            n = min(limit, dims[0]) * int(np.prod(dims[1:], dtype=np.int64))
            return head + f.read(n * _TYPES[head[2]].itemsize)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path}: corrupt gzip stream ({e})") from None
