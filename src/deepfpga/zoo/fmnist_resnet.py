"""The residual Fashion-MNIST model's torch module (imported only when it is built: torch).

A small ResNet (He et al. 2016) of basic blocks: a 3×3 stem, then per stage one block of two
3×3 convolutions with batch norm and a residual add (`x + block(x)`), the first block of
stages 2 and 3 with stride 2 and a 1×1/2 projection shortcut, global average pooling, FC.
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        short = x if self.down is None else self.down(x)
        return self.relu2(y + short)


class FmnistResNet(nn.Module):
    """16×28×28 → 32×14×14 → 64×7×7, one block per stage, then 7×7 average pooling, FC 64→10."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        self.stem_relu = nn.ReLU()
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(cin, w, 2 if i else 1))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2d(7)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem_relu(self.stem_bn(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))
