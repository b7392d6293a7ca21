"""`Trainer.fit` and `evaluate` fed from a streaming source: batches read on the host, placed in the background.

For splits that should not live whole on the device. The source (`jaxnn.data.streaming`: an `ArraySource`
over memory-mapped arrays, a `RecordSource` over `tfds.data_source`, or `Rows` of one) reads dicts with
"inputs", "targets" and optionally "weights" (a source's `transform` renames and converts):

    source = ArraySource(cache.read("fashion_mnist", "train", mmap=True),
                         transform=lambda b: {"inputs": b["images"] / np.float32(255), "targets": b["labels"]})
    state, history = trainer.fit(state, source, epochs=5, batch_size=128, validation_split=0.1)
    trainer.evaluate(state, test_source)

Global batch i of an epoch is slice i of the permutation the fit loop gives the step, which is the in-memory
path's (`epoch_permutation(state.key, epoch, n)`), so the History is the in-memory one; each process reads
only the rows its devices hold of each global batch (`BatchStream`), places them with
`jax.make_array_from_process_local_data` in the stream's thread, `PREFETCH` batches ahead, and the position
is the step, so ModelCheckpoint resumes exactly, also on another process count. Evaluation pads the last
batch with weight-0 rows, so every example counts once. A fused chunk (`steps_per_dispatch`) is one dispatch
per step here: the batches come from the host one at a time.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.data.splits import split_sizes
from jaxnn.data.streaming import BatchStream, Rows
from jaxnn.training.guard import guarded_step
from jaxnn.training.loop import StepsInFlight
from jaxnn.training.members import member_count
from jaxnn.training.steps import results

KEYS = ("inputs", "targets")


def is_source(x) -> bool:
    """Whether `x` is a streaming source (`read(ids)` and `__len__`) rather than arrays."""
    return callable(getattr(x, "read", None)) and hasattr(x, "__len__")


def _check(state, y, class_weight=None, sample_weight=None) -> None:
    if member_count(state) is not None:
        raise ValueError("an ensemble (a state with a member axis) trains and evaluates on arrays, not a "
                         "streaming source")
    if y is not None:
        raise ValueError(f"y must be None when x is a streaming source (its 'targets' are the targets), got "
                         f"{type(y).__name__}")
    if class_weight is not None or sample_weight is not None:
        raise ValueError("with a streaming source give per-example weights as its 'weights' column, not "
                         "sample_weight or class_weight")


def _shapes(trainer, state, source, field: str) -> dict:
    """The source's columns as `ShapeDtypeStruct`s of all its rows, its first example checked against the model."""
    if not len(source):
        raise ValueError(f"{field} is a streaming source with no examples")
    first = source.read(np.arange(1))
    if not isinstance(first, dict) or set(KEYS) - set(first) or set(first) - {*KEYS, "weights"}:
        got = sorted(first) if isinstance(first, dict) else type(first).__name__
        raise ValueError(f"{field} must read dicts with keys 'inputs', 'targets' and optionally 'weights' (a "
                         f"source's transform can rename its columns), got {got}")
    trainer.check_data(state, first["inputs"], first["targets"])
    spec = lambda a: jax.ShapeDtypeStruct((len(source), *np.shape(a)[1:]),
                                          jax.dtypes.canonicalize_dtype(np.asarray(a).dtype))
    return jax.tree_util.tree_map(spec, first)


def _stream(trainer, source, batch_size: int, shapes: dict) -> BatchStream:
    """This process's rows of each global batch of `source`, placed on its devices by the batch sharding."""
    sharding = trainer.batch_sharding
    blocks = sorted({index[0].indices(batch_size)[:2]
                     for index in sharding.addressable_devices_indices_map((batch_size,)).values()})
    lo, hi = blocks[0][0], blocks[-1][1]
    if sum(stop - start for start, stop in blocks) != hi - lo or batch_size % (hi - lo) or lo % (hi - lo):
        raise ValueError(f"the mesh gives process {jax.process_index()} the rows {blocks} of each global batch; "
                         "streaming needs one block per process (a mesh whose devices are in process order)")
    share = hi - lo

    def place(batch):
        put = lambda a, s: jax.make_array_from_process_local_data(sharding, np.asarray(a, s.dtype),
                                                                  (batch_size, *s.shape[1:]))
        return jax.tree_util.tree_map(put, batch, shapes)

    return BatchStream(source, batch_size=batch_size, process_index=lo // share, process_count=batch_size // share,
                       place=place)


