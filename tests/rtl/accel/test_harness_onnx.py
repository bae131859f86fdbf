"""ONNX models the zoo lacks (scripts/make_onnx_models.py: 5×5, 7×7 stride 2, 1×1 and 11×11
stride 4 kernels, 57×57 maps, FC layers) imported, quantized on random calibration inputs,
compiled and run: on `tiny` at 16 bits on the accelerator RTL (Verilator) bit-exact against the
reference executor and the functional simulator (every tensor the accelerator writes, the
saturation counts, no error, no token left); on `zedboard` at 8 bits compiled and checked on
the functional simulator against the reference executor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from tests.rtl.accel.test_harness_programs import check_bit_exact

from deepfpga.compiler import compile_model
from deepfpga.frontends.onnx_import import import_onnx
from deepfpga.hw.config import load_config
from deepfpga.quant.reference import execute
from deepfpga.sim.functional import simulate

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "make_onnx_models.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_onnx_models", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MK = _script()


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    return MK.make_models(tmp_path_factory.mktemp("onnx"))


def test_script_writes_every_model(onnx_models):
    assert set(onnx_models) == set(MK.MODELS)
    kernels = set()
    for name, path in onnx_models.items():
        g = import_onnx(path)
        assert g.input_shape == MK.MODELS[name][1]
        kernels |= {(la.kernel, la.stride) for la in g.layers if hasattr(la, "kernel")
                    and la.kernel is not None and type(la).__name__ == "Conv2d"}
        assert any(type(la).__name__ == "Linear" for la in g.layers), name
    assert {((5, 5), (1, 1)), ((7, 7), (2, 2)), ((1, 1), (1, 1)), ((11, 11), (4, 4))} <= kernels


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MK.MODELS))
def test_onnx_model_bit_exact_on_rtl(accel_build, onnx_models, name):
    cfg = load_config("tiny")
    _, q, x = MK.quantized(onnx_models[name], "16")
    c = compile_model(q, cfg)
    assert c.manifest.partition.host == ()        # every layer on the accelerator
    check_bit_exact(accel_build, q, c, x, cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MK.MODELS))
def test_onnx_model_compiles_for_zedboard(onnx_models, name):
    cfg = load_config("zedboard")
    _, q, x = MK.quantized(onnx_models[name], "8")
    c = compile_model(q, cfg)
    fsim = simulate(c, x)
    ref = execute(q, x, keep="all")
    for d in c.manifest.layers:
        np.testing.assert_array_equal(fsim.layers[d.output], ref.layers[d.output],
                                      err_msg=d.name)
