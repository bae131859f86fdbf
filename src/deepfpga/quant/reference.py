"""The bit-exact reference executor: the project's oracle for the arithmetic contract.

Every quantized computation elsewhere (functional simulator, RTL) is tested against it. This
module is its public face; the code lives in three parts:

- `contract.py`: docs/arithmetic.md step by step (`conv_acc`, `fc_acc`, `finish`,
  `maxpool_int`, `add_int`, `accumulator_bound`, `check_accumulator`, `quantize_input`) — the
  part to audit against the document;
- `gemm.py`, `patches.py`, `kernels.py`: the exact-product engine behind step 1 (float32,
  float64, int8-digit library products, each proved exact at `gemm._gemm_blocks`, chosen per
  layer by measured kernel speed);
- `executor.py`: `ReferenceExecutor`, `execute`, `execute_layer` — a whole quantized model,
  layer by layer.
"""

from __future__ import annotations

from deepfpga.quant.contract import (
    accumulator_bound,
    add_int,
    check_accumulator,
    conv_acc,
    fc_acc,
    finish,
    maxpool_int,
    quantize_input,
)
from deepfpga.quant.executor import (
    ExecutionResult,
    ReferenceExecutor,
    execute,
    execute_layer,
)
from deepfpga.quant.gemm import (
    ACC_INT64_LIMIT,
    F32_EXACT,
    F64_EXACT,
    METHODS,
    Method,
    PreparedMatrix,
    prepare_matrix,
)
from deepfpga.quant.kernels import int8_gemm_available, kernel_speeds

__all__ = [
    "ACC_INT64_LIMIT", "F32_EXACT", "F64_EXACT", "METHODS", "ExecutionResult", "Method",
    "PreparedMatrix", "ReferenceExecutor", "accumulator_bound", "add_int", "check_accumulator",
    "conv_acc", "execute", "execute_layer", "fc_acc", "finish", "int8_gemm_available",
    "kernel_speeds", "maxpool_int", "prepare_matrix", "quantize_input",
]
