"""Export of QuantizedModels to QDQ/QONNX and import of quantized ONNX files."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from deepfpga.cli import main
from deepfpga.errors import InputError
from deepfpga.interchange.export import export_onnx, output_integers
from deepfpga.interchange.onnx_quant import load_quantized_onnx, onnx_graph
from deepfpga.quant.fixedpoint import FixedFormat
from deepfpga.quant.qfile import save_qmodel
from deepfpga.quant.reference import execute


def _ort(data, x):
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


def test_qdq_export_equals_executor(qmodel, images):
    ref = execute(qmodel, images, float_input=True).output
    got = output_integers(qmodel, _ort(export_onnx(qmodel, "qdq"), images))
    np.testing.assert_array_equal(got, ref)


def test_plain_export_differs_only_on_ties(qmodel):
    # a 1x1 "network" whose every output is an exact tie: round half up vs half to even
    from deepfpga.ir import Linear, chain
    from deepfpga.quant.qmodel import LayerFormats, QuantizedModel

    g = chain("ties", (4,), [Linear("fc", (), 4, 4, bias=False)])
    f8 = FixedFormat(8, 0)
    q = QuantizedModel(g, f8, {"fc": LayerFormats(f8, FixedFormat(8, -1), f8)},
                       {"fc": {"weight": np.eye(4, dtype=np.int64)}})
    x = np.array([[1.0, 3.0, -1.0, -3.0]])
    ref = execute(q, x, float_input=True).output
    np.testing.assert_array_equal(ref, [[1, 2, 0, -1]])  # (acc + 1) >> 1
    np.testing.assert_array_equal(output_integers(q, _ort(export_onnx(q, "qdq"), x)), ref)
    plain = output_integers(q, _ort(export_onnx(q, "qdq", half_lsb=False), x))
    np.testing.assert_array_equal(plain, [[0, 2, 0, -2]])  # half to even


@pytest.mark.parametrize("bw", [4, 6, 12, 16])
@pytest.mark.parametrize("kind", ["qdq", "qonnx"])
def test_widths(make_qmodel, images, kind, bw):
    q = make_qmodel(bw)
    data = export_onnx(q, kind)
    ref = execute(q, images, float_input=True).output
    if kind == "qdq":
        np.testing.assert_array_equal(output_integers(q, _ort(data, images)), ref)
    imp = load_quantized_onnx(data).qmodel
    assert imp.input_format == q.input_format
    np.testing.assert_array_equal(execute(imp, images, float_input=True).output, ref)


@pytest.mark.parametrize("kind", ["qdq", "qonnx"])
def test_round_trip(qmodel, images, kind):
    imp = load_quantized_onnx(export_onnx(qmodel, kind))
    assert imp.kind == kind
    assert imp.qmodel.input_format == qmodel.input_format
    for layer in qmodel.graph.layers:
        a, b = qmodel.formats[layer.name], imp.qmodel.formats[layer.name]
        assert (a.input, a.output, a.weight) == (b.input, b.output, b.weight), layer.name
    assert not imp.qmodel.meta["imported"]["round_half_even_layers"]  # half LSB recognised
    np.testing.assert_array_equal(execute(imp.qmodel, images, float_input=True).output,
                                  execute(qmodel, images, float_input=True).output)


def test_plain_qdq_import_notes_the_ties(qmodel):
    imp = load_quantized_onnx(export_onnx(qmodel, "qdq", half_lsb=False))
    assert imp.qmodel.meta["imported"]["round_half_even_layers"] == ["c1", "c2", "fc1", "fc2"]
    assert any("half to even" in n for n in imp.notes)


def test_torch_qdq_import(torch_qdq_file):
    path, net = torch_qdq_file
    imp = load_quantized_onnx(path)
    q = imp.qmodel
    assert imp.kind == "qdq"
    assert q.input_format == FixedFormat(8, 5)
    convs = [la.name for la in q.graph.layers if la.kind in ("conv", "fc")]
    assert [q.formats[n].weight for n in convs] == [FixedFormat(8, 6), FixedFormat(8, 7)]
    assert [q.formats[n].output for n in convs] == [FixedFormat(8, 4), FixedFormat(8, 3)]
    x = np.random.default_rng(2).random((200, 1, 12, 12), dtype=np.float32)
    ours = execute(q, x, float_input=True).output
    theirs = output_integers(q, _ort(path.read_bytes(), x))
    with torch.no_grad():
        torch_out = output_integers(q, net(torch.from_numpy(x)).numpy())
    np.testing.assert_array_equal(theirs, torch_out)
    # The import captured the file exactly except for the rounding of ties: our model exported
    # with round-half-even requantizers (plain) gives the file's own integers everywhere ...
    plain = output_integers(q, _ort(export_onnx(q, "qdq", half_lsb=False), x))
    np.testing.assert_array_equal(plain, theirs)
    # ... and with the contract's half up (half-LSB bias) our executor's
    np.testing.assert_array_equal(output_integers(q, _ort(export_onnx(q, "qdq"), x)), ours)


def test_quantized_onnx_through_compile_and_analyze(torch_qdq_file, tmp_path):
    path, _ = torch_qdq_file
    g = onnx_graph(path)  # analysis sees the float graph, quantizers removed
    assert [la.kind for la in g.layers] == ["conv", "relu", "maxpool", "flatten", "fc"]
    assert main(["compile", str(path), "--target", "tiny", "-o", str(tmp_path / "c"),
                 "--json"]) == 0
    assert main(["analyze", str(path), "--json"]) == 0


def _qdq_model(scale=0.125, zp=0, per_channel=False):
    """x → Q/DQ → Conv(DQ(int8 w)) → Q/DQ: the smallest QDQ file."""
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.int8), "w")
    ws = numpy_helper.from_array(np.array([0.5, 0.25] if per_channel else 0.5, np.float32), "ws")
    s = numpy_helper.from_array(np.array(scale, np.float32), "s")
    z = numpy_helper.from_array(np.array(zp, np.int8), "z")
    z0 = numpy_helper.from_array(np.array(0, np.int8), "z0")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="in_q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="in_dq"),
             helper.make_node("DequantizeLinear", ["w", "ws", "z0"] if not per_channel
                              else ["w", "ws"], ["wd"], name="w_dq", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv"),
             helper.make_node("QuantizeLinear", ["y", "s", "z0"], ["yq"], name="out_q"),
             helper.make_node("DequantizeLinear", ["yq", "s", "z0"], ["out"], name="out_dq")]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", 1, ["N", 1, 4, 4])],
                          [helper.make_tensor_value_info("out", 1, ["N", 2, 4, 4])],
                          [w, ws, s, z, z0])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_small_qdq_imports():
    q = load_quantized_onnx(_qdq_model()).qmodel
    assert q.input_format == FixedFormat(8, 3)
    assert q.formats["conv"].weight == FixedFormat(8, 1)


@pytest.mark.parametrize("kw, match", [
    ({"scale": 0.1}, r"node 'in_q': scale 0.100000001 is not a power of two"),
    ({"zp": 3}, r"node 'in_q': zero point 3 is not 0"),
    ({"per_channel": True}, r"node 'w_dq': per-channel scale \(2 values, e.g. 0.5 and 0.25\)"),
])
def test_refused(kw, match):
    with pytest.raises(InputError, match=match):
        load_quantized_onnx(_qdq_model(**kw))


def test_requantize_rounds_scales():
    imp = load_quantized_onnx(_qdq_model(scale=0.1), requantize=True)
    assert imp.qmodel.input_format == FixedFormat(8, 3)  # 0.1 -> 2^-3
    assert any("0.100000001 -> 2^-3" in n for n in imp.notes)
    imp = load_quantized_onnx(_qdq_model(per_channel=True), requantize=True)
    assert imp.qmodel.formats["conv"].weight.bw == 8


def test_unquantized_output_refused():
    m = _qdq_model()
    del m.graph.node[4:]
    m.graph.output[0].name = "y"
    with pytest.raises(InputError, match="output of layer 'conv' is not quantized"):
        load_quantized_onnx(m)


def test_export_cli(qmodel, tmp_path, capsys):
    src = save_qmodel(tmp_path / "q.npz", qmodel)
    out = tmp_path / "m.onnx"
    assert main(["export", str(src), "--format", "qonnx", "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "qonnx" and info["half_lsb"] is True
    assert any(n.op_type == "Quant" for n in onnx.load(out).graph.node)
    # a quantized .onnx is accepted too (re-written as QDQ)
    assert main(["export", str(out), "-o", str(tmp_path / "m2.onnx")]) == 0
    assert main(["export", str(tmp_path / "none.npz"), "-o", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_import_cli_requantize_reports_accuracy(make_torch_qdq, tmp_path, capsys):
    path = make_torch_qdq(0.07, tmp_path / "np2.onnx")
    assert main(["import", str(path), "-o", str(tmp_path / "q.npz")]) == 2
    err = capsys.readouterr().err
    assert "scale 0.0700000003 is not a power of two" in err and "--requantize" in err
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 1, 12, 12), dtype=np.float32),
             y=rng.integers(0, 10, 40))
    assert main(["import", str(path), "--requantize", "--data", str(tmp_path / "d.npz"),
                 "--images", "40", "-o", str(tmp_path / "q.npz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert any("0.0700000003 -> 2^-4" in n for n in info["notes"])
    acc = info["accuracy"]
    assert acc["images"] == 40
    assert acc["top1_change"] == pytest.approx(acc["top1_deepfpga"] - acc["top1_file"])
    assert (tmp_path / "q.npz").is_file()


def test_import_cli_exact_file_agrees(torch_qdq_file, tmp_path, capsys):
    path, _ = torch_qdq_file
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 1, 12, 12), dtype=np.float32),
             y=rng.integers(0, 10, 40))
    assert main(["import", str(path), "--data", str(tmp_path / "d.npz"), "--images", "40"]) == 0
    assert "top-1 on 40 images: file (onnxruntime)" in capsys.readouterr().out


def test_qonnx_export_runs_as_qdq_equal_to_executor(qmodel, images):
    """The QONNX export's own semantics (its Quant nodes evaluated as the QONNX reference
    does, in onnxruntime) give the executor's integers: independent of our importer."""
    from deepfpga.interchange.runtime import file_runner

    run = file_runner(onnx.load_model_from_string(export_onnx(qmodel, "qonnx")))
    np.testing.assert_array_equal(output_integers(qmodel, run(images)),
                                  execute(qmodel, images, float_input=True).output)


