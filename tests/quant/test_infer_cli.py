"""`deepfpga infer`: outputs, dumps, tables/JSON and clean refusals (exit 2, one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfpga.cli import main
from deepfpga.ir import INPUT, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Softmax, chain
from deepfpga.quant.qfile import save_qmodel
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import execute


@pytest.fixture
def setup(tmp_path):
    g = chain("cli", (2, 6, 6), [
        Conv2d("c1", (), 2, 3, (3, 3), (1, 1), (1, 1)), ReLU("r1", ()),
        MaxPool2d("p1", (), (2, 2), (2, 2)), Flatten("f", ()),
        Linear("fc", (), 27, 5), Softmax("sm", ()),
    ])
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (3, 2, 6, 6))
    qm = random_qmodel(g, rng, 8, 8, fl_in=4, x_calib=x)
    qpath = save_qmodel(tmp_path / "m.npz", qm)
    np.save(tmp_path / "x.npy", x)
    return tmp_path, qm, qpath, x


def test_infer_writes_output_and_dump(setup, capsys):
    tmp, qm, qpath, x = setup
    rc = main(["infer", str(qpath), "--input", str(tmp / "x.npy"), "--output",
               str(tmp / "y.npy"), "--dump", str(tmp / "d")])
    assert rc == 0
    want = execute(qm, x, keep="all")
    assert np.array_equal(np.load(tmp / "y.npy"), want.output)
    for name in ("c1", "r1", "p1", "f", "fc"):
        a = np.load(tmp / "d" / f"{name}.npy")
        assert a.dtype == np.int8 and np.array_equal(a, want.layers[name]), name
    assert np.array_equal(np.load(tmp / "d" / "input.npy"), x)
    assert np.load(tmp / "d" / "sm.npy").dtype == np.float64
    formats = json.loads((tmp / "d" / "formats.json").read_text())
    assert formats["layers"]["c1"] == qm.formats["c1"].to_dict()
    assert formats["input"] == {"bw": 8, "fl": 4} and formats["float_layers"] == ["sm"]
    out = capsys.readouterr().out
    assert "c1" in out and "Q8." in out and "saturated" in out


def test_infer_json_single_sample_and_float_input(setup, capsys):
    tmp, qm, qpath, x = setup
    xf = np.ldexp(x[0].astype(np.float32), -4) * 1.5  # some values saturate at Q8.4
    np.save(tmp / "xf.npy", xf)
    rc = main(["infer", str(qpath), "--input", str(tmp / "xf.npy"), "--float-input",
               "--output", str(tmp / "y.npy"), "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["batch"] == 1
    rows = {r["layer"]: r for r in rep["layers"]}
    want = execute(qm, xf[None], float_input=True)
    assert rows[INPUT]["saturated"] == want.saturations[INPUT] > 0
    assert rows["c1"]["format"] == str(qm.formats["c1"].output)
    assert rows["sm"]["format"] == "float" and rows["sm"]["where"] == "host"
    assert rep["total_saturated"] == want.total_saturations
    y = np.load(tmp / "y.npy")
    assert y.shape == (5,) and np.array_equal(y, want.output[0])


@pytest.mark.parametrize("args, message", [
    (["--input", "{tmp}/xf32.npy"], "dtype float32"),
    (["--input", "{tmp}/bad_shape.npy"], "shape (3, 2, 5, 6) does not fit"),
    (["--input", "{tmp}/big.npy"], "outside the format"),
    (["--input", "{tmp}/missing.npy"], "no such input file"),
    (["--input", "{tmp}/x.npy", "--output", "{tmp}/y.txt"], "must end in .npy"),
    (["--input", "{tmp}/text.npy"], "not a readable .npy"),
])
def test_infer_refusals(setup, capsys, args, message):
    tmp, qm, qpath, x = setup
    np.save(tmp / "xf32.npy", x.astype(np.float32))
    np.save(tmp / "bad_shape.npy", x[:, :, :5])
    np.save(tmp / "big.npy", x * 4)
    (tmp / "text.npy").write_text("nope")
    rc = main(["infer", str(qpath), *[a.format(tmp=tmp) for a in args]])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_infer_refuses_a_bad_model_file(tmp_path, capsys):
    (tmp_path / "m.npz").write_text("not a model")
    np.save(tmp_path / "x.npy", np.zeros((1, 2), dtype=np.int8))
    assert main(["infer", str(tmp_path / "m.npz"), "--input", str(tmp_path / "x.npy")]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
