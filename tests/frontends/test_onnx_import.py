"""ONNX importer: equal to onnxruntime and torch; refusals list every node; non-ONNX refused."""

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from deepfpga.errors import InputError, UnsupportedModelError
from deepfpga.frontends.onnx_import import import_onnx
from deepfpga.ir.float_exec import run_float

NAMES = ("plain", "bn", "residual", "pool")


def _export(module, shape, dynamic):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            module, torch.zeros(2, *shape), buf, dynamo=False, input_names=["x"],
            output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}} if dynamic else None,
        )
    return buf.getvalue()


def _ort(data, x):
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _randomize(module):
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module.eval()


@pytest.mark.parametrize("dynamic", [False, True], ids=["static-batch", "dynamic-batch"])
@pytest.mark.parametrize("name", NAMES)
def test_exported_model_matches_onnxruntime_and_torch(name, dynamic, torch_cases):
    cls, shape = torch_cases[name]
    torch.manual_seed(0)
    module = _randomize(cls())
    data = _export(module, shape, dynamic)
    g = import_onnx(data)
    assert g.input_shape == shape and g.has_weights
    assert all("/" not in layer.name for layer in g.layers)
    # The imported graph runs any batch size, even when the file baked in batch 2.
    x = np.random.default_rng(2).normal(size=(2 if not dynamic else 5, *shape)).astype(np.float32)
    got = run_float(g, x)
    with torch.no_grad():
        ref_torch = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - _ort(data, x)).max() <= 1e-5
    assert np.abs(got - ref_torch).max() <= 1e-5
    if not dynamic:
        x3 = np.random.default_rng(3).normal(size=(3, *shape)).astype(np.float32)
        with torch.no_grad():
            assert np.abs(run_float(g, x3) - module(torch.from_numpy(x3)).numpy()).max() <= 1e-5


def test_reading_from_a_path(tmp_path, torch_cases):
    cls, shape = torch_cases["plain"]
    path = tmp_path / "m.onnx"
    path.write_bytes(_export(cls().eval(), shape, False))
    g = import_onnx(path)
    assert [layer.kind for layer in g.layers][:3] == ["conv", "relu", "maxpool"]


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _handmade(rng, opset=17):
    """Conv → Relu → LRN → AveragePool → Identity → Flatten → MatMul+Add → Dropout
    → Gemm (transB=0, alpha, beta) → Softmax, plus a GlobalAveragePool branch added back."""
    w = rng.normal(size=(4, 3, 3, 3))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("LRN", ["r"], ["n"], name="norm", size=3, alpha=0.01, beta=0.7,
                         bias=1.5),
        helper.make_node("AveragePool", ["n"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["gp"], name="gap"),
        helper.make_node("Add", ["p", "gp_b"], ["s"], name="bcast") if False else
        helper.make_node("Identity", ["p"], ["s"], name="ident"),
        helper.make_node("Flatten", ["s"], ["f"], name="flat", axis=1),
        helper.make_node("MatMul", ["f", "m"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "mb"], ["fc1"], name="bias_add"),
        helper.make_node("Dropout", ["fc1"], ["d"], name="drop"),
        helper.make_node("Gemm", ["d", "g"], ["fc2"], name="gemm", alpha=0.5, transB=0),
        helper.make_node("Softmax", ["fc2"], ["y"], name="softmax", axis=1),
    ]
    inits = [
        _const("w", w),
        _const("m", rng.normal(size=(4 * 4 * 4, 7))),
        _const("mb", rng.normal(size=(7,))),
        _const("g", rng.normal(size=(7, 5))),
    ]
    graph = helper.make_graph(
        nodes, "handmade",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_handmade_model_with_lrn_matmul_add_gemm(tmp_path):
    rng = np.random.default_rng(0)
    data = _handmade(rng)
    g = import_onnx(data)
    kinds = [layer.kind for layer in g.layers]
    # GlobalAveragePool feeds nothing, but it is imported too (its output is unused).
    assert kinds == ["conv", "relu", "lrn", "avgpool", "avgpool", "flatten", "fc", "dropout",
                     "fc", "softmax"]
    assert g.layer("matmul").bias  # the Add of a constant became the bias
    assert g.layer("norm").k == pytest.approx(1.5) and g.layer("norm").size == 3
    x = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    assert np.abs(run_float(g, x) - _ort(data, x)).max() <= 1e-5


def _single(op_nodes, inits, out_shape, in_shape=("n", 3, 8, 8), opset=17):
    graph = helper.make_graph(
        op_nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def test_every_unsupported_node_is_listed():
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["a"], name="sig"),
        helper.make_node("Conv", ["a", "w"], ["b"], name="grouped", group=3),
        helper.make_node("Tanh", ["b"], ["c"], name="tanh"),
        helper.make_node("Softmax", ["x"], ["d"], name="sm4d"),  # axis -1 of a 4-d tensor
        helper.make_node("LRN", ["x"], ["e"], name="even", size=4),
        helper.make_node("MaxPool", ["x"], ["f"], name="asym", kernel_shape=[2, 2],
                         pads=[0, 0, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    data = _single(nodes, [_const("w", np.ones((3, 1, 3, 3)))], ["n", 3, 6, 6])
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(data)
    found = dict(e.value.unsupported)
    assert set(found) == {"sig", "grouped", "tanh", "sm4d", "even", "asym"}
    assert found["grouped"] == "Conv(group=3)" and "asymmetric" in found["asym"]


def test_opset_11_softmax_of_a_map_is_refused():
    nodes = [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=1)]
    with pytest.raises(UnsupportedModelError, match="sm"):
        import_onnx(_single(nodes, [], ["n", 3, 8, 8], opset=11))


def test_reshape_other_than_flatten_is_refused():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")]
    shape = numpy_helper.from_array(np.array([0, 3, 64], dtype=np.int64), "s")
    with pytest.raises(UnsupportedModelError, match="rs"):
        import_onnx(_single(nodes, [shape], ["n", 3, 64]))


def test_not_onnx_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="not an ONNX model"):
        import_onnx(b"this is plainly not a protobuf \x00\xff\xfe")
    p = tmp_path / "fake.onnx"
    p.write_text("hello")
    with pytest.raises(InputError, match="not an ONNX model"):
        import_onnx(p)
    with pytest.raises(InputError, match="no such file"):
        import_onnx(tmp_path / "missing.onnx")


def test_symbolic_per_sample_dimension_is_refused():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    with pytest.raises(InputError, match="non-fixed"):
        import_onnx(_single(nodes, [], ["n", 3, "h", 8], in_shape=("n", 3, "h", 8)))


def test_exported_unsupported_model_names_both_nodes(unsupported_net):
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(_export(unsupported_net, (3, 8, 8), False))
    ops = dict(e.value.unsupported)
    assert ops == {"/Sigmoid": "Sigmoid", "/act/Gelu": "Gelu"}
