"""Bit-width presets and the per-layer TOML overrides (refusals name the key)."""

from __future__ import annotations

import pytest

from deepfpga.errors import InputError
from deepfpga.ir import INPUT, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Softmax, chain
from deepfpga.quant.bits import (
    PRESETS,
    LayerBits,
    get_preset,
    load_bits_file,
    parse_bits_toml,
    resolve_bits,
)


def _graph():
    return chain("t", (1, 8, 8), [
        Conv2d("conv1", (), in_channels=1, out_channels=4, kernel=3, padding=1),
        ReLU("relu1", ()),
        MaxPool2d("pool1", ()),
        Conv2d("conv2", (), in_channels=4, out_channels=4, kernel=3, padding=1, bias=False),
        Flatten("flat", ()),
        Linear("fc1", (), in_features=64, out_features=10),
        Softmax("prob", ()),
    ])


def test_presets():
    g = _graph()
    p16 = resolve_bits(g, "16")
    assert p16[INPUT] == LayerBits(16)
    assert p16["conv1"] == LayerBits(16, 16, 16)
    assert p16["conv2"] == LayerBits(16, 16, None)   # no bias
    assert p16["fc1"] == LayerBits(16, 16, 16)
    p8 = resolve_bits(g, "8")
    assert p8["conv1"] == LayerBits(8, 8, 8) and p8["fc1"] == LayerBits(8, 8, 8)
    p84 = resolve_bits(g, "8/4")
    assert p84["conv1"] == LayerBits(8, 8, 8)
    assert p84["fc1"] == LayerBits(8, 4, 8)
    assert p84["relu1"] == LayerBits(8) and p84["prob"] == LayerBits(8)
    assert set(PRESETS) == {"16", "8", "8/4"}
    with pytest.raises(InputError, match="unknown bit-width preset '4'"):
        get_preset("4")


def test_overrides_apply_and_passthrough_inherits():
    g = _graph()
    plan = resolve_bits(g, "8", {"conv1": {"data_bits": 12}, "fc1": {"weight_bits": 4,
                                                                     "bias_bits": 8},
                                 INPUT: {"data_bits": 10}})
    assert plan[INPUT].data == 10
    assert plan["conv1"] == LayerBits(12, 8, 8)
    assert plan["relu1"].data == 12 and plan["pool1"].data == 12   # inherit their producer
    assert plan["conv2"].data == 8
    assert plan["fc1"] == LayerBits(8, 4, 8)


def test_toml_file(tmp_path):
    f = tmp_path / "bits.toml"
    f.write_text("[layers.fc1]\nweight_bits = 4\n\n[layers.conv1]\ndata_bits = 16\n")
    ov = load_bits_file(f)
    assert ov == {"fc1": {"weight_bits": 4}, "conv1": {"data_bits": 16}}
    plan = resolve_bits(_graph(), "8", ov)
    assert plan["fc1"].weight == 4 and plan["conv1"].data == 16


@pytest.mark.parametrize("text,match", [
    ("[layers.fc1]\nweight_bit = 4\n", r"layers\.fc1: unknown key 'weight_bit'"),
    ("[layers.fc1]\nweight_bits = 1\n", r"layers\.fc1\.weight_bits = 1 is outside 2\.\.32"),
    ("[layers.fc1]\nweight_bits = 33\n", r"layers\.fc1\.weight_bits = 33 is outside 2\.\.32"),
    ("[layers.fc1]\nweight_bits = 4.5\n", r"layers\.fc1\.weight_bits must be an integer"),
    ("[layers.fc1]\nweight_bits = true\n", r"layers\.fc1\.weight_bits must be an integer"),
    ("[layer.fc1]\nweight_bits = 4\n", r"unknown top-level key 'layer'"),
    ("layers = 3\n", r"'layers' must be a table"),
    ("[layers]\nfc1 = 4\n", r"layers\.fc1 must be a table"),
    ("[layers.fc1\n", r"invalid TOML"),
])
def test_toml_refusals(text, match):
    with pytest.raises(InputError, match=match):
        parse_bits_toml(text)


@pytest.mark.parametrize("ov,match", [
    ({"fc9": {"weight_bits": 4}}, r"layers\.fc9: no layer 'fc9'"),
    ({"relu1": {"data_bits": 4}}, r"layers\.relu1\.data_bits: a relu layer keeps"),
    ({"prob": {"weight_bits": 4}}, r"layers\.prob\.weight_bits: .* has no weights"),
    ({"conv2": {"bias_bits": 8}}, r"layers\.conv2\.bias_bits: .* has no bias"),
    ({INPUT: {"weight_bits": 8}}, r"layers\.input\.weight_bits: the network input"),
])
def test_refusals_against_graph(ov, match):
    with pytest.raises(InputError, match=match):
        resolve_bits(_graph(), "8", ov)


def test_missing_bits_file(tmp_path):
    with pytest.raises(InputError, match="bits file not found"):
        load_bits_file(tmp_path / "nope.toml")
