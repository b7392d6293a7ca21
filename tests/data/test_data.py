"""jaxnn.data: offline Fashion-MNIST through TFDS equals the raw IDX files; the array cache; loading, mocking, errors."""
import gzip
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxnn import data
from jaxnn.data import cache, specs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


def read_idx(path):
    """Independent IDX reader: big-endian header (magic 0x0000 08 ndim, then ndim uint32 sizes), then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    assert raw[:3] == b"\x00\x00\x08", "IDX payload is not uint8"
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def idx_split(split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(specs.DEBIAN_FASHION_MNIST_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(specs.DEBIAN_FASHION_MNIST_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    return images, labels


def example_rows(images_u8, labels):
    """Each (image, label) pair as one sortable byte row, to compare datasets as multisets."""
    rows = np.concatenate([images_u8.reshape(len(images_u8), -1), labels.astype(np.uint8)[:, None]], axis=1)
    return np.sort(np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel())


@pytest.fixture
def offline(monkeypatch):
    """Make every HTTP(S) request fail at once, as without network (requests honours these proxies)."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A data_dir with fashion_mnist prepared from Debian's files (about 10 s), and its loaded splits."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(specs.FASHION_MNIST_DIR_ENV, raising=False)  # the reference below reads Debian's directory
        if data.loading.fashion_mnist_source_dir() is None:
            pytest.skip(f"Debian's dataset-fashion-mnist is not installed in {specs.DEBIAN_FASHION_MNIST_DIR}")
        data_dir = str(tmp_path_factory.mktemp("tfds"))
        started = time.perf_counter()
        arrays = {split: data.load_arrays("fashion_mnist", split, data_dir=data_dir) for split in SPLIT_SIZES}
    print(f"prepare + load both splits: {time.perf_counter() - started:.1f} s")
    return data_dir, arrays


def test_prepared_dataset_is_tfds_fashion_mnist(prepared):
    data_dir, _ = prepared
    builder = tfds.builder("fashion_mnist", data_dir=data_dir)
    assert builder.is_prepared()
    assert builder.data_dir == os.path.join(data_dir, "fashion_mnist", str(builder.version))
    assert {name: split.num_examples for name, split in builder.info.splits.items()} == SPLIT_SIZES
    assert tuple(builder.info.features["label"].names) == data.dataset_info("fashion_mnist").class_names


@pytest.mark.parametrize("split", list(SPLIT_SIZES))
def test_prepared_examples_equal_idx_files(prepared, split):
    _, arrays = prepared
    images, labels = arrays[split]
    ref_images, ref_labels = idx_split(split)
    assert images.shape == (SPLIT_SIZES[split], 28, 28, 1) and len(ref_images) == SPLIT_SIZES[split]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.bincount(ref_labels, minlength=10))
    # TFDS shuffles examples when writing, so compare (image, label) pairs as multisets.
    images_u8 = np.rint(images * 255).astype(np.uint8)
    np.testing.assert_array_equal(example_rows(images_u8, labels), example_rows(ref_images, ref_labels))


def test_scaling_shapes_dtypes(prepared):
    _, arrays = prepared
    images, labels = arrays["train"]
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (60_000, *data.dataset_info("fashion_mnist").input_shape) and labels.shape == (60_000,)
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.min() == 0 and labels.max() == 9
    assert images.flags.c_contiguous and labels.flags.c_contiguous


def test_split_slicing_and_no_sources_needed_once_prepared(prepared, offline, monkeypatch, tmp_path):
    data_dir, arrays = prepared
    monkeypatch.setenv(specs.FASHION_MNIST_DIR_ENV, str(tmp_path))  # no IDX files, no network
    images, labels = data.load_arrays("fashion_mnist", "train[:1000]", data_dir=data_dir)
    np.testing.assert_array_equal(images, arrays["train"][0][:1000])
    np.testing.assert_array_equal(labels, arrays["train"][1][:1000])


def test_first_read_fills_a_cache_equal_to_tfds(prepared):
    data_dir, arrays = prepared
    for split in SPLIT_SIZES:
        cached = cache.read("fashion_mnist", split, data_dir)
        reference = tfds.as_numpy(tfds.load("fashion_mnist", split=split, data_dir=data_dir, batch_size=-1,
                                            as_supervised=True))
        np.testing.assert_array_equal(cached["images"], reference[0])
        np.testing.assert_array_equal(cached["labels"], reference[1])
        images, labels = data.load_arrays("fashion_mnist", split, data_dir=data_dir)  # now from the cache
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])
        assert images.dtype == np.float32 and labels.dtype == np.int32


def test_cached_split_loads_without_tensorflow(prepared):
    data_dir, arrays = prepared
    code = ("import sys; from jaxnn import data; x, y = data.load_arrays('fashion_mnist', 'test', data_dir=sys.argv[1]); "
            "assert not {'tensorflow', 'tensorflow_datasets'} & set(sys.modules), 'TensorFlow imported'; "
            "print(float(x.sum()), int(y.sum()))")
    out = subprocess.run([sys.executable, "-c", code, data_dir], cwd=REPO_ROOT, check=True, capture_output=True,
                         text=True).stdout.split()
    assert float(out[0]) == float(arrays["test"][0].sum()) and int(out[1]) == int(arrays["test"][1].sum())


