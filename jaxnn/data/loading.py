"""Whole TFDS splits as numpy arrays (images scaled, text vectorized), with an offline path for Fashion-MNIST.

Resolution for a dataset that is not prepared in `data_dir` yet:
Fashion-MNIST is prepared from Debian's IDX files when they are present
(`$JAXNN_FASHION_MNIST_DIR` overrides their directory); otherwise TFDS downloads
as usual. Offline, TFDS would retry each download for minutes (urllib3 backoff
over 10 retries), so the network is probed once first and an unreachable host
fails at once with `DatasetUnavailableError`.

Image splits are read through TFDS once and then from a checked array cache
beside the prepared files (`jaxnn.data.cache`), so a prepared, cached split
loads without TensorFlow. TensorFlow is imported only to prepare a dataset, to
fill the cache and to read text, so `import jaxnn` stays fast.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from jaxnn.data import cache, text
from jaxnn.data.streaming import ArraySource
from jaxnn.data.specs import (
    DEBIAN_FASHION_MNIST_DIR,
    FASHION_MNIST_DIR_ENV,
    FASHION_MNIST_IDX_FILES,
    IMAGE_DATASETS,
    TEXT_SOURCES,
    DatasetUnavailableError,
    dataset_info,
    text_encoding,
)

_PROBE_TIMEOUT_S = 5.0
# Read in chunks rather than TFDS's `batch_size=-1`: when the split size is unknown (as under
# `tfds.testing.mock_data`), TFDS pads to a batch of sys.maxsize and TensorFlow aborts the process.
_CHUNK = 10_000


@functools.cache
def _tfds():
    """Import TensorFlow (kept off the GPUs, which belong to JAX) and TensorFlow Datasets."""
    # TensorFlow only reads and decodes data here, so it needs no oneDNN kernels; without them and
    # with warnings only, its import logs nothing (it printed its oneDNN notice twice, each after
    # absl's "before absl::InitializeLog()" warning). A user's own settings win.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    import tensorflow_datasets as tfds

    return tfds


def fashion_mnist_source_dir() -> str | None:
    """Directory holding the four Fashion-MNIST IDX gz files, or None if any is missing."""
    source_dir = os.environ.get(FASHION_MNIST_DIR_ENV) or DEBIAN_FASHION_MNIST_DIR
    files = (os.path.join(source_dir, filename) for filename in FASHION_MNIST_IDX_FILES.values())
    return source_dir if all(os.path.isfile(path) for path in files) else None


def _reachable(url: str) -> bool:
    """Whether `url`'s server answers at all (any HTTP status), trying once, honouring proxy settings."""
    import requests

    try:
        requests.head(url, timeout=_PROBE_TIMEOUT_S)
    except requests.RequestException:
        return False
    return True


def _unavailable(name: str, data_dir) -> DatasetUnavailableError:
    if name == "fashion_mnist":
        remedy = (f"install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
                  f"or set {FASHION_MNIST_DIR_ENV} to a directory holding its IDX files, "
                  "or pass data_dir= a directory holding a prepared copy")
    else:
        remedy = "run once with network access, or pass data_dir= a directory holding a prepared copy"
    return DatasetUnavailableError(
        f"{name} is not prepared in {data_dir} and could not be downloaded (no network?): {remedy}"
    )


def _prepare(tfds, name: str, data_dir: str | None) -> None:
    """Make `name` loadable from `data_dir`: from local IDX files if possible, else by TFDS's download."""
    source_dir = fashion_mnist_source_dir() if name == "fashion_mnist" else None
    if source_dir is not None:
        from jaxnn.data import fashion_mnist_idx

        fashion_mnist_idx.prepare(source_dir, data_dir)
        return
    builder = tfds.builder(name, data_dir=data_dir)
    if not _reachable(min(builder.url_infos)):
        raise _unavailable(name, builder.data_dir_root)
    builder.download_and_prepare()


def _load(tfds, name: str, split: str, data_dir: str | None, as_supervised: bool):
    return tfds.load(name, split=split, data_dir=data_dir, download=False, batch_size=_CHUNK,
                     as_supervised=as_supervised)


def _batches(name: str, split: str, data_dir: str | None, *, as_supervised: bool) -> list:
    """TFDS's batches of `split` as numpy, after preparing `name` in `data_dir` if it is not there yet."""
    tfds = _tfds()
    try:
        dataset = _load(tfds, name, split, data_dir, as_supervised)
    except AssertionError:  # TFDS's "could not find data in <data_dir>": not prepared there yet.
        try:
            _prepare(tfds, name, data_dir)
        except Exception:  # noqa: BLE001 (another process may have prepared it first: its rename won)
            if not tfds.builder(name, data_dir=data_dir).is_prepared():
                raise
        dataset = _load(tfds, name, split, data_dir, as_supervised)
    return list(tfds.as_numpy(dataset))


