"""End to end through the installed `deepfpga` command: a real process, its real exit status
and stderr (the in-process suite covers the cases; these prove nothing differs outside)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

_SCRIPT = Path(sys.executable).with_name("deepfpga")
EXE = [str(_SCRIPT)] if _SCRIPT.is_file() else [
    sys.executable, "-c", "import sys; from deepfpga.cli import main; sys.exit(main())"]


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _depthwise_onnx(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], group=2, name="dw"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], name="pool"),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    g = helper.make_graph(nodes, "mnet", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 2, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")])
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
                     .SerializeToString())
    return path


def test_refusals_end_to_end(files, tmp_path):
    existing = tmp_path / "existing.npz"
    existing.write_bytes(b"keep me")
    x = tmp_path / "x.npy"
    x.write_bytes(files.x_int.read_bytes())
    cases = [
        (["analyze", _depthwise_onnx(tmp_path / "m.onnx")], "dw (Conv(group=2))"),
        (["compile", files.qmodel, "--target", "tiny", "-o", existing], "not a directory"),
        (["simulate", "fmnist-vgg", "--target", "zedboard", "--set", "clock_mhz=nan"],
         "clock_mhz"),
        (["infer", files.qmodel, "--input", x, "--output", x], "is also an input"),
        (["run", "--out", existing / "out"], "is not a directory"),
    ]
    before = x.read_bytes()
    for args, match in cases:
        r = _run(args, tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and match in lines[0], (args, r.stderr)
    assert existing.read_bytes() == b"keep me" and x.read_bytes() == before


@pytest.mark.slow
def test_interrupt_exits_130_without_traceback(tmp_path):
    # enough test images that the flow is still simulating when the signal comes: interrupt
    # once it has announced its first step, whatever this machine's speed
    p = subprocess.Popen([*EXE, "run", "--out", str(tmp_path / "out"), "--images", "10000"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "[" not in p.stdout.readline():
        pass
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "deepfpga run: interrupted"
