"""The cost of host layers: DDR traffic of what crosses between accelerator and host."""

import pytest

from deepfpga import zoo
from deepfpga.compiler.compile import compile_architecture
from deepfpga.hw.config import load_config
from deepfpga.sim.host import host_costs


@pytest.fixture(scope="module")
def resnet18_costs():
    cfg = load_config("zedboard")
    return cfg, {h.layer: h for h in host_costs(compile_architecture(zoo.get("resnet18"), cfg))}


def test_host_layers_count_only_what_crosses_ddr(resnet18_costs):
    cfg, c = resnet18_costs
    # the stem's max pooling reads conv1's 64×112×112 map (8-bit) and writes 64×56×56, which
    # layer1_0_conv1 reads from DDR
    mp = c["maxpool"]
    assert (mp.values_in, mp.values_out, mp.bytes_moved) == (802_816, 200_704, 1_003_520)
    assert mp.ddr_seconds == pytest.approx(1_003_520 / (cfg.ddr_bandwidth_gbps * 1e9))
    # the add reads conv2's result from DDR; its other operand and its reader (the ReLU) stay
    # on the host; the ReLU's result goes to DDR for the next block's convolutions
    assert c["layer1_0_add"].bytes_moved == 200_704
    assert c["layer1_0_relu"].bytes_moved == 200_704
    assert c["layer4_1_relu"].bytes_moved == 0          # read by the host's average pooling
    assert c["prob"].bytes_moved == 1000                 # fc's result; the output stays on host


def test_simulate_shows_the_host_cost(capsys):
    from deepfpga.cli import main

    assert main(["simulate", "resnet18", "--target", "zedboard"]) == 0
    out = capsys.readouterr().out
    assert "layer1_0_add" in out and "the CPU's own time is not modelled" in out


def test_space_to_depth_first_layer_is_timed_and_its_host_traffic_listed(capsys):
    """AlexNet's 11×11/4 conv1 on zc706-8: on its 4×4 phases (48 channels of 57×57, 3×3 at
    stride 1) several times faster than as it is; the host's rearrangement is listed."""
    import json

    from deepfpga.cli import main

    got = {}
    for mode in ("auto", "off"):
        assert main(["simulate", "alexnet", "--target", "zc706-8", "--space-to-depth", mode,
                     "--json"]) == 0
        got[mode] = json.loads(capsys.readouterr().out)
    conv1 = {m: d["timing"]["layers"][0] for m, d in got.items()}
    assert conv1["auto"]["name"] == "conv1"
    assert conv1["auto"]["time_s"] < conv1["off"]["time_s"] / 4
    hosts = {m: {h["layer"]: h for h in d["host_layers"]} for m, d in got.items()}
    assert "conv1.s2d" not in hosts["off"]
    h = hosts["auto"]["conv1.s2d"]
    assert (h["op"], h["values_in"], h["values_out"]) == ("space-to-depth", 3 * 227 * 227,
                                                          48 * 57 * 57)
