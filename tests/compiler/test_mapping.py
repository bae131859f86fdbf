"""Mapping: fusion, folding, host partition, and the refusals of the compiler front end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepfpga.compiler import compile_architecture, compile_model
from deepfpga.compiler.artifact import AccelStep
from deepfpga.compiler.compile import architecture_model
from deepfpga.compiler.mapping import HostStep, Stage, map_network
from deepfpga.errors import InputError
from deepfpga.hw.config import load_config
from deepfpga.ir import (
    INPUT,
    LRN,
    Add,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Graph,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
    chain,
)
from deepfpga.quant.random_model import random_qmodel
from deepfpga.zoo import get

TINY = load_config("tiny")


def _map(g: Graph, cfg=TINY):
    return map_network(architecture_model(g, cfg), cfg)


def test_vgg16_svd_fusion_and_partition() -> None:
    m = _map(get("vgg16-svd"), load_config("zc706-paper"))
    names = [s.name for s in m.stages]
    assert names[:2] == ["conv1_1", "conv1_2"] and names[-4:] == ["fc6a", "fc6b", "fc7", "fc8"]
    s = m.stages[1]
    assert s.layers == ("conv1_2", "relu1_2", "pool1") and s.relu and s.pool
    assert s.out_shape == (64, 112, 112) and s.conv_out == (224, 224)
    fc6a = m.stages[13]
    assert fc6a.layers == ("fc6a",) and not fc6a.relu and not fc6a.has_bias
    assert fc6a.in_shape == (25088,) and fc6a.input == "pool5"     # flatten is an alias
    assert m.host_layers == ("prob",)
    assert set(m.folded) == {"flatten", "drop6", "drop7"}
    assert [type(x) for x in m.schedule[-2:]] == [Stage, HostStep]


def test_alexnet_host_layers_between_segments() -> None:
    c = compile_architecture(get("alexnet"), load_config("zc706-paper"), space_to_depth="off")
    m = c.manifest
    assert m.partition.host == ("pool1", "norm1", "pool2", "norm2", "pool5", "prob")
    kinds = ["accel" if isinstance(s, AccelStep) else "host" for s in m.schedule]
    assert kinds == ["accel", "host", "host", "accel", "host", "host", "accel", "host", "accel",
                     "host"]
    # every segment ends with END, and conv2 reads norm1's output, written by the host
    ends = [s.instructions[1] - 1 for s in m.segments]
    assert all(c.program.instructions[k].OPCODE.name == "END" for k in ends)
    conv2 = next(d for d in m.layers if d.name == "conv2")
    assert conv2.input == "norm1"
    region = m.tensors["norm1"].region
    assert next(r for r in m.regions if r.name == region).kind == "host"
    # with space-to-depth (the default) the host writes norm1 rearranged for conv2 instead
    auto = compile_architecture(get("alexnet"), load_config("zc706-paper")).manifest
    conv2 = next(d for d in auto.layers if d.name == "conv2")
    tr = next(t for t in auto.host_transforms if t.tensor == conv2.input)
    assert tr.reads == "norm1" and not auto.tensors["norm1"].on_ddr


def test_relu_of_relu_folds_and_relu_after_host_stays_on_host() -> None:
    g = chain("r", (2, 8, 8), [
        Conv2d("c", (), in_channels=2, out_channels=3, kernel=(3, 3)), ReLU("r1", ()),
        ReLU("r2", ()), MaxPool2d("p", ()), ReLU("r3", ()),
        MaxPool2d("hp", (), kernel=(3, 3), stride=(1, 1)), ReLU("r4", ()), Flatten("f", ()),
        Dropout("d", ()), Linear("l", (), in_features=3, out_features=2)])
    m = _map(g)
    assert m.stages[0].layers == ("c", "r1", "p")
    assert set(m.folded) == {"r2", "r3", "f", "d"}
    assert m.host_layers == ("hp", "r4")
    assert m.stages[1].input == "r4"


def test_shared_conv_output_is_not_fused() -> None:
    c = Conv2d("c", ("input",), in_channels=1, out_channels=2, kernel=(3, 3))
    r = ReLU("r", ("c",))
    g = Graph("shared", (1, 6, 6), (c, r), ("c", "r"))
    m = _map(g)
    assert m.stages[0].layers == ("c",) and not m.stages[0].relu
    assert m.host_layers == ("r",)
    assert m.tensors["c"].is_output


def test_odd_ceil_mode_pool_goes_to_host() -> None:
    g = chain("o", (1, 7, 7), [Conv2d("c", (), in_channels=1, out_channels=2, kernel=(3, 3),
                                      padding=(1, 1)),
                               MaxPool2d("p", (), ceil_mode=True)])
    m = _map(g)
    assert not m.stages[0].pool and m.host_layers == ("p",)
    g2 = chain("e", (1, 8, 8), [Conv2d("c", (), in_channels=1, out_channels=2, kernel=(3, 3),
                                       padding=(1, 1)),
                                MaxPool2d("p", (), ceil_mode=True)])
    assert _map(g2).stages[0].pool


def test_large_kernel_decomposition() -> None:
    g = chain("k", (3, 30, 30), [Conv2d("c", (), in_channels=3, out_channels=4,
                                        kernel=(11, 5), stride=(4, 4))])
    st = _map(g).stages[0]
    assert st.sub_kernels == (4, 2) and st.nsub == 8 and st.stride == 4


@pytest.mark.parametrize(("layer", "message"), [
    (Conv2d("c", (), in_channels=1, out_channels=1, kernel=(3, 3), stride=(1, 2)),
     "not square"),
    (Conv2d("c", (), in_channels=1, out_channels=1, kernel=(3, 3), stride=(5, 5)),
     r"layer 'c': stride 5 not supported by tiny \(max_stride 4\)"),
    (Conv2d("c", (), in_channels=1, out_channels=1, kernel=(7, 7), padding=(4, 4)),
     r"layer 'c': padding \(4, 4\) exceeds the padder of tiny \(max_pad 3\)"),
    (Conv2d("c", (), in_channels=1, out_channels=1, kernel=(3, 3), padding=(3, 3)),
     "not smaller than the kernel"),
    # koff is 4 bits: offsets 0, 3, …, 15 → 6 sub-kernels per axis, kernels up to 18
    (Conv2d("c", (), in_channels=1, out_channels=1, kernel=(19, 19)), "larger than 18"),
])
def test_unsupported_convolutions_refused(layer: Conv2d, message: str) -> None:
    g = chain("u", (1, 20, 20), [layer])
    with pytest.raises(InputError, match=message):
        _map(g)


def test_batchnorm_refused_by_the_mapper_and_folded_for_architectures() -> None:
    g = chain("b", (1, 6, 6), [Conv2d("c", (), in_channels=1, out_channels=2, kernel=(3, 3)),
                               BatchNorm2d("bn", (), num_features=2)])
    model = architecture_model(g, TINY)
    assert [layer.kind for layer in model.graph.layers] == ["conv"]
    with pytest.raises(InputError, match="fold_batchnorm"):
        map_network(dataclasses.replace(model, graph=g), TINY)


def test_widths_beyond_the_config_refused() -> None:
    g = chain("w", (1, 6, 6), [Conv2d("c", (), in_channels=1, out_channels=2, kernel=(3, 3))])
    q = random_qmodel(g, np.random.default_rng(0), bw_d=16, bw_w=16)
    with pytest.raises(InputError, match=r"layer 'c': input is 16-bit, wider than the"
                                         r" accelerator's 8 bits \(zedboard\)"):
        compile_model(q, load_config("zedboard"))


def test_accumulator_bound_refused() -> None:
    cfg = TINY.replace(acc_bits=32)
    g = chain("a", (64, 4, 4), [Conv2d("c", (), in_channels=64, out_channels=2,
                                       kernel=(3, 3))])
    q = random_qmodel(g, np.random.default_rng(0), bw_d=16, bw_w=16, weight_dist="extreme")
    with pytest.raises(InputError, match=r"layer 'c': accumulator may reach \d+ .*32-bit"):
        compile_model(q, cfg)


def test_bias_precision_refused() -> None:
    g = chain("b", (1, 6, 6), [Conv2d("c", (), in_channels=1, out_channels=2, kernel=(3, 3))])
    q = random_qmodel(g, np.random.default_rng(0), bw_d=16, bw_w=16)
    f = q.formats["c"]
    bad = dataclasses.replace(f, output=dataclasses.replace(f.output, fl=f.fl_acc + 200))
    q2 = dataclasses.replace(q, formats={"c": bad})
    with pytest.raises(InputError, match="data shift -200 outside -128..127"):
        compile_model(q2, TINY)


def test_host_only_network_compiles_to_end_only() -> None:
    g = chain("h", (4,), [Softmax("s", ())])
    c = compile_architecture(g, TINY)
    assert [i.OPCODE.name for i in c.program.instructions] == ["END"]
    assert c.manifest.partition.host == ("s",)


def test_lrn_between_convs_is_host() -> None:
    g = chain("l", (2, 8, 8), [Conv2d("c1", (), in_channels=2, out_channels=3, kernel=(3, 3)),
                               LRN("n", (), size=3),
                               Conv2d("c2", (), in_channels=3, out_channels=2, kernel=(3, 3))])
    m = _map(g)
    assert m.host_layers == ("n",) and m.stages[1].input == "n"
    assert m.tensors["n"].on_ddr and m.tensors[INPUT].on_ddr


def test_fusion_does_not_cross_a_branch() -> None:
    """c1's value is read by the ReLU and by the add: fusing the ReLU into c1 would change what
    the add sees, so the ReLU stays a layer of its own; the pool after the add is fused into
    nothing (the add runs on the host) and c2's ReLU, its sole reader, is fused."""
    g = Graph("branch", (2, 8, 8), (
        Conv2d("c1", (INPUT,), 2, 4, (3, 3), (1, 1), (1, 1)),
        ReLU("r1", ("c1",)),
        Add("sum", ("c1", "r1")),
        Conv2d("c2", ("sum",), 4, 4, (3, 3), (1, 1), (1, 1)),
        ReLU("r2", ("c2",)),
        MaxPool2d("p2", ("r2",), (2, 2), (2, 2)),
    ), ("p2",))
    m = _map(g)
    stages = {s.name: s for s in m.stages}
    assert not stages["c1"].relu and stages["c2"].relu and stages["c2"].pool
    assert [h.layer for h in m.schedule if isinstance(h, HostStep)] == ["r1", "sum"]
    # c1's output lives on DDR until its last reader, the add
    t = m.tensors["c1"]
    assert t.on_ddr and max(t.readers) == m.schedule.index(
        next(h for h in m.schedule if isinstance(h, HostStep) and h.layer == "sum"))
