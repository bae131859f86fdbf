"""ONNX conformance: the ONNX backend node tests of every op the importer claims.

The cases come from `onnx.backend.test.case.node` (the installed wheel generates them; it ships
no data directory). Every input but the first becomes an initializer (in a deployed model the
weights are constants), then each case is imported and run through the float executor: it must
match ONNX's expected output within tolerance, or be refused with a one-line InputError that
names the node. Nothing may crash.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.frontends.onnx_import import _Importer, import_onnx
from deepfpga.ir.float_exec import run_float

CLAIMED = tuple(sorted(n[3:] for n in dir(_Importer) if n.startswith("op_")))
RTOL, ATOL = 1e-3, 1e-6  # ONNX's own backend runner uses rtol 1e-3 (data are rounded)


@cache
def _cases() -> tuple:
    from onnx.backend.test.case.node import collect_testcases

    # collect_testcases imports its modules once, so its op filter works only on the first
    # call: collect all and keep the cases whose every node is a claimed op.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    out = []
    for case in cases:
        ops = [n.op_type for n in case.model.graph.node]
        if case.kind == "node" and case.data_sets and ops and set(ops) <= set(CLAIMED):
            out.append((ops[0], case))
    return tuple(sorted(out, key=lambda t: t[1].name))


def _frozen(case):
    """The case's model with inputs 1.. turned into initializers; (bytes, x, expected)."""
    import onnx
    from onnx import numpy_helper

    inputs, outputs = case.data_sets[0]
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    g = model.graph
    names = [i.name for i in g.input]
    for name, value in list(zip(names, inputs, strict=False))[1:]:
        if isinstance(value, np.ndarray | np.generic | bool | int | float):
            g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return model.SerializeToString(), (inputs[0] if inputs else None), outputs


def _ids():
    return [case.name for _, case in _cases()]


@pytest.mark.parametrize("index", range(len(_cases())), ids=_ids())
def test_backend_node_case(index):
    op, case = _cases()[index]
    data, x, expected = _frozen(case)
    try:
        graph = import_onnx(data)
    except InputError as e:
        msg = str(e)
        assert msg and "\n" not in msg
        return
    assert isinstance(x, np.ndarray)
    got = run_float(graph, np.asarray(x, dtype=np.float32))
    outs = got if isinstance(got, dict) else {graph.outputs[0]: got}
    want = np.asarray(expected[0], dtype=np.float32)
    have = np.asarray(next(iter(outs.values())))
    np.testing.assert_allclose(have.reshape(want.shape), want, rtol=RTOL, atol=ATOL,
                               err_msg=case.name)


def test_every_claimed_op_has_cases():
    assert not set(CLAIMED) - {op for op, _ in _cases()}


# The layer ops whose backend cases must be imported and compared, not only refused (measured:
# 38 of the 274 cases are accepted; the rest are 1-d/3-d/5-d, integer, training-mode, dilated,
# asymmetric-padding or other unsupported forms, each refused by name).
COMPUTED = ("Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
            "BatchNormalization", "Flatten", "Softmax", "LRN")


def test_the_supported_forms_are_computed_not_refused():
    accepted: dict[str, int] = {}
    for op, case in _cases():
        try:
            import_onnx(_frozen(case)[0])
        except InputError:
            continue
        accepted[op] = accepted.get(op, 0) + 1
    assert all(accepted.get(op, 0) >= 1 for op in COMPUTED), accepted
    assert sum(accepted.values()) >= 38, accepted
