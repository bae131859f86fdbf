"""A small Fashion-MNIST CNN trained quantization-aware with Brevitas, exported as QONNX.

Power-of-two (fixed-point) quantizers throughout, so deepfpga imports the file exactly:
8-bit signed input and activations (Int8ActPerTensorFixedPoint), weights at --bits
(Int8WeightPerTensorFixedPoint, or its 4/6-bit variants), 8-bit biases with their own
power-of-two scale (Int8BiasPerTensorFixedPointInternalScaling: fits an 8-bit-bias target).

    python scripts/train_brevitas_fmnist.py --out brevitas.onnx [--train 4000 --epochs 2]

Needs the optional extra `pip install -e '.[brevitas]'`. Seeded; single-threaded for
repeatability. The test tests/interchange/test_brevitas.py imports `build`, `train`, `export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def build(weight_bits: int = 8, seed: int = 0) -> Any:
    """The untrained network, its initial weights drawn from `seed`."""
    import torch
    from brevitas import nn as qnn
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8BiasPerTensorFixedPointInternalScaling,
        Int8WeightPerTensorFixedPoint,
    )

    wq = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=weight_bits,
              bias_quant=Int8BiasPerTensorFixedPointInternalScaling)
    act = dict(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = qnn.QuantIdentity(**act)
            self.conv1 = qnn.QuantConv2d(1, 8, 3, padding=1, **wq)
            self.relu1 = qnn.QuantReLU(**act)
            self.pool1 = torch.nn.MaxPool2d(2)
            self.conv2 = qnn.QuantConv2d(8, 16, 3, padding=1, **wq)
            self.relu2 = qnn.QuantReLU(**act)
            self.pool2 = torch.nn.MaxPool2d(2)
            self.fc = qnn.QuantLinear(16 * 7 * 7, 10, **wq)
            self.out = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x: Any) -> Any:
            x = self.pool1(self.relu1(self.conv1(self.inp(x))))
            x = self.pool2(self.relu2(self.conv2(x)))
            return self.out(self.fc(torch.flatten(x, 1)))

    torch.manual_seed(seed)
    return Net()


def train(net: Any, x: np.ndarray, y: np.ndarray, epochs: int = 2, seed: int = 0,
          batch: int = 64) -> Any:
    """Quantization-aware training (Adam, cross entropy), seeded and single-threaded."""
    import torch

    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
        rng = np.random.default_rng(seed)
        net.train()
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(len(xt)))
            for i in range(0, len(xt), batch):
                idx = order[i:i + batch]
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
        net.eval()
    finally:
        torch.set_num_threads(threads)
    return net


def export(net: Any, path: str | Path) -> Path:
    """The trained network as QONNX (Brevitas' TorchScript exporter; torch 2.13 needs it)."""
    import torch
    from brevitas.export import export_qonnx

    export_qonnx(net, torch.zeros(1, 1, 28, 28), str(path), dynamo=False)
    return Path(path)


def predict(net: Any, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Brevitas' own scores (float32 fake-quantized inference)."""
    import torch

    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(x[i:i + batch].astype(np.float32)))
                               .detach().numpy() for i in range(0, len(x), batch)])


def main() -> None:
    from deepfpga.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="QONNX file to write")
    ap.add_argument("--train", type=int, default=4000, help="training images (default 4000)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--bits", type=int, default=8, choices=(4, 6, 8), help="weight bits")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    ds = load_dataset("fashion-mnist", "train", a.train)
    net = train(build(a.bits, a.seed), ds.x, ds.y, a.epochs, a.seed)
    print(f"wrote {export(net, a.out)}")


if __name__ == "__main__":
    main()
