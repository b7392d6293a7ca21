"""TFDS's own `fashion_mnist`, prepared from local IDX files (Debian's dataset-fashion-mnist).

The builder subclasses TFDS's `FashionMNIST`, so name, version, features and
example generation are TFDS's; only where the four IDX files come from changes:
TFDS's manual-download directory instead of the network. The result is written
where `tfds.load("fashion_mnist", data_dir=...)` looks for it.

This module imports TensorFlow Datasets at import time: import it only inside
functions (see `jaxnn.data.loading`).
"""
from __future__ import annotations

import tempfile

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist

from jaxnn.data.specs import FASHION_MNIST_IDX_FILES

_SPLIT_SIZES = {"train": 60_000, "test": 10_000}


class IdxFashionMNIST(mnist.FashionMNIST, skip_registration=True):
    """`fashion_mnist` whose `_split_generators` reads the IDX gz files from `manual_dir`."""

    # Same registry name as the parent (unregistered, so no clash): the data lands in data_dir/fashion_mnist/<version>.
    name = "fashion_mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) and pass "
        "manual_dir=/usr/share/datasets/fashion-mnist, or any directory holding "
        + ", ".join(FASHION_MNIST_IDX_FILES.values())
    )

    def _split_generators(self, dl_manager):
        # The parent's `_generate_examples` reads raw IDX bytes, so gunzip first (into download_dir).
        paths = dl_manager.extract(
            {key: dl_manager.manual_dir / filename for key, filename in FASHION_MNIST_IDX_FILES.items()}
        )
        return [
            tfds.core.SplitGenerator(
                name=split,
                gen_kwargs=dict(
                    num_examples=num_examples,
                    data_path=paths[f"{split}_data"],
                    label_path=paths[f"{split}_labels"],
                ),
            )
            for split, num_examples in _SPLIT_SIZES.items()
        ]


def prepare(source_dir: str, data_dir: str | None) -> None:
    """Write the prepared `fashion_mnist` into `data_dir` (TFDS's default if None) from the IDX files in `source_dir`.

    TFDS writes into an `incomplete.*` directory and renames it only on success,
    so a failure leaves no dataset that later loads as complete.
    """
    builder = IdxFashionMNIST(data_dir=data_dir)
    with tempfile.TemporaryDirectory(prefix="jaxnn-fashion-mnist-") as download_dir:
        builder.download_and_prepare(
            download_dir=download_dir,
            download_config=tfds.download.DownloadConfig(manual_dir=source_dir),
        )
