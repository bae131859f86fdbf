"""Shared fixtures of the bad-input suite: tiny good files of every kind, and `refuse`.

Every case runs the CLI in-process (`deepfpga.cli.main`) and checks the contract of a refusal:
exit status 2, exactly one line on stderr naming the bad thing, no traceback, nothing on stdout
with --json, and every existing output file byte-for-byte intact.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from deepfpga.cli import main


@dataclass(frozen=True)
class Files:
    root: Path
    float_model: Path     # float-model .npz (conv, relu, pool, flatten, fc)
    qmodel: Path          # quantized model of the same graph
    onnx: Path            # ONNX of the same structure
    compiled: Path        # `deepfpga compile` output for the tiny target
    program: Path         # compiled / program.bin
    data: Path            # .npz data set of 1x8x8 images, 3 classes
    x_int: Path           # a batch for `infer` in the input format
    x_float: Path         # a float batch (--float-input)
    target: Path          # a valid TOML target (a copy of tiny)


def _onnx_bytes(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool1"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1, name="fc"),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in
             (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from deepfpga.compiler import compile_model
    from deepfpga.frontends.float_model import save_float_model
    from deepfpga.hw.config import load_config
    from deepfpga.ir import Conv2d, Flatten, Linear, MaxPool2d, ReLU, chain
    from deepfpga.quant.qfile import save_qmodel
    from deepfpga.quant.random_model import random_qmodel

    root = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(19)
    w1 = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    b1 = rng.normal(size=4).astype(np.float32)
    w2 = rng.normal(size=(3, 64)).astype(np.float32) * 0.1
    b2 = rng.normal(size=3).astype(np.float32)
    g = chain("tiny", (1, 8, 8), [
        Conv2d("conv1", (), in_channels=1, out_channels=4, kernel=3, padding=1),
        ReLU("relu1", ()), MaxPool2d("pool1", ()), Flatten("flat", ()),
        Linear("fc", (), in_features=64, out_features=3),
    ], {"conv1": {"weight": w1, "bias": b1}, "fc": {"weight": w2, "bias": b2}})
    fm = save_float_model(g, root / "float.npz")
    qm = random_qmodel(g, rng, 8, 8)
    qpath = save_qmodel(root / "q.npz", qm)
    onnx_path = root / "tiny.onnx"
    onnx_path.write_bytes(_onnx_bytes(w1, b1, w2, b2))
    compiled = root / "build"
    compile_model(qm, load_config("tiny")).write(compiled)
    x = rng.integers(0, 256, size=(30, 1, 8, 8), dtype=np.uint8)
    y = np.arange(30) % 3
    np.savez(root / "data.npz", x=x, y=y)
    fmt = qm.input_format
    np.save(root / "x_int.npy", rng.integers(fmt.qmin, fmt.qmax, size=(2, 1, 8, 8)))
    np.save(root / "x_float.npy", rng.random((2, 1, 8, 8)).astype(np.float32))
    from importlib import resources

    target = root / "tiny.toml"
    target.write_text(resources.files("deepfpga.hw.presets").joinpath("tiny.toml").read_text())
    return Files(root, fm, qpath, onnx_path, compiled, compiled / "program.bin",
                 root / "data.npz", root / "x_int.npy", root / "x_float.npy", target)


@pytest.fixture
def work(tmp_path: Path, files: Files) -> Path:
    """A scratch directory holding an existing output file `existing.npz` (must survive)."""
    (tmp_path / "existing.npz").write_bytes(b"precious output of an earlier run")
    return tmp_path


def copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own usage errors
        rc = int(e.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def refuse(argv: Sequence[str], capsys: pytest.CaptureFixture[str], match: str | Sequence[str],
           keep: Sequence[Path] = ()) -> str:
    """Run `deepfpga argv`; assert a clean refusal naming `match`; return the message."""
    before = {p: p.read_bytes() for p in keep if p.is_file()}
    rc, out, err = run_cli(argv, capsys)
    assert "Traceback" not in err, err
    assert rc == 2, (rc, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for m in [match] if isinstance(match, str) else match:
        assert m.lower() in lines[0].lower(), (m, lines[0])
    if "--json" in argv:
        assert out == "", out
    for p, data in before.items():
        assert p.is_file() and p.read_bytes() == data, f"{p} was changed by a failed run"
    leftovers = [q for p in keep for q in p.parent.glob(f".{p.name[:64]}.*.tmp")]
    assert not leftovers, leftovers
    return lines[0]


def _snapshot(root: Path) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


@pytest.fixture
def refused(capsys: pytest.CaptureFixture[str], work: Path, monkeypatch: pytest.MonkeyPatch):
    """`refused(argv, match, keep=())`: the `refuse` check bound to this test's capsys.

    Runs in `work` (so a default output location lies there too) and also asserts that the
    failed run left `work` exactly as it was: no new file or directory (nothing half-written),
    no file changed or lost (the existing output `existing.npz` included)."""
    monkeypatch.chdir(work)

    def check(argv: Sequence[str], match: str | Sequence[str], keep: Sequence[Path] = ()) -> str:
        before = _snapshot(work)
        msg = refuse(argv, capsys, match, [work / "existing.npz", *keep])
        after = _snapshot(work)
        assert after == before, (sorted(set(after) ^ set(before)),
                                 [p for p in before if p in after and after[p] != before[p]])
        return msg
    return check


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """`cli(argv) -> (rc, stdout, stderr)`, in-process."""
    return lambda argv: run_cli(argv, capsys)


@pytest.fixture(scope="session")
def readonly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory nobody can create files in (as root, chmod is ignored: use /sys)."""
    import os
    import tempfile

    d = tmp_path_factory.mktemp("readonly")
    d.chmod(0o555)
    try:
        fd, probe = tempfile.mkstemp(dir=d)
    except OSError:
        return d
    os.close(fd)
    os.unlink(probe)
    sys_dir = Path("/sys")
    try:
        fd, probe = tempfile.mkstemp(dir=sys_dir)
    except OSError:
        return sys_dir
    os.close(fd)
    os.unlink(probe)
    pytest.skip("no read-only directory available (root on a writable /sys)")


def bad_output(kind: str, work: Path, readonly: Path, suffix: str = ".npz") -> tuple[str, str]:
    """(path, expected message fragment) for one of `output_cases`."""
    if kind == "file/":
        return str(work / "existing.npz" / f"out{suffix}"), "is not a directory"
    if kind == "ro":
        return str(readonly / f"out{suffix}"), "cannot write in"
    if kind == "empty":
        return "", "empty path"
    if kind == "long":
        return str(work / ("x" * 300 + suffix)), "longer than 255 bytes"
    if kind == "isfile":
        return str(work / "existing.npz"), "not a directory"
    if kind == "isdir":
        d = work / f"adir{suffix}"
        d.mkdir(exist_ok=True)
        return str(d), "is a directory"
    raise AssertionError(kind)


# Output-location kinds every command with an output flag is tested with.
FILE_KINDS = ("file/", "ro", "empty", "long", "isdir")
DIR_KINDS = ("file/", "ro", "empty", "long", "isfile")


@pytest.fixture
def bad_location(work: Path, readonly_dir: Path):
    """`bad_location(kind, suffix)` -> (path, expected message fragment)."""
    return lambda kind, suffix=".npz": bad_output(kind, work, readonly_dir, suffix)
