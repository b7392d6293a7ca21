"""Static facts about the supported datasets, known without TensorFlow or any file."""
from __future__ import annotations

import dataclasses

SUPPORTED = ("fashion_mnist", "mnist")

# Debian's `dataset-fashion-mnist` ships the upstream IDX files under these names.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_DIR_ENV = "JAXNN_FASHION_MNIST_DIR"
FASHION_MNIST_IDX_FILES = {
    "train_data": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_data": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


class DatasetUnavailableError(RuntimeError):
    """The dataset is neither prepared nor obtainable here; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a model needs to know about a dataset before any data is read."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    splits: tuple[str, ...]


_SPECS = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        splits=("train", "test"),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        class_names=tuple(str(digit) for digit in range(10)),
        splits=("train", "test"),
    ),
}


def check_name(name: str) -> None:
    """Raise ValueError naming `name` and the allowed names unless it is supported."""
    if name not in SUPPORTED:
        raise ValueError(f"dataset name must be one of {', '.join(SUPPORTED)}, got {name!r}")


def dataset_info(name: str) -> DatasetSpec:
    """Shapes, classes and splits of dataset `name`, e.g. `dataset_info("mnist").input_shape == (28, 28, 1)`."""
    check_name(name)
    return _SPECS[name]
