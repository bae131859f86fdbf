"""Error types shared by every stage.

`InputError` means the user gave something wrong (a file, a flag, a model): the CLI prints its
one-line message and exits 2. Anything else escaping a command is an internal failure (exit 1).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: the message names the bad key, layer, node or byte."""


class ShapeError(InputError):
    """A graph whose shapes do not fit together."""


class UnsupportedModelError(InputError):
    """A model with operations deepfpga cannot represent; the message lists every one."""

    def __init__(self, unsupported: list[tuple[str, str]]):
        self.unsupported = list(unsupported)
        listing = ", ".join(f"{name} ({op})" for name, op in self.unsupported)
        super().__init__(f"unsupported operations in model: {listing}")
