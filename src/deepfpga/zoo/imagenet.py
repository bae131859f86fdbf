"""ImageNet architectures of the paper's era (and ResNet-18), as IR graphs without weights.

Used for complexity analysis, compilation and timing, which need shapes only. All take a
(3, 224, 224) input except `alexnet`, which takes Caffe's (3, 227, 227): with 224 the CaffeNet
layer shapes (55, 27, 13, 6) do not come out (see docs/analysis.md). All end with a softmax, which
runs on the host.
"""

from __future__ import annotations

from collections.abc import Iterator

from deepfpga.ir.graph import INPUT, Graph, chain
from deepfpga.ir.layers import (
    LRN,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
)

IMAGENET_SHAPE = (3, 224, 224)
CAFFE_SHAPE = (3, 227, 227)

# Configurations A, B, D, E of Simonyan & Zisserman: channels per 3x3 conv, "M" = 2x2 max-pool.
_VGG_CFG: dict[str, list[list[int]]] = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def _conv(name: str, cin: int, cout: int, k: int, s: int = 1, p: int = 0) -> Iterator[Layer]:
    yield Conv2d(name, (), in_channels=cin, out_channels=cout, kernel=(k, k), stride=(s, s),
                 padding=(p, p))
    yield ReLU("relu" + name.removeprefix("conv"), ())


def _classifier(in_features: int, fc6: list[Layer] | None = None) -> Iterator[Layer]:
    yield Flatten("flatten", ())
    yield from fc6 or [Linear("fc6", (), in_features=in_features, out_features=4096)]
    yield ReLU("relu6", ())
    yield Dropout("drop6", ())
    yield Linear("fc7", (), in_features=4096, out_features=4096)
    yield ReLU("relu7", ())
    yield Dropout("drop7", ())
    yield Linear("fc8", (), in_features=4096, out_features=1000)
    yield Softmax("prob", ())


def vgg(name: str, fc6: list[Layer] | None = None) -> Graph:
    layers: list[Layer] = []
    cin = 3
    for b, block in enumerate(_VGG_CFG[name.removesuffix("-svd")], start=1):
        for j, cout in enumerate(block, start=1):
            layers += _conv(f"conv{b}_{j}", cin, cout, 3, 1, 1)
            cin = cout
        layers.append(MaxPool2d(f"pool{b}", (), kernel=(2, 2), stride=(2, 2)))
    layers += _classifier(512 * 7 * 7, fc6)
    return chain(name, IMAGENET_SHAPE, layers)


def vgg16_svd(rank: int = 500) -> Graph:
    """VGG16 with FC6 factored at `rank` (paper §4): fc6a 25088→rank (no bias), fc6b rank→4096."""
    fc6 = [
        Linear("fc6a", (), in_features=512 * 7 * 7, out_features=rank, bias=False),
        Linear("fc6b", (), in_features=rank, out_features=4096),
    ]
    return vgg("vgg16-svd", fc6)


def _lrn(name: str) -> Layer:
    # AlexNet's / CaffeNet's LRN: 5 channels, alpha 1e-4 (divided by size, as in Caffe), beta 0.75.
    return LRN(name, (), size=5, alpha=1e-4, beta=0.75, k=1.0)


def alexnet() -> Graph:
    """CaffeNet (BVLC reference): pool before LRN. Caffe's two-group convolutions (conv2, conv4,
    conv5) are modelled dense (groups=1, each filter sees all input channels): the IR has no
    grouped convolution. This doubles the MACs and weights of those three layers."""
    layers: list[Layer] = [
        *_conv("conv1", 3, 96, 11, 4, 0),
        MaxPool2d("pool1", (), kernel=(3, 3), stride=(2, 2)),
        _lrn("norm1"),
        *_conv("conv2", 96, 256, 5, 1, 2),
        MaxPool2d("pool2", (), kernel=(3, 3), stride=(2, 2)),
        _lrn("norm2"),
        *_conv("conv3", 256, 384, 3, 1, 1),
        *_conv("conv4", 384, 384, 3, 1, 1),
        *_conv("conv5", 384, 256, 3, 1, 1),
        MaxPool2d("pool5", (), kernel=(3, 3), stride=(2, 2)),
        *_classifier(256 * 6 * 6),
    ]
    return chain("alexnet", CAFFE_SHAPE, layers)


