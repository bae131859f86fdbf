"""`deepfpga infer QMODEL --input X.npy`: bad quantized-model files, bad inputs, bad outputs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

FILE_KINDS = ("file/", "ro", "empty", "long", "isdir")


def _arrays(files) -> dict[str, np.ndarray]:
    with np.load(files.qmodel, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _meta(files) -> dict:
    return json.loads(str(_arrays(files)["__meta__"]))


def _write(work: Path, arrays: dict) -> Path:
    path = work / "bad_q.npz"
    np.savez(path, **arrays)
    return path


def _with_meta(files, work, mutate) -> Path:
    meta = _meta(files)
    mutate(meta)
    return _write(work, {**_arrays(files), "__meta__": np.array(json.dumps(meta))})


def _layer(i, key, value):
    return lambda m: m["graph"]["layers"][i].__setitem__(key, value)


META_EDITS = {
    "kernel-string": (_layer(0, "kernel", "3"), "kernel"),
    "stride-list-of-one": (_layer(0, "stride", [2]), "stride"),
    "channels-negative": (_layer(0, "in_channels", -1), "positive"),
    "features-string": (_layer(4, "in_features", "64"), "in_features"),
    "padding-float": (_layer(0, "padding", 1.0), "padding"),
    "pool-padding-huge": (_layer(2, "padding", [3, 3]), "padding"),
    "unknown-kind": (_layer(1, "kind", "gelu"), "unknown layer kind"),
    "no-kind": (lambda m: m["graph"]["layers"][1].pop("kind"), "unknown layer kind"),
    "format-version": (lambda m: m.__setitem__("format_version", 99), "format_version"),
    "format-version-string": (lambda m: m.__setitem__("format_version", "1"), "format_version"),
    "wrong-kind": (lambda m: m.__setitem__("kind", "other"), "kind"),
    "no-graph": (lambda m: m.pop("graph"), "graph"),
    "graph-list": (lambda m: m.__setitem__("graph", []), "graph"),
    "no-formats": (lambda m: m.pop("formats"), "formats"),
    "formats-list": (lambda m: m.__setitem__("formats", []), "formats"),
    "formats-unknown-layer": (lambda m: m["formats"].__setitem__("ghost", {}), "ghost"),
    "format-bw-string": (lambda m: m["formats"]["conv1"]["output"].__setitem__("bw", "8"),
                         "bw and fl"),
    "format-bw-zero": (lambda m: m["formats"]["conv1"]["output"].__setitem__("bw", 0), "conv1"),
    "format-extra-key": (lambda m: m["formats"]["conv1"]["output"].__setitem__("q", 1),
                         "conv1"),
    "format-missing-output": (lambda m: m["formats"]["conv1"].pop("output"), "output"),
    "input-format-null": (lambda m: m.__setitem__("input_format", None), "input_format"),
    "meta-list": (lambda m: m.__setitem__("meta", [1]), "meta"),
    "input-shape-mismatch": (lambda m: m["graph"].__setitem__("input_shape", [1, 9, 9]),
                             "shape"),
    "missing-layer-format": (lambda m: m["formats"].pop("fc"), "fc"),
}


@pytest.mark.parametrize("case", sorted(META_EDITS))
def test_bad_qmodel_meta(case, files, work, refused):
    mutate, match = META_EDITS[case]
    path = _with_meta(files, work, mutate)
    refused(["infer", path, "--input", files.x_int, "--output", work / "existing.npy"], match,
            keep=[files.x_int])


def _arr(files, **changes):
    a = _arrays(files)
    for k, v in changes.items():
        k = k.replace("__", "/", 1) if not k.startswith("__") else k
        if v is None:
            a.pop(k)
        else:
            a[k] = v
    return a


ARRAY_EDITS = {
    "meta-object-array": ({"__meta__": np.array([{"a": 1}], dtype=object)}, "__meta__"),
    "meta-bytes": ({"__meta__": np.array(b"{}")}, "unicode"),
    "meta-1d": ({"__meta__": np.array(["{}"])}, "0-d"),
    "meta-deep-json": ({"__meta__": np.array("[" * 200_000 + "]" * 200_000)}, "nested"),
    "meta-invalid-json": ({"__meta__": np.array("{")}, "invalid JSON"),
    "meta-nan": ({"__meta__": np.array('{"kind": NaN}')}, "non-finite"),
    "meta-not-object": ({"__meta__": np.array("3")}, "JSON object"),
    "no-meta": ({"__meta__": None}, "__meta__"),
    "weight-float": ({"conv1__weight": np.ones((4, 1, 3, 3))}, "integers expected"),
    "weight-shape": ({"conv1__weight": np.ones((4, 1, 2, 2), np.int8)}, "shape"),
    "weight-missing": ({"conv1__weight": None}, "conv1"),
    "weight-object": ({"conv1__weight": np.array([None, 1], dtype=object)}, "cannot be loaded"),
    "unexpected-array": ({"stray": np.ones(2, np.int8)}, "unexpected array"),
    "unknown-layer-array": ({"ghost__weight": np.ones(2, np.int8)}, "unexpected array"),
    "weight-out-of-range": ({"conv1__weight": np.full((4, 1, 3, 3), 1000, np.int32)}, "conv1"),
}


@pytest.mark.parametrize("case", sorted(ARRAY_EDITS))
def test_bad_qmodel_arrays(case, files, work, refused):
    changes, match = ARRAY_EDITS[case]
    path = _write(work, _arr(files, **changes))
    refused(["infer", path, "--input", files.x_int], match)


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -1])
def test_truncated_qmodel(cut, files, work, refused):
    data = files.qmodel.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(data) - 1)
    path = work / "cut.npz"
    path.write_bytes(data[:n])
    refused(["infer", path, "--input", files.x_int], "cut.npz")


def test_qmodel_is_a_single_npy(files, work, refused):
    path = work / "single.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.ones(3))
    refused(["infer", path, "--input", files.x_int], "single.npz")


def test_qmodel_zip_with_a_corrupt_member(files, work, refused):
    path = work / "zipbad.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", b"\x93NUMPY garbage")
    refused(["infer", path, "--input", files.x_int], "zipbad.npz")


@pytest.mark.parametrize("spec,match", [("missing.npz", "no such"), ("dir", "no such")])
def test_qmodel_missing(spec, match, files, work, refused):
    (work / "dir").mkdir()
    refused(["infer", work / spec, "--input", files.x_int], match)


def _npy(work: Path, a) -> Path:
    path = work / "in.npy"
    np.save(path, a, allow_pickle=True)
    return path


INPUTS = {
    "wrong-shape": (np.zeros((2, 1, 7, 7), np.int64), "does not fit"),
    "wrong-rank": (np.zeros((8, 8), np.int64), "does not fit"),
    "float-without-flag": (np.zeros((2, 1, 8, 8), np.float32), "--float-input"),
    "object": (np.array([None] * 2, dtype=object), "not a readable"),
    "strings": (np.full((1, 1, 8, 8), "a"), "dtype"),
    "bool": (np.zeros((1, 1, 8, 8), bool), "dtype"),
    "complex": (np.zeros((1, 1, 8, 8), complex), "dtype"),
    "empty-batch": (np.zeros((0, 1, 8, 8), np.int64), "empty"),
}


@pytest.mark.parametrize("case", sorted(INPUTS))
def test_bad_input(case, files, work, refused):
    a, match = INPUTS[case]
    refused(["infer", files.qmodel, "--input", _npy(work, a), "--output", work / "y.npy"],
            match)
    assert not (work / "y.npy").exists()


@pytest.mark.parametrize("case,match", [("nan", "NaN"), ("inf", "inf"), ("complex", "dtype")])
def test_bad_float_input(case, match, files, work, refused):
    a = np.zeros((1, 1, 8, 8), complex if case == "complex" else np.float32)
    if case != "complex":
        a[0, 0, 0, 0] = np.nan if case == "nan" else np.inf
    refused(["infer", files.qmodel, "--float-input", "--input", _npy(work, a)], match)


def test_input_out_of_format_range(files, work, refused):
    a = np.full((1, 1, 8, 8), 10_000, np.int64)
    refused(["infer", files.qmodel, "--input", _npy(work, a)], "outside the format")


@pytest.mark.parametrize("data,match", [(b"", "not a readable"), (b"garbage", "not a readable"),
                                        (b"PK\x03\x04", "not a readable")])
def test_input_not_npy(data, match, files, work, refused):
    (work / "in.npy").write_bytes(data)
    refused(["infer", files.qmodel, "--input", work / "in.npy"], match)


def test_input_missing(files, work, refused):
    refused(["infer", files.qmodel, "--input", work / "nope.npy"], "no such")


def test_output_equal_to_input_keeps_the_input(files, work, refused):
    x = work / "x.npy"
    x.write_bytes(files.x_int.read_bytes())
    refused(["infer", files.qmodel, "--input", x, "--output", x], "is also an input", keep=[x])


def test_output_equal_to_the_model(files, work, refused):
    q = work / "q.npy"
    q.write_bytes(b"not really")
    refused(["infer", q, "--input", files.x_int, "--output", q], "is also an input", keep=[q])


def test_output_wrong_suffix(files, work, refused):
    refused(["infer", files.qmodel, "--input", files.x_int, "--output", work / "existing.npz"],
            ".npy", keep=[work / "existing.npz"])


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_bad_output_location(kind, files, work, bad_location, refused):
    path, match = bad_location(kind, ".npy")
    refused(["infer", files.qmodel, "--input", files.x_int, f"--output={path}"], match,
            keep=[work / "existing.npz"])


@pytest.mark.parametrize("kind", ("file/", "ro", "empty", "long", "isfile"))
def test_bad_dump_location(kind, files, work, bad_location, refused):
    path, match = bad_location(kind, "")
    refused(["infer", files.qmodel, "--input", files.x_int, f"--dump={path}"], match,
            keep=[work / "existing.npz"])


def test_dump_into_the_inputs_directory_does_not_replace_the_input(files, work, refused):
    """--dump DIR writes DIR/input.npy: refused when that is the input file itself."""
    x = work / "input.npy"
    x.write_bytes(files.x_int.read_bytes())
    refused(["infer", files.qmodel, "--input", x, "--dump", work], "is also an input", keep=[x])