def test_corrupt_cache_is_rebuilt_from_tfds(prepared):
    data_dir, arrays = prepared
    [version] = os.listdir(os.path.join(data_dir, "fashion_mnist"))
    path = os.path.join(data_dir, "fashion_mnist", version, cache.CACHE_DIR, "test.images.npy")
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.warns(cache.StaleCacheWarning, match="does not match its recorded shape, dtype and sha256"):
        images, labels = data.load_arrays("fashion_mnist", "test", data_dir=data_dir)
    np.testing.assert_array_equal(images, arrays["test"][0])
    np.testing.assert_array_equal(labels, arrays["test"][1])
    np.testing.assert_array_equal(cache.read("fashion_mnist", "test", data_dir)["images"],  # rebuilt, valid again
                                  np.rint(arrays["test"][0] * 255).astype(np.uint8))


def test_failed_preparation_leaves_nothing_loadable(offline, monkeypatch, tmp_path):
    if not os.path.isdir(specs.DEBIAN_FASHION_MNIST_DIR):
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed in {specs.DEBIAN_FASHION_MNIST_DIR}")
    source_dir, data_dir = tmp_path / "idx", tmp_path / "tfds"
    source_dir.mkdir()
    for key, filename in specs.FASHION_MNIST_IDX_FILES.items():
        if key != "train_data":
            shutil.copy(os.path.join(specs.DEBIAN_FASHION_MNIST_DIR, filename), source_dir)
    with gzip.open(source_dir / specs.FASHION_MNIST_IDX_FILES["train_data"], "wb") as f:
        f.write(b"\x00\x00\x08\x03" + b"\x00" * 1000)  # header claims images, payload is cut short
    monkeypatch.setenv(specs.FASHION_MNIST_DIR_ENV, str(source_dir))
    with pytest.raises(ValueError, match="reshape"):
        data.load_arrays("fashion_mnist", "test", data_dir=str(data_dir))
    assert not tfds.builder("fashion_mnist", data_dir=str(data_dir)).is_prepared()
    assert os.listdir(data_dir / "fashion_mnist") == []  # TFDS removed its incomplete.* directory


def test_a_preparation_that_loses_the_race_to_another_process_loads_the_winners(prepared, monkeypatch):
    data_dir, arrays = prepared
    real_load, calls = data.loading._load, []

    def not_yet_then_real(*args):
        calls.append(args)
        if len(calls) == 1:  # as it looked before the other process renamed its prepared copy into place
            raise AssertionError("could not find data")
        return real_load(*args)

    def lost_the_rename(tfds, name, data_dir):
        raise OSError(f"Cannot rename {data_dir}/{name}/incomplete.X. Destination 3.0.1 already exists.")

    monkeypatch.setattr(data.loading, "_load", not_yet_then_real)
    monkeypatch.setattr(data.loading, "_prepare", lost_the_rename)
    images, labels = data.load_arrays("fashion_mnist", "test[:100]", data_dir=data_dir)
    np.testing.assert_array_equal(images, arrays["test"][0][:100])
    np.testing.assert_array_equal(labels, arrays["test"][1][:100])


def test_mock_data_through_load_arrays(offline, tmp_path):
    with tfds.testing.mock_data(num_examples=7):
        images, labels = data.load_arrays("mnist", "train", data_dir=str(tmp_path))
    assert images.shape == (7, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (7,) and labels.dtype == np.int32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert 0 <= labels.min() and labels.max() < 10
    assert cache.read("mnist", "train", str(tmp_path)) is None  # mock data is never cached


@pytest.mark.parametrize("call", [lambda: data.load_arrays("cifar11", "train"), lambda: data.dataset_info("cifar11")])
def test_unknown_name_lists_allowed(call):
    with pytest.raises(ValueError, match=r"must be one of fashion_mnist, mnist, imdb_reviews, ag_news_subset, got 'cifar11'"):
        call()


@pytest.mark.parametrize("name, remedy", [
    ("mnist", "run once with network access"),
    ("fashion_mnist", "apt-get install dataset-fashion-mnist"),
])
def test_unavailable_fails_fast_with_one_line(offline, monkeypatch, tmp_path, name, remedy):
    monkeypatch.setenv(specs.FASHION_MNIST_DIR_ENV, str(tmp_path / "no-idx-files"))
    data_dir = str(tmp_path / "tfds")
    started = time.perf_counter()
    with pytest.raises(data.DatasetUnavailableError) as excinfo:
        data.load_arrays(name, "train", data_dir=data_dir)
    assert time.perf_counter() - started < 10
    message = str(excinfo.value)
    assert "\n" not in message
    assert f"{name} is not prepared in {data_dir}" in message and remedy in message and "data_dir=" in message


@pytest.mark.parametrize("name", specs.IMAGE_DATASETS)
def test_dataset_info_matches_tfds_builder(name, tmp_path):
    spec = data.dataset_info(name)
    features = tfds.builder(name, data_dir=str(tmp_path)).info.features
    assert spec.name == name and spec.splits == ("train", "test")
    assert spec.input_shape == features["image"].shape
    assert spec.num_classes == features["label"].num_classes
    assert spec.class_names == tuple(features["label"].names)


def test_import_does_not_import_tensorflow():
    code = "import jaxnn.data, sys; assert not {'tensorflow', 'tensorflow_datasets'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
