"""Accuracy of a model on many images, sharded over workers (`deepfpga evaluate --ray`).

The images are cut into shards of whole batches — the same batches, at the same offsets, as the
in-process `evaluate` uses — and each shard is evaluated with `evaluate` on a worker; the counts
add up. Every image's scores depend only on its own batch, so the result equals the in-process
one exactly (top-1, top-5 and saturation counts).

The model travels to the workers in its own file format (the quantized-model `.npz` or the
float-model `.npz`), written in memory here and read back once per worker, so a cluster's nodes
need deepfpga but not the model file.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfpga.ir import Graph
from deepfpga.quant.evaluate import DEFAULT_BATCH, EvalResult, check_inputs, evaluate
from deepfpga.quant.qmodel import QuantizedModel

if TYPE_CHECKING:
    from deepfpga.parallel import Executor

SHARDS_PER_WORKER = 4       # enough for balance; each shard prepares the model's weights once


def model_payload(model: Graph | QuantizedModel) -> tuple[str, bytes]:
    """(kind, file bytes) of a model: "qmodel" or "float"."""
    with tempfile.TemporaryDirectory(prefix="deepfpga-shard-") as d:
        path = Path(d) / "model.npz"
        if isinstance(model, QuantizedModel):
            from deepfpga.quant.qfile import save_qmodel

            return "qmodel", save_qmodel(path, model).read_bytes()
        from deepfpga.frontends.float_model import save_float_model

        return "float", save_float_model(model, path).read_bytes()


def load_payload(kind: str, data: bytes) -> Graph | QuantizedModel:
    with tempfile.TemporaryDirectory(prefix="deepfpga-shard-") as d:
        path = Path(d) / "model.npz"
        path.write_bytes(data)
        if kind == "qmodel":
            from deepfpga.quant.qfile import load_qmodel

            return load_qmodel(path)
        from deepfpga.frontends.float_model import load_float_model

        return load_float_model(path)


def shard_setup(shared: tuple[str, bytes, np.ndarray, np.ndarray, int]) -> tuple[Any, ...]:
    kind, data, x, y, batch_size = shared
    return load_payload(kind, data), x, y, batch_size


def evaluate_span(state: tuple[Any, ...], span: tuple[int, int]) -> EvalResult:
    model, x, y, batch_size = state
    a, b = span
    return evaluate(model, x[a:b], y[a:b], batch_size=batch_size)


def shard_spans(n: int, batch_size: int, workers: int) -> list[tuple[int, int]]:
    """Shards of whole batches: about SHARDS_PER_WORKER per worker."""
    batches = math.ceil(n / batch_size)
    per = max(1, math.ceil(batches / (SHARDS_PER_WORKER * workers)))
    step = per * batch_size
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def evaluate_sharded(model: Graph | QuantizedModel, x: np.ndarray, y: np.ndarray,
                     executor: Executor, *, batch_size: int = DEFAULT_BATCH,
                     progress: bool = False) -> tuple[EvalResult, int]:
    """(the result `evaluate` gives in-process, the number of shards)."""
    from deepfpga.progress import progress as bar

    # what `evaluate` refuses before running, refused here before anything is shipped
    x, y, _ = check_inputs(model, x, y, batch_size)
    spans = shard_spans(x.shape[0], batch_size, executor.workers)
    kind, data = model_payload(model)
    pool = executor.pool(shard_setup, (kind, data, x, y, batch_size))
    parts: list[EvalResult | None] = [None] * len(spans)
    b = bar(total=x.shape[0], desc="evaluating (images)", quiet=not progress)
    try:
        for i, r in pool.map_unordered(evaluate_span, spans):
            parts[i] = r
            b.update(spans[i][1] - spans[i][0])
    finally:
        b.close()
        pool.close()
    return EvalResult.combine([p for p in parts if p is not None]), len(spans)
