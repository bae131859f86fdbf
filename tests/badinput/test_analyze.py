"""`deepfpga analyze MODEL`: every kind of bad model (ONNX, factory, float-model .npz, zoo name,
input shape). The same loader serves svd, quantize, evaluate, compile, simulate and run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

W = np.ones((4, 1, 3, 3), np.float32)


def _model(nodes, inits=None, inputs=None, outputs=None, opset=13):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    inits = [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()]
    g = helper.make_graph(nodes, "bad", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv(**attrs):
    return helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)


def _mobilenet_like():
    """Depthwise conv (unsupported) → BN → Relu → pool → conv → Flatten: the issue's crash."""
    dw = np.ones((1, 1, 3, 3), np.float32)
    bn = {k: np.ones(1, np.float32) for k in ("s", "b", "m", "v")}
    nodes = [
        helper.make_node("Conv", ["x", "dw"], ["a"], group=1, dilations=[2, 2], name="dil"),
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Dropout", ["r"], ["d"], name="drop"),
        helper.make_node("MaxPool", ["d"], ["p"], kernel_shape=[2, 2], name="pool"),
        helper.make_node("Transpose", ["p"], ["t"], perm=[0, 1, 3, 2], name="tr"),
        helper.make_node("Conv", ["t", "w2"], ["c"], name="conv2"),
        helper.make_node("Flatten", ["c"], ["y"], name="flat"),
    ]
    return _model(nodes, {"dw": dw, "w2": np.ones((2, 1, 1, 1), np.float32), **bn})


def _grouped():
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], group=2, name="grouped"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)]
    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])]
    return _model(nodes, {"w": np.ones((4, 1, 3, 3), np.float32),
                          "fw": np.ones((3, 4), np.float32)}, inputs=x)


def _shape_chain_of_tensor():
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT64, name="cast"),
             helper.make_node("Relu", ["c"], ["y"])]
    return _model(nodes)


def _seq_input():
    seq = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    return _model([helper.make_node("Relu", ["x"], ["y"])], inputs=[seq])


def _no_input():
    const = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(W, "c"))
    return _model([const], inputs=[None][:0] or None) if False else onnx.helper.make_model(
        helper.make_graph([const], "g", [], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 13)])


def _external(tmp: Path, missing: bool):
    m = _model([_conv()], {"w": W})
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(m, all_tensors_to_one_file=True, location="w.bin",
                                   size_threshold=0)
    sub = tmp / "models"
    sub.mkdir(exist_ok=True)
    onnx.save_model(m, sub / "ext.onnx")
    if missing:
        (sub / "w.bin").unlink()
    return sub / "ext.onnx"