class _Feeder:
    """The fit loop's `step(state, totals, guard, perm, index, count)` on streamed batches, one dispatch per
    batch (at most `StepsInFlight`'s limit in flight): a new `perm` (an epoch) or a jump in `index` (a resume)
    starts reading at global batch `index` of the order `perm`."""

    def __init__(self, stream: BatchStream, fed_step):
        self.stream, self.fed_step = stream, fed_step
        self._perm, self._batches, self._next = None, None, None

    def __call__(self, state, totals, guard, perm, index, count, active=None):
        if perm is not self._perm or index != self._next:
            self.close()
            self._perm, self._batches = perm, self.stream.batches(np.asarray(perm), index)
        in_flight = StepsInFlight()
        for _, batch in itertools.islice(self._batches, count):
            state, totals, guard = self.fed_step(state, totals, guard, batch)
            in_flight.push(totals)
        self._next = index + count
        return state, totals, guard

    def close(self) -> None:
        """Stop the background reads (the epoch's generator closes its thread)."""
        if self._batches is not None:
            self._batches.close()
            self._batches = None


class _Padded:
    """`source` grown to whole batches: the extra rows repeat its last example with weight 0."""

    def __init__(self, source, batch_size: int):
        self.source, self.n = source, len(source)
        self._len = -(-self.n // batch_size) * batch_size

    def __len__(self) -> int:
        return self._len

    def read(self, indices):
        indices = np.asarray(indices)
        batch = self.source.read(np.minimum(indices, self.n - 1))
        real = (indices < self.n).astype(np.float32)
        return {**batch, "weights": real * batch["weights"] if "weights" in batch else real}


def _build_fit(trainer, shardings):
    rep = trainer._replicated
    return jax.jit(guarded_step(trainer._make_train_step(), trainer.check_finite), donate_argnums=0,
                   in_shardings=(shardings, rep, rep, trainer.batch_sharding), out_shardings=(shardings, rep, rep))


def _build_eval(trainer, shardings):
    eval_step = trainer._make_eval_step()

    def eval_batch(params, model_state, totals, batch):
        return jax.tree_util.tree_map(jnp.add, totals, eval_step(params, model_state, batch))

    return jax.jit(eval_batch, out_shardings=trainer._replicated,
                   in_shardings=(shardings.params, shardings.model_state, trainer._replicated, trainer.batch_sharding))


def _evaluate(trainer, state, source, batch_size: int, shapes: dict) -> dict[str, float]:
    padded = _Padded(source, batch_size)
    shapes = {**shapes, "weights": jax.ShapeDtypeStruct((len(padded),), jnp.float32)}
    eval_batch = trainer._compiled("fed_eval", state, lambda shardings: _build_eval(trainer, shardings))
    totals, in_flight = trainer._zero_stats(state, shapes, batch_size), StepsInFlight()
    for _, batch in _stream(trainer, padded, batch_size, shapes).epoch(0):
        totals = eval_batch(state.params, state.model_state, totals, batch)
        in_flight.push(totals)
    return results(trainer.metric_objects, jax.device_get(totals))


def evaluate(trainer, state, source, y, batch_size: int) -> dict[str, float]:
    """`Trainer.evaluate` of a streaming source."""
    _check(state, y)
    return _evaluate(trainer, state, source, batch_size, _shapes(trainer, state, source, "x"))


def fit(trainer, state, source, y, *, batch_size: int, validation_data, validation_split: float, class_weight,
        sample_weight, **loop_options):
    """`Trainer.fit` on a streaming source (arguments checked by `fit`); returns (state, History)."""
    _check(state, y, class_weight, sample_weight)
    shapes = _shapes(trainer, state, source, "x")
    n = len(source)
    if validation_split:
        cut, _ = split_sizes(n, validation_split)
        source, validation_data = Rows(source, 0, cut), Rows(source, cut, n)
        n = cut
    if n < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the {n} training examples")
    if validation_data is None:
        validate = None
    elif is_source(validation_data):
        val_shapes = _shapes(trainer, state, validation_data, "validation_data")
        validate = lambda state: _evaluate(trainer, state, validation_data, batch_size, val_shapes)
    else:
        trainer.check_data(state, *validation_data)
        val_data, _, val_batches = trainer._padded(*validation_data, batch_size)
        validate = lambda state: trainer._evaluate_padded(state, val_data, val_batches, batch_size)
    shapes = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct((n, *s.shape[1:]), s.dtype), shapes)
    feeder = _Feeder(_stream(trainer, source, batch_size, shapes),
                     trainer._compiled("fed_fit", state, lambda shardings: _build_fit(trainer, shardings)))
    try:
        return trainer._fit_run(state, feeder, lambda state: trainer._zero_stats(state, shapes, batch_size, True),
                                validate, n // batch_size, num_examples=n, **loop_options)
    finally:
        feeder.close()
