"""Datasets for jaxnn: TFDS splits as numpy arrays, with an offline source for Fashion-MNIST.

Importing this package does not import TensorFlow; `load_arrays` does, on first use.
"""
from jaxnn.data.loading import load_arrays
from jaxnn.data.specs import SUPPORTED, DatasetSpec, DatasetUnavailableError, dataset_info

__all__ = ["SUPPORTED", "DatasetSpec", "DatasetUnavailableError", "dataset_info", "load_arrays"]