ONNX_CASES = {
    "depthwise-then-bn-relu-pool": (_mobilenet_like, ["dil", "Conv(dilations", "tr (Transpose)"]),
    "grouped-then-relu-gap-flatten": (_grouped, ["grouped (Conv(group=2))"]),
    "conv-one-stride": (lambda: _model([_conv(strides=[2])], {"w": W}), "strides=[2]"),
    "conv-three-pads": (lambda: _model([_conv(pads=[1, 1, 1])], {"w": W}), "pads"),
    "conv-negative-pads": (lambda: _model([_conv(pads=[-1, -1, -1, -1])], {"w": W}), "negative"),
    "conv-zero-stride": (lambda: _model([_conv(strides=[0, 0])], {"w": W}), "positive"),
    "conv-kernel-shape-contradicts": (lambda: _model([_conv(kernel_shape=[5, 5])], {"w": W}),
                                      "contradicts"),
    "conv-1d-weight": (lambda: _model([_conv()], {"w": np.ones((4, 1, 3), np.float32)}), "3-d"),
    "conv-weight-not-initializer": (lambda: _model(
        [helper.make_node("Conv", ["x", "x"], ["y"], name="conv")]), "not an initializer"),
    "conv-wrong-channels": (lambda: _model([_conv()], {"w": np.ones((4, 2, 3, 3), np.float32)}),
                            "input channels"),
    "conv-bias-wrong-shape": (lambda: _model([helper.make_node("Conv", ["x", "w", "b"], ["y"])],
                                             {"w": W, "b": np.ones(5, np.float32)}), "bias"),
    "conv-kernel-larger-than-input": (lambda: _model(
        [_conv()], {"w": np.ones((4, 1, 9, 9), np.float32)}), "kernel larger"),
    "conv-auto-pad-bogus": (lambda: _model([_conv(auto_pad="WRONG")], {"w": W}), "auto_pad"),
    "conv-dilated": (lambda: _model([_conv(dilations=[2, 2])], {"w": W}), "dilations"),
    "dropout-training-mode": (lambda: _model(
        [helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")],
        {"r": np.array(0.5, np.float32), "t": np.array(True)}), "training_mode"),
    "dropout-ratio-vector": (lambda: _model(
        [helper.make_node("Dropout", ["x", "r"], ["y"], name="drop")],
        {"r": np.ones(3, np.float32)}), "ratio"),
    "maxpool-no-kernel": (lambda: _model([helper.make_node("MaxPool", ["x"], ["y"])]),
                          "kernel_shape"),
    "maxpool-1d-kernel": (lambda: _model([helper.make_node("MaxPool", ["x"], ["y"],
                                                           kernel_shape=[2])]), "2 values"),
    "maxpool-indices": (lambda: _model([helper.make_node("MaxPool", ["x"], ["y", "i"],
                                                         kernel_shape=[2, 2])]), "Indices"),
    "maxpool-window-too-big": (lambda: _model([helper.make_node("MaxPool", ["x"], ["y"],
                                                                kernel_shape=[9, 9])]),
                               "window larger"),
    "avgpool-exclude-pad": (lambda: _model([helper.make_node(
        "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]),
        "count_include_pad"),
    "gemm-3d-weight": (lambda: _model([helper.make_node("Flatten", ["x"], ["f"]),
                                       helper.make_node("Gemm", ["f", "w"], ["y"])],
                                      {"w": np.ones((64, 3, 1), np.float32)}), "weight of shape"),
    "gemm-transA": (lambda: _model([helper.make_node("Flatten", ["x"], ["f"]),
                                    helper.make_node("Gemm", ["f", "w"], ["y"], transA=1)],
                                   {"w": np.ones((64, 3), np.float32)}), "transA"),
    "gemm-wrong-features": (lambda: _model([helper.make_node("Flatten", ["x"], ["f"]),
                                            helper.make_node("Gemm", ["f", "w"], ["y"])],
                                           {"w": np.ones((60, 3), np.float32)}), "features"),
    "fc-without-flatten": (lambda: _model([helper.make_node("Gemm", ["x", "w"], ["y"])],
                                          {"w": np.ones((64, 3), np.float32)}), "flat"),
    "bn-wrong-channels": (lambda: _model([helper.make_node(
        "BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")],
        {k: np.ones(3, np.float32) for k in "sbmv"}), "channels"),
    "bn-mismatched-params": (lambda: _model([helper.make_node(
        "BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")],
        {"s": np.ones(1, np.float32), "b": np.ones(2, np.float32), "m": np.ones(1, np.float32),
         "v": np.ones(1, np.float32)}), "four equal vectors"),
    "reshape-runtime": (lambda: _model([helper.make_node("Reshape", ["x", "x"], ["y"])]),
                        "run time"),
    "reshape-to-4d": (lambda: _model([helper.make_node("Reshape", ["x", "s"], ["y"])],
                                     {"s": np.array([1, 1, 64, 1])}), "only (N, -1)"),
    "gather-out-of-range": (lambda: _model([
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i"], ["g"]),
        helper.make_node("Relu", ["x"], ["y"])], {"i": np.array(7)}), "out of range"),
    "cast-of-tensor": (_shape_chain_of_tensor, "Cast of a tensor"),
    "softmax-axis": (lambda: _model([helper.make_node("Softmax", ["x"], ["y"], axis=2)]),
                     "Softmax(axis=2)"),
    "lrn-even": (lambda: _model([helper.make_node("LRN", ["x"], ["y"], size=4)]), "even"),
    "unknown-op": (lambda: _model([helper.make_node("Frobnicate", ["x"], ["y"])]), "Frobnicate"),
    "custom-domain": (lambda: _model([helper.make_node("Relu", ["x"], ["y"], domain="com.x")]),
                      "com.x.Relu"),
    "dangling-input": (lambda: _model([helper.make_node("Add", ["x", "nope"], ["y"])]),
                       "which no node produces"),
    "output-not-computed": (lambda: _model([helper.make_node("Relu", ["x"], ["r"])]),
                            "not a computed tensor"),
    "sequence-input": (_seq_input, "sequence_type"),
    "int-input": (lambda: _model([helper.make_node("Relu", ["x"], ["y"])], inputs=[
        helper.make_tensor_value_info("x", TensorProto.INT32, [1, 1, 8, 8])]), "INT32"),
    "rank-3-input": (lambda: _model([helper.make_node("Relu", ["x"], ["y"])], inputs=[
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8])]), "rank 3"),
    "symbolic-dim": (lambda: _model([helper.make_node("Relu", ["x"], ["y"])], inputs=[
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "H", 8])]), "non-fixed"),
    "two-inputs": (lambda: _model([helper.make_node("Add", ["x", "z"], ["y"])], inputs=[
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 8, 8]) for n in "xz"]),
        "one model input"),
    "no-inputs": (_no_input, "has no inputs"),
    "no-nodes": (lambda: _model([]), "has no nodes"),
    "not-topological": (lambda: _model([helper.make_node("Relu", ["r"], ["y"], name="late"),
                                        helper.make_node("Relu", ["x"], ["r"], name="early")]),
                        "topological order"),
    "produced-twice": (lambda: _model([helper.make_node("Relu", ["x"], ["y"], name="a"),
                                       helper.make_node("Relu", ["x"], ["y"], name="b")]),
                       "produced twice"),
    "output-overwrites-input": (lambda: _model([helper.make_node("Relu", ["x"], ["x"])]),
                                "produced twice"),
    "nan-weight": (lambda: _model([_conv()], {"w": np.full((4, 1, 3, 3), np.nan, np.float32)}),
                   "NaN"),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_bad_onnx(case, work, refused):
    make, match = ONNX_CASES[case]
    path = work / f"{case}.onnx"
    path.write_bytes(make().SerializeToString())
    refused(["analyze", path, "--json"], match, keep=[work / "existing.npz"])


