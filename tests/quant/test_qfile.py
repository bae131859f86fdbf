"""The quantized model file: round trip and every refusal."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Softmax, chain
from deepfpga.quant.fixedpoint import FixedFormat
from deepfpga.quant.qfile import FORMAT_VERSION, META_KEY, load_qmodel, save_qmodel
from deepfpga.quant.qmodel import QuantizedModel
from deepfpga.quant.random_model import random_qmodel
from deepfpga.quant.reference import execute


def tiny_graph():
    return chain("tiny", (1, 6, 6), [
        Conv2d("c1", (), 1, 3, (3, 3), (1, 1), (1, 1)), ReLU("r1", ()),
        MaxPool2d("p1", (), (2, 2), (2, 2)), Flatten("f", ()),
        Linear("fc", (), 27, 4, bias=False), Softmax("sm", ()),
    ])


@pytest.fixture
def qm() -> QuantizedModel:
    rng = np.random.default_rng(0)
    return random_qmodel(tiny_graph(), rng, 16, 12, bw_b=32, meta={"source": "test", "n": 3})


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _meta(arrays: dict[str, np.ndarray]) -> dict:
    return json.loads(str(arrays[META_KEY]))


def test_round_trip_is_exact(tmp_path, qm):
    path = save_qmodel(tmp_path / "m.npz", qm)
    back = load_qmodel(path)
    assert back.graph.to_dict() == qm.graph.to_dict()
    assert back.input_format == qm.input_format
    assert dict(back.formats) == dict(qm.formats)
    assert dict(back.meta) == {**qm.meta}
    assert set(back.weights) == set(qm.weights)
    for name, arrays in qm.weights.items():
        for key, a in arrays.items():
            assert np.array_equal(back.weights[name][key], a)
    x = np.random.default_rng(1).integers(-2**15, 2**15, (2, 1, 6, 6))
    assert np.array_equal(execute(back, x).output, execute(qm, x).output)


def test_layout_smallest_dtypes_and_meta(tmp_path, qm):
    path = save_qmodel(tmp_path / "m.npz", qm)
    arrays = _arrays(path)
    assert set(arrays) == {"c1/weight", "c1/bias", "fc/weight", META_KEY}
    assert arrays["c1/weight"].dtype == np.int16  # 12-bit weights
    assert arrays["c1/bias"].dtype == np.int32  # 32-bit bias
    assert arrays[META_KEY].shape == () and arrays[META_KEY].dtype.kind == "U"
    meta = _meta(arrays)
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == "deepfpga-qmodel"
    assert meta["formats"]["c1"]["weight"] == {"bw": 12, "fl": qm.formats["c1"].weight.fl}
    assert meta["formats"]["r1"]["weight"] is None
    assert meta["input_format"] == {"bw": 16, "fl": qm.input_format.fl}
    assert meta["meta"]["source"] == "test"
    # 8-bit formats are stored as int8
    q8 = random_qmodel(tiny_graph(), np.random.default_rng(3), 8, 8)
    assert _arrays(save_qmodel(tmp_path / "m8.npz", q8))["c1/weight"].dtype == np.int8


def test_save_refusals(tmp_path, qm):
    with pytest.raises(InputError, match=".npz"):
        save_qmodel(tmp_path / "m.bin", qm)
    bad = QuantizedModel(qm.graph, qm.input_format, qm.formats, qm.weights,
                         {"obj": object()})
    with pytest.raises(InputError, match="JSON"):
        save_qmodel(tmp_path / "m.npz", bad)
    assert not (tmp_path / "m.npz").exists()


def _broken(tmp_path, qm, change) -> Path:
    path = save_qmodel(tmp_path / "m.npz", qm)
    arrays = _arrays(path)
    change(arrays)
    _rewrite(path, arrays)
    return path


def _set_meta(arrays, fn):
    meta = _meta(arrays)
    fn(meta)
    arrays[META_KEY] = np.array(json.dumps(meta))


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("c1/weight"), "missing array c1/weight"),
    (lambda a: a.pop("c1/bias"), "missing array c1/bias"),
    (lambda a: a.__setitem__("c1/weight", a["c1/weight"].astype(np.float32)),
     "'c1/weight' has dtype float32"),
    (lambda a: a.__setitem__("c1/bias", np.full_like(a["c1/bias"], 2**31 - 1).astype(np.int64)
                             * 2), "c1/bias holds integers outside"),
    (lambda a: a.__setitem__("c1/weight", a["c1/weight"][:1]), "c1/weight has shape"),
    (lambda a: a.__setitem__("r1/weight", np.zeros(3, dtype=np.int8)), "carries no weights"),
    (lambda a: a.__setitem__("junk", np.zeros(3, dtype=np.int8)), "unexpected array 'junk'"),
    (lambda a: a.__setitem__("nolayer/weight", np.zeros(3, dtype=np.int8)),
     "unexpected array 'nolayer/weight'"),
    (lambda a: a.pop(META_KEY), "no '__meta__' entry"),
    (lambda a: a.__setitem__(META_KEY, np.array([1, 2])), "0-d unicode"),
    (lambda a: a.__setitem__(META_KEY, np.array("{not json")), "invalid JSON"),
    (lambda a: a.__setitem__(META_KEY, np.array("[1, 2]")), "JSON object"),
    (lambda a: _set_meta(a, lambda m: m.__setitem__("format_version", 99)),
     "unsupported format_version 99"),
    (lambda a: _set_meta(a, lambda m: m.pop("format_version")), "unsupported format_version"),
    (lambda a: _set_meta(a, lambda m: m.__setitem__("kind", "other")), "kind"),
    (lambda a: _set_meta(a, lambda m: m.pop("graph")), "lacks key 'graph'"),
    (lambda a: _set_meta(a, lambda m: m["graph"]["layers"][0].__setitem__("kind", "warp")),
     "unknown layer kind 'warp'"),
    (lambda a: _set_meta(a, lambda m: m["formats"].pop("r1")), "'r1' has no fixed-point"),
    (lambda a: _set_meta(a, lambda m: m["formats"].__setitem__("ghost", {})),
     "unknown layers \\['ghost'\\]"),
    (lambda a: _set_meta(a, lambda m: m["formats"]["c1"].pop("output")),
     "formats\\['c1'\\]: missing key 'output'"),
    (lambda a: _set_meta(a, lambda m: m["formats"]["c1"].__setitem__("input", {"bw": 8})),
     "formats\\['c1'\\].input"),
    (lambda a: _set_meta(a, lambda m: m["formats"]["c1"]["weight"].__setitem__("bw", 40)),
     "bit width 40"),
    (lambda a: _set_meta(a, lambda m: m["formats"]["c1"]["weight"].__setitem__("fl", 1.5)),
     "must be integers"),
    (lambda a: _set_meta(a, lambda m: m["input_format"].__setitem__("fl", "x")),
     "input_format"),
    (lambda a: _set_meta(a, lambda m: m["formats"]["c1"].__setitem__("extra", None)),
     "unknown keys \\['extra'\\]"),
    (lambda a: _set_meta(a, lambda m: m.__setitem__("meta", [])), "'meta' must be an object"),
])
def test_load_refusals_name_the_problem(tmp_path, qm, change, message):
    path = _broken(tmp_path, qm, change)
    with pytest.raises(InputError, match=message):
        load_qmodel(path)


def test_load_refuses_non_npz_and_pickles(tmp_path, qm):
    p = tmp_path / "x.npz"
    p.write_text("hello")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_qmodel(p)
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(InputError, match="single .npy"):
        load_qmodel(tmp_path / "a.npy")
    with pytest.raises(InputError, match="no such"):
        load_qmodel(tmp_path / "missing.npz")
    # an object array needs pickle: refused, never unpickled
    path = _broken(tmp_path, qm, lambda a: a.__setitem__(
        "fc/weight", np.array([[1]] * 4, dtype=object)))
    with pytest.raises(InputError, match="'fc/weight' cannot be loaded"):
        load_qmodel(path)
    # a truncated archive
    data = save_qmodel(tmp_path / "t.npz", qm).read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        load_qmodel(tmp_path / "t.npz")


def test_unsigned_arrays_in_range_are_accepted(tmp_path):
    g = chain("u", (3,), [Linear("fc", (), 3, 2, bias=False)])
    f = FixedFormat(8, 0)
    from deepfpga.quant.qmodel import LayerFormats

    qm = QuantizedModel(g, f, {"fc": LayerFormats(f, f, f, None)},
                        {"fc": {"weight": np.array([[1, 2, 3], [4, 5, 6]])}})
    path = save_qmodel(tmp_path / "u.npz", qm)
    arrays = _arrays(path)
    arrays["fc/weight"] = arrays["fc/weight"].astype(np.uint8)
    _rewrite(path, arrays)
    assert load_qmodel(path).weights["fc"]["weight"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert zipfile.is_zipfile(path)
