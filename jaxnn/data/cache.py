"""A checked cache of decoded TFDS image splits, beside the prepared dataset, read without TensorFlow.

Reading a prepared split through tf.data costs an import of TensorFlow and an
eager pass over every record, each run. The first read of a split writes its
decoded arrays, as TFDS gives them (uint8 images, integer labels), next to the
TFDS files:

    <data_dir>/<name>/<version>/jaxnn_arrays/<split>.json           what the arrays are and where they came from
    <data_dir>/<name>/<version>/jaxnn_arrays/<split>.<array>.npy    one file per array

Later reads load the .npy files with numpy only. The JSON records the dataset
name, its version, the split, the tensorflow-datasets package version (which
fixes the dataset version TFDS would load), the size and mtime of every TFDS
file of the version directory, and each array's shape, dtype and sha256. A
cache whose source files or package version changed is stale; one whose
arrays fail their shape, dtype or checksum is corrupt. Either way `read`
warns and returns None, and the caller rebuilds it from TFDS. Every file is
written atomically and the JSON last, so a reader never trusts a half-written cache.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import warnings

import numpy as np

from jaxnn.io import write_atomic

FORMAT = 1
CACHE_DIR = "jaxnn_arrays"


class StaleCacheWarning(UserWarning):
    """A cached split was stale or corrupt and is not used (it is rebuilt from TFDS)."""


def default_data_dir(data_dir: str | None) -> str:
    """`data_dir`, else TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets), known without importing TFDS."""
    return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def _tfds_package_version() -> str:
    return importlib.metadata.version("tensorflow-datasets")


def _stem(split: str) -> str:
    """A file name for a TFDS split string ("train", "train[:10%]"): readable, and distinct per split."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", split).strip("_")
    return readable if readable == split else f"{readable}-{hashlib.sha256(split.encode()).hexdigest()[:8]}"


def _source_files(version_dir: str) -> dict[str, list[int]]:
    """Each TFDS file of the version directory (not the cache) as [size, mtime_ns]: any rewrite changes it."""
    files = {}
    for entry in os.scandir(version_dir):
        if entry.is_file():
            stat = entry.stat()
            files[entry.name] = [stat.st_size, stat.st_mtime_ns]
    return files


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _write_readable(path: str, data) -> None:
    """Write atomically, readable by all like the TFDS files beside it (a temporary file is private)."""
    write_atomic(path, data)
    os.chmod(path, 0o644)


def _paths(version_dir: str, split: str) -> tuple[str, str]:
    directory = os.path.join(version_dir, CACHE_DIR)
    return directory, os.path.join(directory, _stem(split) + ".json")


def _stale(meta: dict, name: str, split: str, version_dir: str) -> str | None:
    """Why the cache described by `meta` does not stand for the TFDS files now, or None if it does."""
    if meta.get("format") != FORMAT or meta.get("name") != name or meta.get("split") != split:
        return "it describes another split or cache format"
    if meta.get("tfds_version") != _tfds_package_version():
        return (f"it was written under tensorflow-datasets {meta.get('tfds_version')}, "
                f"{_tfds_package_version()} is installed")
    if meta.get("source_files") != _source_files(version_dir):
        return f"the TFDS files in {version_dir} changed since it was written"
    return None


def _load_checked(directory: str, meta: dict, mmap: bool) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The cached arrays, or (None, why) if one is missing or fails its shape, dtype or checksum."""
    arrays = {}
    for key, spec in meta["arrays"].items():
        try:
            array = np.load(os.path.join(directory, spec["file"]), mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as e:
            return None, f"{spec['file']} is unreadable ({e})"
        if list(array.shape) != spec["shape"] or array.dtype.str != spec["dtype"] or _sha256(array) != spec["sha256"]:
            return None, f"{spec['file']} does not match its recorded shape, dtype and sha256"
        arrays[key] = array
    return arrays, None


def read(name: str, split: str, data_dir: str | None = None, *, mmap: bool = False) -> dict[str, np.ndarray] | None:
    """The cached arrays of `split` of `name` (keys as written), or None when there is no valid cache.

    A stale or corrupt cache gives None with a `StaleCacheWarning` saying why.
    `mmap=True` gives read-only memory maps (checked too), a random-access
    source for `jaxnn.data.streaming.ArraySource`.
    """
    dataset_dir = os.path.join(default_data_dir(data_dir), name)
    if not os.path.isdir(dataset_dir):
        return None
    for version in sorted(os.listdir(dataset_dir)):
        version_dir = os.path.join(dataset_dir, version)
        directory, meta_path = _paths(version_dir, split)
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            warnings.warn(f"ignoring the array cache {meta_path}: unreadable ({e})", StaleCacheWarning, stacklevel=2)
            continue
        why = _stale(meta, name, split, version_dir)
        if why is None:
            arrays, why = _load_checked(directory, meta, mmap)
            if arrays is not None:
                return arrays
        warnings.warn(f"ignoring the array cache {meta_path}: {why}; rebuilding it from TFDS", StaleCacheWarning,
                      stacklevel=2)
    return None


def write(name: str, split: str, version_dir: str, arrays: dict[str, np.ndarray]) -> None:
    """Cache `arrays` (name -> array) of `split` of `name`, read from the TFDS files in `version_dir`.

    A directory that cannot be written (a shared read-only data_dir) only costs a warning.
    """
    directory, meta_path = _paths(version_dir, split)
    meta = dict(format=FORMAT, name=name, version=os.path.basename(version_dir), split=split,
                tfds_version=_tfds_package_version(), source_files=_source_files(version_dir), arrays={})
    try:
        os.makedirs(directory, exist_ok=True)
        for key, array in arrays.items():
            array, buffer, filename = np.ascontiguousarray(array), io.BytesIO(), f"{_stem(split)}.{key}.npy"
            np.save(buffer, array, allow_pickle=False)
            _write_readable(os.path.join(directory, filename), buffer.getbuffer())
            meta["arrays"][key] = dict(file=filename, shape=list(array.shape), dtype=array.dtype.str,
                                       sha256=_sha256(array))
        _write_readable(meta_path, json.dumps(meta, indent=1))
    except OSError as e:
        warnings.warn(f"could not cache {name} {split} in {directory} ({e}); it will be read through TFDS again",
                      stacklevel=2)