def _cache_split(name: str, split: str, data_dir: str | None, arrays: dict[str, np.ndarray]) -> None:
    """Cache a split just read through TFDS, if it is a real prepared one where `cache.read` will look."""
    builder = _tfds().builder(name, data_dir=data_dir)
    if (builder.is_prepared() and builder.info.splits[split].num_examples == len(arrays["labels"])  # not mock data
            and os.path.realpath(os.path.dirname(os.path.dirname(builder.data_dir))) == cache.default_data_dir(data_dir)):
        cache.write(name, split, builder.data_dir, arrays)


def _decoded_images(name: str, split: str, data_dir: str | None) -> dict[str, np.ndarray]:
    """Images and labels of an image split as TFDS decodes them, from the array cache if it is valid."""
    arrays = cache.read(name, split, data_dir)
    if arrays is None:
        chunks = _batches(name, split, data_dir, as_supervised=True)
        arrays = {"images": np.concatenate([chunk_images for chunk_images, _ in chunks]),
                  "labels": np.concatenate([chunk_labels for _, chunk_labels in chunks])}
        _cache_split(name, split, data_dir, arrays)
    return arrays


def _scaled(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Decoded images and labels as a model takes them: float32 in [0, 1] and int32."""
    return {"inputs": np.divide(arrays["images"], 255, dtype=np.float32), "targets": arrays["labels"].astype(np.int32)}


def _image_arrays(name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    arrays = _scaled(_decoded_images(name, split, data_dir))
    return arrays["inputs"], arrays["targets"]


def image_source(name: str, split: str, *, data_dir: str | None = None) -> ArraySource:
    """Split `split` of image dataset `name` as a streaming source (`Trainer.fit(state, source)`): the array
    cache memory-mapped (filled through TFDS first if need be), each batch scaled as `load_arrays` scales it."""
    if name not in IMAGE_DATASETS:
        raise ValueError(f"only image datasets ({', '.join(IMAGE_DATASETS)}) stream, got {name!r}")
    arrays = cache.read(name, split, data_dir, mmap=True)
    if arrays is None:
        decoded = _decoded_images(name, split, data_dir)
        # Memory-mapped from the cache just written; if it could not be (a read-only data_dir), in memory.
        arrays = cache.read(name, split, data_dir, mmap=True) or decoded
    return ArraySource(arrays, transform=_scaled)


def read_texts(name: str, split: str, *, data_dir: str | None = None) -> tuple[list[str], np.ndarray]:
    """Split `split` of text dataset `name` as (documents, int32 labels); a document joins the text features."""
    features = TEXT_SOURCES[name].text_features
    texts, labels = [], []
    for batch in _batches(name, split, data_dir, as_supervised=False):
        columns = (batch[feature] for feature in features)
        texts += [" ".join(value.decode("utf-8") for value in row) for row in zip(*columns)]
        labels.append(batch["label"])
    return texts, np.concatenate(labels).astype(np.int32)


def load_splits(name: str, splits, *, data_dir: str | None = None, **options) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each of `splits` of dataset `name` as (inputs, labels) numpy arrays, as `dataset_info(name, **options)` says.

    Images are float32 in [0, 1] shaped (N, H, W, C). Text is encoded with a
    vocabulary built from the first split only (pass the training split first),
    so test words unseen in training become the OOV id. Labels are int32 shaped
    (N,), or float32 one-hot (N, classes) with `label_encoding="one_hot"`.

        (x_train, y_train), (x_test, y_test) = load_splits("imdb_reviews", ["train", "test"], num_words=10_000)
    """
    info = dataset_info(name, **options)
    splits = list(splits)
    if not splits:
        raise ValueError(f"splits must name at least one split of {name}, got none")
    if name not in TEXT_SOURCES:
        return [_image_arrays(name, split, data_dir) for split in splits]
    encoding = text_encoding(**options)
    raw = [read_texts(name, split, data_dir=data_dir) for split in splits]
    vocab = text.build_vocabulary(raw[0][0], encoding.num_words)
    encode_labels = (lambda y: np.eye(info.num_classes, dtype=np.float32)[y]) if info.target_shape else (lambda y: y)
    return [(text.vectorize(texts, vocab, encoding), encode_labels(labels)) for texts, labels in raw]


def load_arrays(name: str, split: str, *, data_dir: str | None = None, **options) -> tuple[np.ndarray, np.ndarray]:
    """Split `split` of dataset `name` as (inputs, labels) numpy arrays (see `load_splits`).

    `split` takes TFDS syntax ("train", "test[:1000]"). `data_dir` defaults to
    TFDS's ($TFDS_DATA_DIR or ~/tensorflow_datasets). A text split alone is
    encoded with its own vocabulary: use `load_splits` to share the training one. Example:

        images, labels = load_arrays("fashion_mnist", "train")  # (60000, 28, 28, 1), (60000,)
    """
    return load_splits(name, (split,), data_dir=data_dir, **options)[0]
