"""The compiler: quantized network + accelerator config → program, DDR image, manifest.

`compile_model(qmodel, cfg)` and `compile_architecture(graph, cfg)` return a `Compiled`;
docs/compiler.md describes the steps, docs/isa.md the instruction set.

The names below are imported on first use (PEP 562), so importing one submodule does not import
the whole compiler. The instruction set lives in `deepfpga.hw.isa`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Compiled": "deepfpga.compiler.artifact",
    "Manifest": "deepfpga.compiler.artifact",
    "Tiling": "deepfpga.compiler.tiling",
    "check_no_overlap": "deepfpga.compiler.alloc",
    "compile_architecture": "deepfpga.compiler.compile",
    "compile_model": "deepfpga.compiler.compile",
    "load_compiled": "deepfpga.compiler.artifact",
    "read_manifest": "deepfpga.compiler.artifact",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deepfpga.compiler' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
