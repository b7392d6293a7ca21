"""Datasets for jaxnn: TFDS splits as numpy arrays, with an offline source for Fashion-MNIST.

Images come scaled to [0, 1]; text datasets are vectorized as the config's
`dataset` fields say (`TextEncoding`: multi-hot or padded sequences, integer or
one-hot labels), see `jaxnn.data.text`. Splits too large for memory stream through
`BatchStream` (`jaxnn.data.streaming`). Tiny logic-gate tables live in `jaxnn.data.toy`.

Importing this package does not import TensorFlow; `load_arrays` does only where it must read
through TFDS (preparing, text, an image split not in the array cache yet, see `jaxnn.data.cache`).
"""
from jaxnn.data.loading import image_source, load_arrays, load_splits, read_texts
from jaxnn.data.specs import (
    SUPPORTED,
    DatasetSpec,
    DatasetUnavailableError,
    TextEncoding,
    dataset_info,
    dataset_options,
    streams,
)
from jaxnn.data.streaming import ArraySource, BatchStream, RecordSource

__all__ = ["SUPPORTED", "ArraySource", "BatchStream", "DatasetSpec", "DatasetUnavailableError", "TextEncoding", "dataset_info",
           "RecordSource", "dataset_options", "image_source", "load_arrays", "load_splits", "read_texts", "streams"]
