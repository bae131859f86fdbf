"""Datasets: Fashion-MNIST, image folders and npz arrays, as float32 (N, C, H, W) in [0, 1]."""

from deepfpga.data.dataset import Dataset
from deepfpga.data.idx import parse_idx, read_idx
from deepfpga.data.loaders import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    load_dataset,
    load_fashion_mnist,
    load_image_folder,
    load_npz,
)

__all__ = [
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT", "Dataset", "load_dataset",
    "load_fashion_mnist", "load_image_folder", "load_npz", "parse_idx", "read_idx",
]
