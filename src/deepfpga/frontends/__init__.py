"""Model front ends: torch modules, ONNX files and float-model `.npz` files into the graph IR.

Resolving a model *spec* (a zoo name, a file, or package.module:factory) is deepfpga.models, above
both this package and the zoo (which builds its trained models with the torch importer).
"""

from __future__ import annotations

from collections.abc import Sequence

from deepfpga.errors import InputError


def parse_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """'3,224,224' (or a sequence) → (3, 224, 224); every dimension a positive integer."""
    if isinstance(text, str):
        parts = [s.strip() for s in text.replace("x", ",").split(",")]
        try:
            dims = tuple(int(s) for s in parts) if text.strip() else ()
        except ValueError:  # also an empty item: '1,,28'
            raise InputError(f"bad input shape {text!r} (expected e.g. 3,224,224)") from None
    else:
        dims = tuple(int(d) for d in text)
    if not dims or min(dims) <= 0:
        raise InputError(f"bad input shape {text!r} (expected positive dimensions, e.g. 3,224,224)")
    return dims
