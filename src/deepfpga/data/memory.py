"""Refuse a request the machine's memory cannot hold, before the work starts."""

from __future__ import annotations

from pathlib import Path

from deepfpga.errors import InputError

GIB = 1 << 30


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(nbytes: int, what: str, hint: str, available: int | None = None) -> None:
    """InputError when `nbytes` (what `what` needs) exceed the memory available now."""
    avail = available_bytes() if available is None else available
    if avail is not None and nbytes > avail:
        raise InputError(f"{what} needs about {nbytes / GIB:.1f} GiB, but only"
                         f" {avail / GIB:.1f} GiB of memory is available; {hint}")