RAW_ONNX = {
    "empty-file": (b"", "no graph"),
    "garbage": (b"\x08\x07garbage\xff\xfe" * 10, "not an ONNX model"),
    "text": (b"this is not a protobuf\n", "not an ONNX model"),
    "json": (json.dumps({"graph": {}}).encode(), "not an ONNX model"),
}


@pytest.mark.parametrize("case", sorted(RAW_ONNX))
def test_raw_bytes_as_onnx(case, work, refused):
    data, match = RAW_ONNX[case]
    path = work / "m.onnx"
    path.write_bytes(data)
    refused(["analyze", path], match)


def test_truncated_onnx(files, work, refused):
    data = files.onnx.read_bytes()
    path = work / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    refused(["analyze", path], "m" if False else str(path.name))


def test_external_data_resolved_next_to_the_model(work, cli, monkeypatch, tmp_path_factory):
    path = _external(work, missing=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    rc, out, err = cli(["analyze", path, "--json"])
    assert rc == 0, err


def test_external_data_missing(work, refused, monkeypatch, tmp_path_factory):
    path = _external(work, missing=True)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    refused(["analyze", path], ["external data", "'w'"])


def test_onnx_directory(work, refused):
    (work / "d.onnx").mkdir()
    refused(["analyze", work / "d.onnx"], "no such file")


FACTORIES = {
    "needs-arguments": ("torch.nn:Conv2d", "takes no arguments"),
    "no-module": ("no_such_module_xyz:f", "cannot import module"),
    "no-attribute": ("torch.nn:NoSuchThing", "no callable"),
    "not-a-module": ("builtins:dict", "not a torch.nn.Module"),
    "empty-module": (":f", "bad factory spec"),
    "empty-attr": ("torch.nn:", "bad factory spec"),
    "raises": ("builtins:input", "failed"),
}


@pytest.mark.parametrize("case", sorted(FACTORIES))
def test_bad_factory(case, refused, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # builtins:input reads stdin: EOFError
    spec, match = FACTORIES[case]
    refused(["analyze", spec, "--input-shape", "1,28,28"], match)


def test_factory_without_shape(refused):
    refused(["analyze", "torch.nn:Identity"], "needs an input shape")


@pytest.mark.parametrize("shape", ["0,28,28", "-1,28,28", "a,b,c", "", "1,,", "1.5,2,2"])
def test_bad_input_shape(shape, refused):
    refused(["analyze", "torch.nn:Identity", f"--input-shape={shape}"], "input shape")


def test_input_shape_contradicting_a_file(files, refused):
    refused(["analyze", files.onnx, "--input-shape", "3,8,8"], "does not match")


def _float_model(work: Path, files, **changes) -> Path:
    with np.load(files.float_model, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        k = k.replace("__SLASH__", "/")
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    path = work / "fm.npz"
    np.savez(path, **arrays)
    return path


def _graph_with(files, mutate) -> np.ndarray:
    with np.load(files.float_model, allow_pickle=False) as z:
        g = json.loads(str(z["__graph__"]))
    mutate(g)
    return np.array(json.dumps(g))


def _set_layer(i, key, value):
    return lambda g: g["layers"][i].__setitem__(key, value)


FLOAT_MODELS = {
    "no-format": ({"__format__": None}, "not a deepfpga float model"),
    "wrong-format": ({"__format__": np.array("other/1")}, "not a deepfpga float model"),
    "no-graph": ({"__graph__": None}, "__graph__"),
    "graph-not-json": ({"__graph__": np.array("{nope")}, "invalid JSON"),
    "graph-deep-json": ({"__graph__": np.array("[" * 100_000 + "]" * 100_000)}, "nested"),
    "graph-nan": ({"__graph__": np.array('{"name": NaN}')}, "non-finite"),
    "graph-list": ({"__graph__": np.array("[1, 2]")}, "JSON object"),
    "weight-int": ({"conv1__SLASH__weight": np.ones((4, 1, 3, 3), np.int32)}, "float expected"),
    "weight-shape": ({"conv1__SLASH__weight": np.ones((4, 1, 2, 2), np.float32)}, "shape"),
    "weight-nan": ({"conv1__SLASH__weight": np.full((4, 1, 3, 3), np.nan, np.float32)}, "NaN"),
    "weight-unknown-layer": ({"nope__SLASH__weight": np.ones(3, np.float32)}, "unknown layers"),
    "entry-without-slash": ({"stray": np.ones(3, np.float32)}, "unexpected entry"),
    "object-array": ({"stray": np.array([{"a": 1}], dtype=object)}, "not a readable"),
}


@pytest.mark.parametrize("case", sorted(FLOAT_MODELS))
def test_bad_float_model(case, files, work, refused):
    changes, match = FLOAT_MODELS[case]
    path = _float_model(work, files, **changes)
    refused(["analyze", path], match)


GRAPH_EDITS = {
    "kernel-string": (_set_layer(0, "kernel", "3"), "kernel"),
    "kernel-triple": (_set_layer(0, "kernel", [3, 3, 3]), "kernel"),
    "channels-float": (_set_layer(0, "in_channels", 1.5), "in_channels"),
    "channels-bool": (_set_layer(0, "in_channels", True), "in_channels"),
    "bias-string": (_set_layer(0, "bias", "yes"), "bias"),
    "name-number": (_set_layer(0, "name", 7), "name"),
    "inputs-string": (_set_layer(0, "inputs", "input"), "inputs"),
    "unknown-kind": (_set_layer(0, "kind", "capsule"), "unknown layer kind"),
    "kind-list": (_set_layer(0, "kind", ["conv"]), "unknown layer kind"),
    "extra-key": (_set_layer(0, "colour", "red"), "unknown keys"),
    "layer-not-object": (lambda g: g["layers"].__setitem__(0, 5), "must be"),
    "input-shape-string": (lambda g: g.__setitem__("input_shape", "1,8,8"), "input_shape"),
    "input-shape-zero": (lambda g: g.__setitem__("input_shape", [0, 8, 8]), "input_shape"),
    "outputs-unknown": (lambda g: g.__setitem__("outputs", ["nope"]), "nope"),
    "no-layers-key": (lambda g: g.pop("layers"), "layers"),
    "cycle": (_set_layer(0, "inputs", ["fc"]), "not an earlier layer"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_EDITS))
def test_bad_float_model_graph(case, files, work, refused):
    mutate, match = GRAPH_EDITS[case]
    path = _float_model(work, files, __graph__=_graph_with(files, mutate))
    refused(["analyze", path], match)


@pytest.mark.parametrize("data,match", [(b"", "not a zip"), (b"PK\x03\x04junk", "not a"),
                                        (b"\x93NUMPY", "not a zip")])
def test_float_model_not_npz(data, match, work, refused):
    (work / "m.npz").write_bytes(data)
    refused(["analyze", work / "m.npz"], match)


@pytest.mark.parametrize("spec,match", [("vgg17", "unknown model"), ("model.pt", "unknown model"),
                                        ("missing.onnx", "no such file"),
                                        ("missing.npz", "no such file")])
def test_unknown_model(spec, match, refused, work, monkeypatch):
    monkeypatch.chdir(work)
    refused(["analyze", spec], match)


@pytest.mark.parametrize("bits", ["0", "-8", "x", "65"])
def test_bad_bits(bits, refused):
    refused(["analyze", "lenet" if False else "fmnist-vgg", "--bits", bits], "bits")


def test_real_mobilenet_style_export_lists_every_unsupported_node(work, refused):
    """torch → ONNX (dynamo=False) of depthwise + dilated convs feeding BN/ReLU/pool/conv/FC."""
    import torch
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(), nn.Dropout(0.2),
        nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    path = work / "mnet.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 8, 8), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"])
    msg = refused(["analyze", path], ["group=8", "dilations=[2, 2]"])
    assert "NoneType" not in msg and msg.count("(Conv(") == 2