@pytest.mark.parametrize("kw", [{}, {"scale": 0.1, "zp": 3}, {"per_channel": True}])
def test_any_quantized_file_analyses_as_float(kw):
    """analyze / quantize read any QDQ file as its float model: weights dequantized with the
    file's own scale and zero point (here w = 1 · 0.5, or 0.5 and 0.25 per channel)."""
    g = onnx_graph(_qdq_model(**kw).SerializeToString())
    assert [la.kind for la in g.layers] == ["conv"]
    w = g.params["conv"]["weight"].reshape(-1)
    np.testing.assert_array_equal(w, [0.5, 0.25] if kw.get("per_channel") else [0.5, 0.5])


def test_brevitas_like_float_graph_matches_dequantized_weights(qmodel):
    g = onnx_graph(export_onnx(qmodel, "qonnx"))
    np.testing.assert_array_equal(
        g.params["c1"]["weight"],
        np.ldexp(np.asarray(qmodel.weights["c1"]["weight"], np.float64),
                 -qmodel.formats["c1"].weight.fl).astype(np.float32))


def test_bad_files(tmp_path, capsys):
    assert main(["import", str(tmp_path / "none.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["import", str(bad)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(_qdq_model().SerializeToString())
    m = onnx.load(plain)
    kept = [n for n in m.graph.node if n.op_type == "Conv"]
    del m.graph.node[:]
    m.graph.node.extend(kept)
    m.graph.node[0].input[0], m.graph.node[0].input[1] = "x", "wf"
    m.graph.initializer.append(numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "wf"))
    m.graph.output[0].name = "y"
    plain.write_bytes(m.SerializeToString())
    assert main(["import", str(plain)]) == 2
    assert "holds no quantizers" in capsys.readouterr().err
