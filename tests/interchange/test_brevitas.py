"""Brevitas models (fixed-point quantizers) → QONNX / QCDQ → deepfpga, and the run flow on
quantized files. Brevitas is optional (the `brevitas` extra, in `dev` for CI)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from deepfpga import pipeline as flow
from deepfpga.interchange.onnx_quant import load_quantized_onnx
from deepfpga.quant.fixedpoint import FixedFormat

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(model, data, images, target="zedboard"):
    cfg = flow.RunConfig(model=str(model), target=target, data=str(data), images=images,
                         calib_size=8, batch_size=50, out=None)
    return flow.run_flow(cfg)


@pytest.mark.slow  # importing Brevitas alone takes seconds
@pytest.mark.parametrize("bits", [4, 6, 8])
def test_brevitas_qonnx_and_qcdq_import(tmp_path, bits):
    pytest.importorskip("brevitas")
    torch = pytest.importorskip("torch")
    from brevitas.export import export_onnx_qcdq

    tb = _script("train_brevitas_fmnist")
    torch.manual_seed(0)
    net = tb.build(bits)
    x = np.random.default_rng(0).random((32, 1, 28, 28), dtype=np.float32)
    net.train()
    net(torch.from_numpy(x))  # one calibration pass of the activation scales
    net.eval()
    qonnx = tb.export(net, tmp_path / "b.onnx")
    export_onnx_qcdq(net, torch.zeros(1, 1, 28, 28), export_path=str(tmp_path / "c.onnx"),
                     dynamo=False)
    a, c = load_quantized_onnx(qonnx), load_quantized_onnx(tmp_path / "c.onnx")
    assert (a.kind, c.kind) == ("qonnx", "qdq")
    assert a.qmodel.input_format == FixedFormat(8, 7)
    for la in a.qmodel.graph.layers:
        assert a.qmodel.formats[la.name] == c.qmodel.formats[la.name], la.name
        if la.kind in ("conv", "fc"):
            assert a.qmodel.formats[la.name].weight.bw == bits
    # value by value, layer by layer, on Brevitas' own integers: only exact ties may differ
    # (Brevitas rounds half to even, the contract half up)
    res = _script("interchange_agreement").brevitas_layers(net, a.qmodel, x)
    assert all(r["differing_not_ties"] == 0 for r in res.values()), res
    # the QCDQ file in onnxruntime = our import exported with round-half-even requantizers
    import onnx

    from deepfpga.interchange.export import export_onnx, output_integers
    from deepfpga.interchange.runtime import file_runner

    theirs = output_integers(a.qmodel, file_runner(onnx.load(tmp_path / "c.onnx"))(x))
    plain = file_runner(onnx.load_model_from_string(export_onnx(a.qmodel, "qdq",
                                                                 half_lsb=False)))
    np.testing.assert_array_equal(output_integers(a.qmodel, plain(x)), theirs)


@pytest.mark.slow
def test_brevitas_qat_end_to_end(tmp_path):
    """A Brevitas QAT CNN (2 seeded epochs on 2,000 images) → QONNX → `deepfpga run`:
    bit-exact on the functional simulator; every value that differs from Brevitas is a tie."""
    pytest.importorskip("brevitas")
    from deepfpga.data import load_dataset

    tb = _script("train_brevitas_fmnist")
    agree = _script("interchange_agreement")
    tr = load_dataset("fashion-mnist", "train", 2000)
    net = tb.train(tb.build(8), tr.x, tr.y, epochs=2, seed=0)
    path = tb.export(net, tmp_path / "qat.onnx")
    st = _run(path, "fashion-mnist", 200)
    assert st.sim.bit_exact and st.sim.values_compared > 0
    assert [r.name for r in st.steps][3] == "quantize"
    assert st.steps[3].note.startswith("skipped: formats from the file")
    assert st.sim.correct1 / st.sim.images > 0.6
    # value by value against Brevitas' own integers, layer by layer
    te = load_dataset("fashion-mnist", "test", 200)
    res = agree.brevitas_layers(net, load_quantized_onnx(path).qmodel, te.x)
    for name, r in res.items():
        assert r["differing_not_ties"] == 0, name
    assert sum(r["values"] for r in res.values()) > 0


def test_torch_qdq_through_run(torch_qdq_file, tmp_path):
    path, _ = torch_qdq_file
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((20, 1, 12, 12), dtype=np.float32),
             y=rng.integers(0, 10, 20))
    st = _run(path, data, 20, target="zc706-paper")  # its biases are 10-bit
    assert st.sim.bit_exact and st.sim.values_compared > 0
