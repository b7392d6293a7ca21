"""jaxnn.data.cache: decoded splits cached beside the TFDS files, checked, and rebuilt when stale or corrupt."""
import json
import os

import numpy as np
import pytest

from jaxnn.data import cache


@pytest.fixture
def version_dir(tmp_path):
    """A stand-in for a prepared TFDS version directory: <data_dir>/fashion_mnist/3.0.1 with two files."""
    directory = tmp_path / "fashion_mnist" / "3.0.1"
    directory.mkdir(parents=True)
    (directory / "dataset_info.json").write_text("{}")
    (directory / "fashion_mnist-test.tfrecord-00000-of-00001").write_bytes(b"records")
    return directory


def arrays():
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8), "labels": np.arange(5)}


def read(tmp_path, split="test"):
    return cache.read("fashion_mnist", split, str(tmp_path))


def test_round_trip_without_warning(tmp_path, version_dir, recwarn):
    cache.write("fashion_mnist", "test", str(version_dir), arrays())
    got = read(tmp_path)
    assert set(got) == {"images", "labels"}
    for key, want in arrays().items():
        np.testing.assert_array_equal(got[key], want)
        assert got[key].dtype == want.dtype
    assert not recwarn.list
    assert read(tmp_path, "train") is None  # another split is not cached


def test_split_strings_get_distinct_files(tmp_path, version_dir):
    for split, n in (("test", 5), ("test[:2]", 2), ("test[:2%]", 1)):
        cache.write("fashion_mnist", split, str(version_dir), {k: v[:n] for k, v in arrays().items()})
    assert [len(read(tmp_path, split)["labels"]) for split in ("test", "test[:2]", "test[:2%]")] == [5, 2, 1]


def test_no_dataset_directory_is_no_cache(tmp_path):
    assert read(tmp_path) is None


def test_default_data_dir_is_tfds_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert cache.default_data_dir(None) == str(tmp_path) and cache.default_data_dir("/x") == "/x"
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert cache.default_data_dir(None) == os.path.expanduser("~/tensorflow_datasets")


def flip_last_byte(path):
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, why", [
    (lambda d: flip_last_byte(d / cache.CACHE_DIR / "test.images.npy"), "does not match its recorded"),
    (lambda d: (d / cache.CACHE_DIR / "test.labels.npy").write_bytes(b"\x93NUMPY"), "unreadable"),
    (lambda d: (d / cache.CACHE_DIR / "test.labels.npy").unlink(), "unreadable"),
    (lambda d: (d / "fashion_mnist-test.tfrecord-00000-of-00001").write_bytes(b"other records"), "changed"),
    (lambda d: (d / "fashion_mnist-test.tfrecord-00000-of-00001").unlink(), "changed"),
    (lambda d: (d / cache.CACHE_DIR / "test.json").write_text("{not json"), "unreadable"),
])
def test_corrupt_or_stale_cache_is_ignored_with_a_warning(tmp_path, version_dir, damage, why):
    cache.write("fashion_mnist", "test", str(version_dir), arrays())
    damage(version_dir)
    with pytest.warns(cache.StaleCacheWarning, match=why) as record:
        assert read(tmp_path) is None
    assert len(record) == 1 and "\n" not in str(record[0].message)


def test_cache_of_another_tfds_release_is_stale(tmp_path, version_dir, monkeypatch):
    cache.write("fashion_mnist", "test", str(version_dir), arrays())
    monkeypatch.setattr(cache, "_tfds_package_version", lambda: "99.0.0")
    with pytest.warns(cache.StaleCacheWarning, match="tensorflow-datasets .* 99.0.0 is installed"):
        assert read(tmp_path) is None


def test_meta_records_what_the_arrays_are(tmp_path, version_dir):
    cache.write("fashion_mnist", "test", str(version_dir), arrays())
    meta = json.loads((version_dir / cache.CACHE_DIR / "test.json").read_text())
    assert (meta["name"], meta["version"], meta["split"]) == ("fashion_mnist", "3.0.1", "test")
    assert meta["arrays"]["images"]["shape"] == [5, 28, 28, 1] and meta["arrays"]["images"]["dtype"] == "|u1"
    assert set(meta["source_files"]) == {"dataset_info.json", "fashion_mnist-test.tfrecord-00000-of-00001"}
    assert len(meta["arrays"]["labels"]["sha256"]) == 64


def test_unwritable_directory_only_warns(tmp_path, version_dir):
    (version_dir / cache.CACHE_DIR).write_text("a file where the cache directory should be")
    with pytest.warns(UserWarning, match="could not cache fashion_mnist test"):
        cache.write("fashion_mnist", "test", str(version_dir), arrays())


def test_memory_mapped_read_is_checked_too(tmp_path, version_dir):
    cache.write("fashion_mnist", "test", str(version_dir), arrays())
    mapped = cache.read("fashion_mnist", "test", str(tmp_path), mmap=True)
    assert isinstance(mapped["images"], np.memmap) and not mapped["images"].flags.writeable
    np.testing.assert_array_equal(mapped["images"], arrays()["images"])
    del mapped
    flip_last_byte(version_dir / cache.CACHE_DIR / "test.images.npy")
    with pytest.warns(cache.StaleCacheWarning, match="sha256"):
        assert cache.read("fashion_mnist", "test", str(tmp_path), mmap=True) is None
