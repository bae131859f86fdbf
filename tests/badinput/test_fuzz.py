"""Property-based fuzzing of every file parser: mutated, truncated and generated files are
either refused with an InputError or decode to exactly what was written; never a traceback."""

from __future__ import annotations

import contextlib
import json
import tomllib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfpga.errors import InputError

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        b[pos % len(b)] = val
    if cut is not None:
        b = b[: cut % (len(b) + 1)]
    return bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6)
CUTS = st.none() | st.integers(0, 1 << 20)


# --- quantized-model .npz --------------------------------------------------------------------
def _same_qmodel(a, b) -> bool:
    return (a.graph.to_dict() == b.graph.to_dict() and a.input_format == b.input_format
            and dict(a.formats) == dict(b.formats)
            and a.weights.keys() == b.weights.keys()
            and all(np.array_equal(a.weights[k][j], b.weights[k][j])
                    for k in a.weights for j in a.weights[k]))


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_qmodel_bytes(files, tmp_path_factory, edits, cut):
    from deepfpga.quant.qfile import load_qmodel

    original = load_qmodel(files.qmodel)
    path = tmp_path_factory.mktemp("fq") / "q.npz"
    path.write_bytes(_mutate(files.qmodel.read_bytes(), edits, cut))
    try:
        got = load_qmodel(path)
    except InputError:
        return
    assert _same_qmodel(got, original)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@FUZZ
@given(data=st.data())
def test_qmodel_meta_values(files, tmp_path_factory, data):
    """Any one value of `__meta__` replaced by any JSON value."""
    from deepfpga.quant.qfile import load_qmodel

    with np.load(files.qmodel, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["__meta__"]))
    paths = [p for p in _paths(meta) if p]
    where = data.draw(st.sampled_from(paths))
    value = data.draw(JSON_VALUES)
    node = meta
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    arrays["__meta__"] = np.array(json.dumps(meta))
    path = tmp_path_factory.mktemp("fm") / "q.npz"
    np.savez(path, **arrays)
    try:
        got = load_qmodel(path)
    except InputError:
        return
    assert got.graph.to_dict() == meta["graph"]
    assert got.input_format.to_dict() == meta["input_format"]
    assert {n: f.to_dict() for n, f in got.formats.items()} == meta["formats"]


# --- float-model .npz ---------------------------------------------------------------------
@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_float_model_bytes(files, tmp_path_factory, edits, cut):
    from deepfpga.frontends.float_model import load_float_model

    original = load_float_model(files.float_model)
    path = tmp_path_factory.mktemp("ff") / "m.npz"
    path.write_bytes(_mutate(files.float_model.read_bytes(), edits, cut))
    try:
        got = load_float_model(path)
    except InputError:
        return
    assert got.to_dict() == original.to_dict()
    for lname, params in original.params.items():
        for k, v in params.items():
            assert np.array_equal(got.params[lname][k], v)


# --- program.bin ----------------------------------------------------------------------------
@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_program_bytes(files, edits, cut):
    """Checked against the config it was compiled for (as disasm and simulate do)."""
    from deepfpga.hw.isa import decode_program

    data = files.program.read_bytes()
    original = decode_program(data)
    try:
        got = decode_program(_mutate(data, edits, cut), original.config_hash)
    except InputError:
        return
    assert got.instructions == original.instructions
    assert got.config_hash == original.config_hash


def test_program_header_damage_is_detected_without_an_expected_hash(files):
    from deepfpga.hw.isa import decode_program

    data = bytearray(files.program.read_bytes())
    data[20] ^= 0x01  # inside the 32-byte config hash (header bytes 16..47)
    with pytest.raises(InputError):
        decode_program(bytes(data))


@FUZZ
@given(st.binary(max_size=200))
def test_program_random_bytes(data):
    from deepfpga.hw.isa import decode_program

    with contextlib.suppress(InputError):
        decode_program(data)


# --- TOML targets ---------------------------------------------------------------------------
TOML_SCALARS = st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e-300", "1e300", "3",
                                "2.5", "true", '"x"', "[]", "{}", "1979-05-27", "0x10",
                                "9223372036854775807", "100.0", "16", "64", "'LFE5U-85F'"])


