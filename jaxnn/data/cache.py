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

import contextlib
import hashlib
import importlib.metadata
import io
import json
import os
import re
import time
import warnings

import numpy as np

from jaxnn.io import write_atomic

FORMAT = 1
CACHE_DIR = "jaxnn_arrays"


class StaleCacheWarning(UserWarning):
    """A cached split was stale or corrupt and is not used (it is rebuilt from TFDS)."""


def default_data_dir(data_dir: str | None) -> str:
    """`data_dir`, else TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets), known without importing TFDS;
    absolute and normalized (`~`, `./`, `//` and a trailing slash name the same directory)."""
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    return os.path.realpath(os.path.expanduser(os.fspath(chosen)))


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


def _stale(meta, name: str, split: str, version_dir: str, keys) -> str | None:
    """Why the cache described by `meta` does not stand for the TFDS files now, or None if it does."""
    if not isinstance(meta, dict) or not isinstance(meta.get("arrays"), dict):
        return "its description is not a cache's"
    if (meta.get("format") != FORMAT or meta.get("name") != name or meta.get("split") != split
            or meta.get("version") != os.path.basename(version_dir)):
        return "it describes another split, version or cache format"
    if keys is not None and sorted(meta["arrays"]) != sorted(keys):
        return f"it holds the arrays {sorted(meta['arrays'])}, not {sorted(keys)}"
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
            file = os.path.join(directory, os.path.basename(spec["file"]))
            array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
            if list(array.shape) != spec["shape"] or array.dtype.str != spec["dtype"] or _sha256(array) != spec["sha256"]:
                return None, f"{spec['file']} does not match its recorded shape, dtype and sha256"
        except Exception as e:  # noqa: BLE001 (a damaged header or description fails in many ways: all mean "rebuild")
            return None, f"array {key!r} is unreadable ({type(e).__name__}: {e})"
        arrays[key] = array
    return arrays, None


def _version_order(version: str):
    """Newest first: TFDS versions compare as numbers ("10.0.0" after "9.0.0")."""
    parts = version.split(".")
    return (1, [int(p) for p in parts]) if all(p.isdigit() for p in parts) else (0, [])


def read(name: str, split: str, data_dir: str | None = None, *, mmap: bool = False,
         keys=("images", "labels")) -> dict[str, np.ndarray] | None:
    """The cached arrays of `split` of `name` (`keys`; None: any), or None when there is no valid cache.

    The newest version directory with a cache of the split is read. A stale or corrupt cache gives None
    with a `StaleCacheWarning` saying why. `mmap=True` gives read-only memory maps (checked too), a
    random-access source for `jaxnn.data.streaming.ArraySource`.
    """
    dataset_dir = os.path.join(default_data_dir(data_dir), name)
    if not os.path.isdir(dataset_dir):
        return None
    for version in sorted(os.listdir(dataset_dir), key=_version_order, reverse=True):
        version_dir = os.path.join(dataset_dir, version)
        directory, meta_path = _paths(version_dir, split)
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, ValueError) as e:
            warnings.warn(f"ignoring the array cache {meta_path}: unreadable ({e}); rebuilding it from TFDS",
                          StaleCacheWarning, stacklevel=2)
            return None
        why = _stale(meta, name, split, version_dir, keys)
        if why is None:
            arrays, why = _load_checked(directory, meta, mmap)
            if arrays is not None:
                return arrays
        warnings.warn(f"ignoring the array cache {meta_path}: {why}; rebuilding it from TFDS", StaleCacheWarning,
                      stacklevel=2)
        return None  # the newest cache of the split is what TFDS would rebuild; older ones are not looked at
    return None


# A temporary file this old in the cache directory was left by a writer that was killed.
ABANDONED_S = 3600


def write(name: str, split: str, version_dir: str, arrays: dict[str, np.ndarray]) -> None:
    """Cache `arrays` (name -> array) of `split` of `name`, read from the TFDS files in `version_dir`.

    A directory that cannot be written (a shared read-only data_dir, a full disk) only costs a warning,
    and the files this call wrote are removed again.
    """
    directory, meta_path = _paths(version_dir, split)
    meta = dict(format=FORMAT, name=name, version=os.path.basename(version_dir), split=split,
                tfds_version=_tfds_package_version(), source_files=_source_files(version_dir), arrays={})
    written = []
    try:
        os.makedirs(directory, exist_ok=True)
        _remove_abandoned(directory)
        for key, array in arrays.items():
            array, buffer, filename = np.ascontiguousarray(array), io.BytesIO(), f"{_stem(split)}.{key}.npy"
            np.save(buffer, array, allow_pickle=False)
            written.append(os.path.join(directory, filename))
            _write_readable(written[-1], buffer.getbuffer())
            meta["arrays"][key] = dict(file=filename, shape=list(array.shape), dtype=array.dtype.str,
                                       sha256=_sha256(array))
        _write_readable(meta_path, json.dumps(meta, indent=1))
    except OSError as e:
        for path in written:
            with contextlib.suppress(OSError):
                os.unlink(path)
        warnings.warn(f"could not cache {name} {split} in {directory} ({e}); it will be read through TFDS again",
                      stacklevel=2)


def _remove_abandoned(directory: str) -> None:
    """Remove the temporary files of writers killed mid-write (older than `ABANDONED_S`)."""
    now = time.time()
    for entry in os.scandir(directory):
        if entry.name.startswith(".tmp-") and entry.is_file():
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > ABANDONED_S:
                    os.unlink(entry.path)