def zf() -> Graph:
    """Zeiler & Fergus (2013), with the layer shapes of their Fig. 3 for a 224x224 input:
    110x110x96, pool 55, 26x26x256, pool 13, 13x13x384/384/256, pool 6. Padding and Caffe-style
    ceil-mode pooling are chosen to give exactly those shapes."""
    layers: list[Layer] = [
        *_conv("conv1", 3, 96, 7, 2, 1),
        MaxPool2d("pool1", (), kernel=(3, 3), stride=(2, 2), ceil_mode=True),
        _lrn("norm1"),
        *_conv("conv2", 96, 256, 5, 2, 0),
        MaxPool2d("pool2", (), kernel=(3, 3), stride=(2, 2), ceil_mode=True),
        _lrn("norm2"),
        *_conv("conv3", 256, 384, 3, 1, 1),
        *_conv("conv4", 384, 384, 3, 1, 1),
        *_conv("conv5", 384, 256, 3, 1, 1),
        MaxPool2d("pool5", (), kernel=(3, 3), stride=(2, 2)),
        *_classifier(256 * 6 * 6),
    ]
    return chain("zf", IMAGENET_SHAPE, layers)


class _Dag:
    """Layers appended in order, each reading named earlier values (a graph that branches)."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []

    def put(self, layer: Layer) -> str:
        self.layers.append(layer)
        return layer.name

    def conv_bn(self, name: str, x: str, cin: int, cout: int, k: int, s: int, p: int,
                relu: bool) -> str:
        """torchvision's conv (no bias) + batch norm (+ ReLU)."""
        x = self.put(Conv2d(name, (x,), in_channels=cin, out_channels=cout, kernel=(k, k),
                            stride=(s, s), padding=(p, p), bias=False))
        x = self.put(BatchNorm2d(f"{name}_bn", (x,), num_features=cout))
        return self.put(ReLU(f"{name}_relu", (x,))) if relu else x


def resnet18() -> Graph:
    """ResNet-18 (He et al. 2016) with torchvision's layer shapes: a 7×7/2 stem, 3×3/2 max
    pooling with padding 1, four stages of two basic blocks (3×3 convs, batch norm, residual
    add, ReLU; the first block of stages 2–4 has stride 2 and a 1×1/2 projection shortcut),
    global average pooling, FC 512→1000. 1.82 G multiply-accumulates, 11.69 M learned
    parameters."""
    d = _Dag()
    x = d.conv_bn("conv1", INPUT, 3, 64, 7, 2, 3, relu=True)
    x = d.put(MaxPool2d("maxpool", (x,), kernel=(3, 3), stride=(2, 2), padding=(1, 1)))
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            s = 2 if stage > 1 and block == 0 else 1
            b = f"layer{stage}_{block}"
            y = d.conv_bn(f"{b}_conv1", x, cin, cout, 3, s, 1, relu=True)
            y = d.conv_bn(f"{b}_conv2", y, cout, cout, 3, 1, 1, relu=False)
            short = (d.conv_bn(f"{b}_down", x, cin, cout, 1, s, 0, relu=False)
                     if s != 1 or cin != cout else x)
            x = d.put(ReLU(f"{b}_relu", (d.put(Add(f"{b}_add", (y, short))),)))
            cin = cout
    x = d.put(AvgPool2d("avgpool", (x,), kernel=(7, 7), stride=(7, 7)))
    x = d.put(Flatten("flatten", (x,)))
    x = d.put(Linear("fc", (x,), in_features=512, out_features=1000))
    x = d.put(Softmax("prob", (x,)))
    return Graph("resnet18", IMAGENET_SHAPE, tuple(d.layers), (x,))


BUILDERS = {
    "alexnet": alexnet,
    "zf": zf,
    "vgg11": lambda: vgg("vgg11"),
    "vgg13": lambda: vgg("vgg13"),
    "vgg16": lambda: vgg("vgg16"),
    "vgg19": lambda: vgg("vgg19"),
    "vgg16-svd": vgg16_svd,
    "resnet18": resnet18,
}
