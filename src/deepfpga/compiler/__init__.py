"""The compiler: quantized network + accelerator config → program, DDR image, manifest.

`compile_model(qmodel, cfg)` and `compile_architecture(graph, cfg)` return a `Compiled`;
docs/compiler.md describes the steps, docs/isa.md the instruction set.
"""

from deepfpga.compiler.alloc import check_no_overlap
from deepfpga.compiler.compile import Compiled, compile_architecture, compile_model
from deepfpga.compiler.tiling import Tiling

__all__ = ["Compiled", "Tiling", "check_no_overlap", "compile_architecture", "compile_model"]