@FUZZ
@given(data=st.data())
def test_target_values(files, tmp_path_factory, data):
    from deepfpga.hw.config import load_config

    lines = files.target.read_text().splitlines()
    keyed = [i for i, ln in enumerate(lines) if " = " in ln and not ln.startswith("#")]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.sampled_from(keyed))
        key = lines[i].split(" = ")[0]
        lines[i] = f"{key} = {data.draw(TOML_SCALARS)}"
    text = "\n".join(lines) + "\n"
    path = tmp_path_factory.mktemp("ft") / "t.toml"
    path.write_text(text)
    try:
        cfg = load_config(path)
    except InputError:
        return
    written = tomllib.loads(text)
    got = cfg.to_dict()
    for k, v in written.items():
        assert got[k] == v, k
    for k, v in got.items():
        if isinstance(v, float):
            assert np.isfinite(v), k


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_target_bytes(files, tmp_path_factory, edits, cut):
    from deepfpga.hw.config import load_config

    path = tmp_path_factory.mktemp("fb") / "t.toml"
    data = _mutate(files.target.read_bytes(), edits, cut)
    path.write_bytes(data)
    try:
        cfg = load_config(path)
    except InputError:
        return
    written = tomllib.loads(data.decode())
    assert {k: cfg.to_dict()[k] for k in written} == written


# --- ONNX protobufs -------------------------------------------------------------------------
@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_onnx_bytes(files, edits, cut):
    from deepfpga.frontends.onnx_import import import_onnx

    with contextlib.suppress(InputError):
        import_onnx(_mutate(files.onnx.read_bytes(), edits, cut))


OPS = st.sampled_from(["Conv", "Relu", "MaxPool", "AveragePool", "Flatten", "Gemm", "Dropout",
                       "BatchNormalization", "Softmax", "Reshape", "GlobalAveragePool", "LRN",
                       "Identity", "Add", "Transpose", "Cast"])
ATTR_VALUES = st.sampled_from([[1], [2, 2], [1, 1, 1, 1], [0, 0], [3, 3], [-1, -1], [1, 2, 3],
                               1, 2, 0, -1])
ATTR_NAMES = st.sampled_from(["kernel_shape", "strides", "pads", "dilations", "group", "axis",
                              "size", "ceil_mode", "transB", "count_include_pad"])


@FUZZ
@given(ops=st.lists(st.tuples(OPS, st.dictionaries(ATTR_NAMES, ATTR_VALUES, max_size=3)),
                    min_size=1, max_size=6),
       channels=st.integers(1, 3))
def test_generated_onnx_graphs(ops, channels):
    """Random chains of the claimed ops with random attributes: a Graph that runs, or a refusal."""
    from onnx import TensorProto, helper, numpy_helper

    from deepfpga.frontends.onnx_import import import_onnx
    from deepfpga.ir.float_exec import run_float

    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i, (op, attrs) in enumerate(ops):
        out = f"t{i}"
        ins = [prev]
        if op == "Conv":
            inits.append(numpy_helper.from_array(
                rng.normal(size=(2, channels, 3, 3)).astype(np.float32), f"w{i}"))
            ins.append(f"w{i}")
        elif op == "Gemm":
            inits.append(numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32),
                                                 f"w{i}"))
            ins.append(f"w{i}")
        elif op == "BatchNormalization":
            for k in "sbmv":
                inits.append(numpy_helper.from_array(np.ones(channels, np.float32), f"{k}{i}"))
                ins.append(f"{k}{i}")
        elif op == "Reshape":
            inits.append(numpy_helper.from_array(np.array([0, -1]), f"s{i}"))
            ins.append(f"s{i}")
        elif op == "Add":
            ins.append(prev)
        elif op == "Cast":
            attrs = {"to": TensorProto.FLOAT}
        elif op == "Transpose":
            attrs = {}
        if op in ("MaxPool", "AveragePool", "LRN") and not attrs:
            attrs = {"kernel_shape": [2, 2]} if op != "LRN" else {"size": 3}
        if op == "LRN":
            attrs = {k: v for k, v in attrs.items() if k == "size"} or {"size": 3}
        nodes.append(helper.make_node(op, ins, [out], name=f"n{i}", **attrs))
        prev = out
    g = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, channels, 6, 6])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    try:
        graph = import_onnx(model.SerializeToString())
    except InputError:
        return
    x = rng.random((2, channels, 6, 6)).astype(np.float32)
    y = run_float(graph, x)
    assert np.isfinite(np.asarray(y)).all()


# --- IDX data files -------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=64))
def test_idx_bytes(data):
    from deepfpga.data import parse_idx

    with contextlib.suppress(InputError):
        parse_idx(data)

