"""Static facts about the supported datasets, known without TensorFlow or any file."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxnn import validation

SUPPORTED = ("fashion_mnist", "mnist", "imdb_reviews", "ag_news_subset")
IMAGE_DATASETS = ("fashion_mnist", "mnist")
# The config's `dataset` fields that say where the data is; any others are encoding options (`dataset_options`).
LOCATION_FIELDS = ("name", "data_dir", "train_split", "test_split")
# How the training split is fed: whole on the device, or streamed (`jaxnn.training.feeding`) when
# `in_memory` is False or its decoded arrays exceed `max_in_memory_gb`. Image datasets only stream.
FEEDING_DEFAULTS = dict(in_memory=True, max_in_memory_gb=2.0)
TEXT_ENCODINGS = ("multi_hot", "sequence")
LABEL_ENCODINGS = ("integer", "one_hot")

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
    input_dtype: str = "float32"
    target_shape: tuple[int, ...] = ()  # () for integer labels, (num_classes,) for one-hot
    target_dtype: str = "int32"


@dataclasses.dataclass(frozen=True)
class TextEncoding:
    """How a text dataset becomes arrays (see `jaxnn.data.text`); each field is a config `dataset` field.

    `encoding`: "multi_hot" (one 0/1 float per vocabulary id, for Dense layers) or
    "sequence" (ids padded/truncated to `maxlen`, for an Embedding layer).
    `num_words`: vocabulary size counting the reserved ids 0 (padding) and 1 (out of vocabulary).
    `label_encoding`: "integer" class ids (sparse categorical or binary cross-entropy)
    or "one_hot" float vectors (categorical cross-entropy).
    """

    encoding: str = "multi_hot"
    num_words: int = 10_000
    maxlen: int | None = None
    label_encoding: str = "integer"

    def __post_init__(self):
        if self.encoding not in TEXT_ENCODINGS:
            raise ValueError(f"dataset.encoding must be one of {', '.join(TEXT_ENCODINGS)}, got {self.encoding!r}")
        validation.integer("dataset.num_words", self.num_words, 3, "an integer > 2 (ids 0 and 1 are reserved)")
        if self.encoding == "sequence":
            validation.integer("dataset.maxlen", self.maxlen, 1, "a positive integer for encoding 'sequence'")
        if self.encoding == "multi_hot" and self.maxlen is not None:
            raise ValueError(f"dataset.maxlen applies to encoding 'sequence' only, "
                             f"got {self.maxlen!r} with 'multi_hot'")
        if self.label_encoding not in LABEL_ENCODINGS:
            raise ValueError(f"dataset.label_encoding must be one of {', '.join(LABEL_ENCODINGS)}, "
                             f"got {self.label_encoding!r}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.num_words,) if self.encoding == "multi_hot" else (self.maxlen,)


@dataclasses.dataclass(frozen=True)
class TextSource:
    """A TFDS text-classification dataset: the text features joined into one document per example."""

    text_features: tuple[str, ...]
    class_names: tuple[str, ...]
    splits: tuple[str, ...] = ("train", "test")


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


# imdb_reviews: 25,000 + 25,000 movie reviews, neg/pos (seed 004). TFDS has no Reuters newswires;
# ag_news_subset is its news-topic classification set: 120,000 + 7,600 articles in 4 topics.
TEXT_SOURCES = {
    "imdb_reviews": TextSource(text_features=("text",), class_names=("neg", "pos")),
    "ag_news_subset": TextSource(text_features=("title", "description"),
                                 class_names=("World", "Sports", "Business", "Sci/Tech")),
}


def check_name(name: str) -> None:
    """Raise ValueError naming `name` and the allowed names unless it is supported."""
    if name not in SUPPORTED:
        raise ValueError(f"dataset name must be one of {', '.join(SUPPORTED)}, got {name!r}")


def text_encoding(**options) -> TextEncoding:
    """The `TextEncoding` of `options`, an unknown one rejected with the allowed ones listed."""
    allowed = [f.name for f in dataclasses.fields(TextEncoding)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown field dataset.{unknown[0]} for a text dataset; allowed: {', '.join(allowed)}")
    return TextEncoding(**options)


def dataset_options(dataset: dict) -> dict:
    """A config's `dataset` fields other than `LOCATION_FIELDS` and `FEEDING_DEFAULTS`: the options
    `dataset_info` and loading take."""
    return {k: v for k, v in dataset.items() if k not in LOCATION_FIELDS and k not in FEEDING_DEFAULTS}


def streams(dataset: dict, spec: DatasetSpec, num_examples: int) -> bool:
    """Whether a config's training split of `num_examples` is streamed rather than held in memory (its
    `in_memory` and `max_in_memory_gb` fields, checked here: one line for a bad one)."""
    options = {**FEEDING_DEFAULTS, **{k: dataset[k] for k in FEEDING_DEFAULTS if k in dataset}}
    in_memory = options["in_memory"]
    validation.require("dataset.in_memory", in_memory, isinstance(in_memory, bool), "True or False")
    limit = validation.positive_number("dataset.max_in_memory_gb", options["max_in_memory_gb"])
    decoded = num_examples * (math.prod(spec.input_shape) * np.dtype(spec.input_dtype).itemsize
                              + math.prod(spec.target_shape) * np.dtype(spec.target_dtype).itemsize)
    if in_memory and decoded <= limit * 2**30:
        return False
    if spec.name not in IMAGE_DATASETS:
        why = "dataset.in_memory is False" if not in_memory else \
            f"its {decoded / 2**30:.1f} GiB exceed dataset.max_in_memory_gb {limit}"
        raise ValueError(f"{spec.name} would be streamed ({why}), but only image datasets stream "
                         f"({', '.join(IMAGE_DATASETS)}): text is vectorized in memory")
    return True


def dataset_info(name: str, **options) -> DatasetSpec:
    """Shapes, classes and splits of dataset `name`, known before any data is read.

    Text datasets take `TextEncoding`'s fields, which decide the shapes:

        dataset_info("mnist").input_shape == (28, 28, 1)
        dataset_info("imdb_reviews", num_words=10_000).input_shape == (10_000,)           # multi-hot, float32
        dataset_info("imdb_reviews", encoding="sequence", maxlen=200).input_dtype == "int32"
    """
    check_name(name)
    if name not in TEXT_SOURCES:
        if options:
            raise ValueError(f"unknown field dataset.{sorted(options)[0]}: {name} takes no encoding options")
        return _SPECS[name]
    source, encoding = TEXT_SOURCES[name], text_encoding(**options)
    num_classes = len(source.class_names)
    one_hot = encoding.label_encoding == "one_hot"
    return DatasetSpec(
        name=name, input_shape=encoding.input_shape, num_classes=num_classes, class_names=source.class_names,
        splits=source.splits, input_dtype="float32" if encoding.encoding == "multi_hot" else "int32",
        target_shape=(num_classes,) if one_hot else (), target_dtype="float32" if one_hot else "int32",
    )
