"""Global batches read from a random-access source, each process reading only its rows, prefetched in the background.

For splits that should not live whole on the device (or in memory). The order
of an epoch is `order(epoch)`, a permutation of the example ids (pass the
Trainer's `lambda e: epoch_permutation(state.key, e, n)` for exactly the order of
the in-memory path), global batch `step` is its slice
`[step * batch_size, (step + 1) * batch_size)` (the last partial batch is
dropped, as in fit), and process `p` of `P` reads the contiguous block
`[p * batch_size // P, (p + 1) * batch_size // P)` of it, which is what a
batch sharded over the data axis puts on that process's devices. The position
is the step, so a resumed run (even on another process count) reads exactly
the batches it would have read.

    source = ArraySource(cache.read("fashion_mnist", "train", mmap=True))  # or RecordSource(tfds.data_source(...))
    stream = BatchStream(source, batch_size=128, order=lambda e: epoch_permutation(state.key, e, len(source)))
    for step, batch in stream.epoch(epoch, start=position):          # host arrays of this process's rows
        ...
"""
from __future__ import annotations

import collections
import concurrent.futures
import itertools
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from jaxnn import validation

PREFETCH = 2


class ArraySource:
    """Rows of a dict of arrays with a shared first dimension: in-memory arrays or `np.load(..., mmap_mode="r")`.

    `transform(batch)` maps each batch read (a dict of arrays) to what the consumer wants, e.g. uint8 images
    to float32 in [0, 1] as {"inputs", "targets"} for `Trainer.fit`.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], transform: Callable[[dict], dict] = lambda batch: batch):
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"arrays must share their first (example) dimension, got sizes {sorted(sizes)}")
        self.arrays, self._len, self.transform = dict(arrays), sizes.pop(), transform

    def __len__(self) -> int:
        return self._len

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The rows `indices`, in that order; read in ascending order (a memory map reads each page once)."""
        ascending = np.argsort(indices, kind="stable")
        back = np.empty_like(ascending)
        back[ascending] = np.arange(len(indices))
        sorted_ids = np.asarray(indices)[ascending]
        return self.transform({k: np.asarray(a[sorted_ids])[back] for k, a in self.arrays.items()})


class RecordSource:
    """Rows of a source of records (dicts of arrays) with `__len__` and `__getitems__`, such as `tfds.data_source`."""

    def __init__(self, records, transform: Callable[[dict], dict] = lambda record: record):
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        rows = [self.transform(record) for record in self.records.__getitems__([int(i) for i in indices])]
        return {k: np.stack([row[k] for row in rows]) for k in rows[0]}


class Rows:
    """Rows `[start, stop)` of another source, renumbered from 0 (a training or a held-out part of a split)."""

    def __init__(self, source, start: int, stop: int):
        if not 0 <= start <= stop <= len(source):
            raise ValueError(f"rows [{start}, {stop}) must lie within the {len(source)} examples of the source")
        self.source, self.start, self._len = source, start, stop - start

    def __len__(self) -> int:
        return self._len

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return self.source.read(np.asarray(indices) + self.start)


class BatchStream:
    """The global batches of each epoch of `source`, this process's rows only (see the module docstring).

    `order(epoch)` gives the epoch's permutation of `range(len(source))` (None:
    the source's order); `place(batch)` runs in the background thread on each
    host batch (e.g. `jax.device_put`, or `jax.make_array_from_process_local_data`
    with the batch sharding), so batches reach the device ahead of the step.
    """

    def __init__(self, source, *, batch_size: int, order: Callable[[int], Any] | None = None,
                 process_index: int = 0, process_count: int = 1, place: Callable = lambda batch: batch,
                 prefetch: int = PREFETCH):
        self.batch_size = validation.positive_int("batch_size", batch_size)
        validation.positive_int("process_count", process_count)
        validation.positive_int("prefetch", prefetch)
        if batch_size % process_count:
            raise ValueError(f"batch_size {batch_size} must be a multiple of process_count {process_count}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index must be in [0, {process_count}), got {process_index!r}")
        if len(source) < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the {len(source)} examples of the source")
        self.source, self.order, self.place, self.prefetch = source, order, place, prefetch
        share = batch_size // process_count
        self._rows = slice(process_index * share, (process_index + 1) * share)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.source) // self.batch_size

    def permutation(self, epoch: int) -> np.ndarray:
        """The example ids of `epoch` in visiting order."""
        n = len(self.source)
        return np.arange(n) if self.order is None else np.asarray(self.order(epoch))

    def indices(self, permutation: np.ndarray, step: int) -> np.ndarray:
        """The example ids this process reads for global batch `step` of the epoch ordered by `permutation`."""
        return permutation[step * self.batch_size: (step + 1) * self.batch_size][self._rows]

    def batch(self, epoch: int, step: int):
        """This process's rows of global batch `step` of `epoch`, placed."""
        return self.place(self.source.read(self.indices(self.permutation(epoch), step)))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Any]]:
        """(step, batch) for steps `start`, `start + 1`, ... of `epoch`, up to `prefetch` read ahead in a thread."""
        return self.batches(self.permutation(epoch), start)

    def batches(self, permutation, start: int = 0) -> Iterator[tuple[int, Any]]:
        """As `epoch`, for the epoch that visits the examples in the order `permutation`."""
        if not 0 <= start <= self.steps_per_epoch:
            raise ValueError(f"start must be in [0, {self.steps_per_epoch}], got {start!r}")
        permutation = np.asarray(permutation)
        load = lambda step: self.place(self.source.read(self.indices(permutation, step)))
        steps = iter(range(start, self.steps_per_epoch))
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxnn-stream") as pool:
            pending = collections.deque((step, pool.submit(load, step)) for step in itertools.islice(steps, self.prefetch))
            try:
                while pending:
                    step, future = pending.popleft()
                    for ahead in steps:
                        pending.append((ahead, pool.submit(load, ahead)))
                        break
                    yield step, future.result()
            finally:
                for _, future in pending:
                    future.cancel()
