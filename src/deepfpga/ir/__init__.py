"""Graph IR: typed layers in a DAG, with shape inference and optional weights."""

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
    Shape,
    Softmax,
)

__all__ = [
    "INPUT", "LRN", "Add", "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Graph",
    "Layer", "Linear", "MaxPool2d", "ReLU", "Shape", "Softmax", "chain",
]
