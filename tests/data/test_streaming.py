"""jaxnn.data.streaming: the in-memory path's batches, each process reading only its rows, exact mid-epoch resume."""
import jax
import numpy as np
import pytest

from config_files import load_config, set_field
from jaxnn import Dense, Flatten, Sequential, Trainer
from jaxnn.config import build, fingerprint
from jaxnn.data import dataset_info, image_source, load_arrays, streams
from jaxnn.data.streaming import ArraySource, BatchStream, RecordSource, Rows
from jaxnn.training.state import epoch_permutation

N, BATCH = 103, 8  # 12 whole batches, 7 examples dropped per epoch
KEY = jax.random.key(3)


def arrays(n=N):
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8), "labels": np.arange(n, dtype=np.int32)}


class Counting(ArraySource):
    """An ArraySource that records every example id it reads."""

    def __init__(self, data):
        super().__init__(data)
        self.seen = []

    def read(self, indices):
        self.seen += list(indices)
        return super().read(indices)


def order(epoch):
    return epoch_permutation(KEY, epoch, N)


def stream(source, **kwargs):
    return BatchStream(source, batch_size=BATCH, order=order, **kwargs)


def test_batches_are_the_in_memory_paths():
    data = arrays()
    s = stream(ArraySource(data))
    assert s.steps_per_epoch == N // BATCH
    for epoch in (0, 1):
        perm = np.asarray(epoch_permutation(KEY, epoch, N))  # what Trainer.fit's step cuts on the device
        got = list(s.epoch(epoch))
        assert [step for step, _ in got] == list(range(N // BATCH))
        for step, batch in got:
            idx = perm[step * BATCH:(step + 1) * BATCH]
            for k in data:
                np.testing.assert_array_equal(batch[k], data[k][idx])
    assert not np.array_equal(s.permutation(0), s.permutation(1))


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_each_process_reads_only_its_rows_of_each_global_batch(processes):
    data = arrays()
    sources = [Counting(data) for _ in range(processes)]
    streams = [stream(src, process_index=p, process_count=processes) for p, src in enumerate(sources)]
    per_process = [list(s.epoch(1)) for s in streams]
    whole = list(stream(ArraySource(data)).epoch(1))
    for step, batch in whole:  # the processes' blocks, in process order, make up the global batch
        for k in data:
            np.testing.assert_array_equal(np.concatenate([pp[step][1][k] for pp in per_process]), batch[k])
    used = (N // BATCH) * BATCH
    assert [len(src.seen) for src in sources] == [used // processes] * processes
    assert sorted(i for src in sources for i in src.seen) == sorted(np.asarray(order(1))[:used].tolist())


def test_mid_epoch_resume_also_onto_another_process_count():
    data = arrays()
    whole = dict(stream(ArraySource(data)).epoch(2))
    resumed = list(stream(ArraySource(data)).epoch(2, start=5))
    assert [step for step, _ in resumed] == list(range(5, N // BATCH))
    for step, batch in resumed:
        np.testing.assert_array_equal(batch["images"], whole[step]["images"])
    halves = [dict(stream(ArraySource(data), process_index=p, process_count=2).epoch(2, start=7)) for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([h[7]["labels"] for h in halves]), whole[7]["labels"])
    assert list(stream(ArraySource(data)).epoch(2, start=N // BATCH)) == []


def test_record_source_reads_like_array_source():
    data = arrays()

    class Records:  # the random-access protocol of tfds.data_source
        def __len__(self):
            return N

        def __getitems__(self, ids):
            return [{"image": data["images"][i], "label": data["labels"][i]} for i in ids]

    records = RecordSource(Records(), lambda r: {"images": r["image"], "labels": np.int32(r["label"])})
    for (_, a), (_, b) in zip(stream(records).epoch(0), stream(ArraySource(data)).epoch(0)):
        for k in data:
            np.testing.assert_array_equal(a[k], b[k])
            assert a[k].dtype == b[k].dtype


def test_memory_mapped_source(tmp_path):
    data = arrays()
    for k, a in data.items():
        np.save(tmp_path / f"{k}.npy", a)
    mapped = ArraySource({k: np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in data})
    np.testing.assert_array_equal(mapped.read(np.array([5, 1, 9]))["images"], data["images"][[5, 1, 9]])


def test_training_on_streamed_batches_equals_fit():
    data = arrays()
    x, y = data["images"].astype(np.float32) / 255, data["labels"] % 10
    trainer = Trainer(Sequential([Flatten(), Dense(10, activation="softmax")]), optimizer="sgd")
    state = trainer.init(jax.random.key(0), x.shape[1:])
    fitted, _ = trainer.fit(trainer.init(jax.random.key(0), x.shape[1:]), x, y, epochs=2, batch_size=BATCH, verbose=0)
    source = ArraySource({"inputs": x, "targets": y})
    s = BatchStream(source, batch_size=BATCH, order=lambda e: epoch_permutation(state.key, e, N), place=jax.device_put)
    for epoch in range(2):
        for _, batch in s.epoch(epoch):
            state, _ = trainer.train_step(state, batch)
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(fitted.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=6, process_count=4), "batch_size 6 must be a multiple of process_count 4"),
    (dict(batch_size=8, process_index=2, process_count=2), r"process_index must be in \[0, 2\), got 2"),
    (dict(batch_size=200), "batch_size 200 is larger than the 103 examples of the source"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_arguments_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchStream(ArraySource(arrays()), **kwargs)


def test_sizes_must_agree():
    with pytest.raises(ValueError, match=r"share their first \(example\) dimension, got sizes \[3, 4\]"):
        ArraySource({"a": np.zeros(3), "b": np.zeros(4)})


def test_rows_read_a_part_of_a_source():
    data = arrays()
    part = Rows(ArraySource(data), 100, 103)
    assert len(part) == 3
    np.testing.assert_array_equal(part.read(np.array([2, 0]))["labels"], [102, 100])
    with pytest.raises(ValueError, match=r"rows \[100, 104\) must lie within the 103 examples of the source"):
        Rows(ArraySource(data), 100, 104)


FASHION = dataset_info("fashion_mnist")  # 60,000 x 784 float32 inputs + int32 labels: 0.18 GiB decoded


@pytest.mark.parametrize("fields, streamed", [
    ({}, False), (dict(in_memory=False), True), (dict(max_in_memory_gb=0.17), True),
    (dict(max_in_memory_gb=0.18), False),
])
def test_a_split_streams_when_asked_or_above_the_size_limit(fields, streamed):
    assert streams(dict(name="fashion_mnist", **fields), FASHION, 60_000) is streamed


@pytest.mark.parametrize("fields, message", [
    (dict(in_memory="no"), "dataset.in_memory must be True or False, got 'no'"),
    (dict(max_in_memory_gb=0), "dataset.max_in_memory_gb must be a positive number, got 0"),
])
def test_bad_feeding_fields_are_one_line(fields, message):
    with pytest.raises(ValueError, match=message):
        streams(dict(name="fashion_mnist", **fields), FASHION, 60_000)


def test_text_does_not_stream_and_says_so_before_any_work():
    config = set_field(load_config("imdb_multihot"), "dataset.in_memory", False)
    with pytest.raises(ValueError, match=r"imdb_reviews would be streamed \(dataset.in_memory is False\), but only "
                                         r"image datasets stream"):
        build(config)


def test_feeding_fields_change_no_fingerprint():
    config = load_config("fashion_mnist_mlp")
    assert fingerprint(set_field(load_config("fashion_mnist_mlp"), "dataset.in_memory", False)) == fingerprint(config)


def test_image_source_reads_what_load_arrays_loads():
    x, y = load_arrays("fashion_mnist", "test[:100]")
    got = image_source("fashion_mnist", "test[:100]").read(np.arange(99, -1, -1))
    np.testing.assert_array_equal(got["inputs"], x[::-1])
    np.testing.assert_array_equal(got["targets"], y[::-1])
    assert got["inputs"].dtype == x.dtype and got["targets"].dtype == y.dtype
