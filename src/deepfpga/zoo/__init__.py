"""Model zoo: ImageNet architectures (no weights) and the trained Fashion-MNIST models.

`get(name)` builds a fresh Graph; nothing is built or loaded at import time.
"""

from __future__ import annotations

import importlib

from deepfpga.errors import InputError
from deepfpga.ir.graph import Graph

# Trained models whose weights ship with the package (built by deepfpga.zoo.fmnist).
FMNIST_NAMES = ("fmnist-vgg", "fmnist-alex", "fmnist-resnet")


def names() -> list[str]:
    from deepfpga.zoo.imagenet import BUILDERS

    return [*BUILDERS, *FMNIST_NAMES]


def get(name: str) -> Graph:
    """The zoo graph `name`; ImageNet architectures come without weights."""
    from deepfpga.zoo.imagenet import BUILDERS

    if name in BUILDERS:
        return BUILDERS[name]()
    if name in FMNIST_NAMES:
        try:
            fmnist = importlib.import_module("deepfpga.zoo.fmnist")
        except ModuleNotFoundError as e:
            if e.name != "deepfpga.zoo.fmnist":
                raise
            raise InputError(
                f"zoo model {name!r}: the Fashion-MNIST weights are not built"
                " (module deepfpga.zoo.fmnist is missing)"
            ) from None
        return fmnist.load_graph(name)
    raise InputError(f"unknown zoo model {name!r} (known: {', '.join(names())})")
