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
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path) + "/")
    assert cache.default_data_dir(None) == str(tmp_path) and cache.default_data_dir("/x") == "/x"
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert cache.default_data_dir(None) == os.path.expanduser("~/tensorflow_datasets")
    # Spellings of one directory are one cache: a trailing slash, ./, //, ~.
    assert {cache.default_data_dir(d) for d in ("/x/data/", "/x/./data", "/x//data")} == {"/x/data"}
    assert cache.default_data_dir("~/d") == os.path.expanduser("~/d")


def test_the_newest_version_is_read_and_an_older_stale_one_is_not_looked_at(tmp_path, version_dir, recwarn):
    older = tmp_path / "fashion_mnist" / "3.0.0"
    older.mkdir()
    cache.write("fashion_mnist", "test", str(older), {k: v[:2] for k, v in arrays().items()})
    (older / "dataset_info.json").write_text("changed: stale")
    cache.write("fashion_mnist", "test", str(version_dir), arrays())
    assert len(read(tmp_path)["labels"]) == 5 and not recwarn.list


def test_a_failed_write_leaves_no_arrays_behind(tmp_path, version_dir, monkeypatch):
    real = cache._write_readable

    def full_disk_at_the_description(path, data):
        if path.endswith(".json"):
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(cache, "_write_readable", full_disk_at_the_description)
    with pytest.warns(UserWarning, match="No space left on device"):
        cache.write("fashion_mnist", "test", str(version_dir), arrays())
    assert os.listdir(version_dir / cache.CACHE_DIR) == []


def test_temporary_files_of_a_killed_writer_are_removed(tmp_path, version_dir):
    directory = version_dir / cache.CACHE_DIR
    directory.mkdir()
    (directory / ".tmp-train.images.npyabc").write_bytes(b"half")
    (directory / ".tmp-test.images.npyxyz").write_bytes(b"a writer at work now")
    old = os.path.getmtime(directory / ".tmp-train.images.npyabc") - cache.ABANDONED_S - 1
    os.utime(directory / ".tmp-train.images.npyabc", (old, old))
    cache.write("fashion_mnist", "test", str(version_dir), arrays())
    assert sorted(os.listdir(directory)) == [".tmp-test.images.npyxyz", "test.images.npy", "test.json",
                                             "test.labels.npy"]


def write_into_header(path):
    """A brace in the .npy header's padding: the header no longer parses (a tokenizer error, not ValueError)."""
    raw = bytearray(path.read_bytes())
    raw[100] = ord("{")
    path.write_bytes(bytes(raw))


def edit_meta(version_dir, edit):
    meta = version_dir / cache.CACHE_DIR / "test.json"
    meta.write_text(edit(meta.read_text()))


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
    (lambda d: write_into_header(d / cache.CACHE_DIR / "test.labels.npy"), "unreadable"),
    (lambda d: edit_meta(d, lambda text: text.replace('"sha256"', '"sha257"', 1)), "unreadable"),
    (lambda d: edit_meta(d, lambda text: text.replace('"images"', '"imagez"', 1)), "holds the arrays"),
    (lambda d: edit_meta(d, lambda text: "null"), "not a cache's"),
    (lambda d: edit_meta(d, lambda text: text.replace('"3.0.1"', '"3.0.0"', 1)), "another split, version"),
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
