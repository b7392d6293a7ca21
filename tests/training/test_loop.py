"""The loop's building blocks: epoch orders from (key, epoch) only, and bounded dispatch."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.training.loop import StepsInFlight
from jaxnn.training.state import SHUFFLE_STREAM, derive_key, epoch_permutation


def test_epoch_permutation_depends_on_key_and_epoch_only():
    key = jax.random.key(3)
    first = np.asarray(epoch_permutation(key, 0, 10))
    assert sorted(first) == list(range(10))
    np.testing.assert_array_equal(first, epoch_permutation(key, 0, 10))
    np.testing.assert_array_equal(first, jax.random.permutation(derive_key(key, SHUFFLE_STREAM, 0), 10))
    assert not np.array_equal(first, epoch_permutation(key, 1, 10))


def test_steps_in_flight_waits_on_the_oldest_beyond_the_limit(monkeypatch):
    waited = []
    monkeypatch.setattr(jax, "block_until_ready", waited.append)
    in_flight = StepsInFlight(limit=2)
    outputs = [jnp.full((), i) for i in range(5)]
    for out in outputs:
        in_flight.push(out)
    assert waited == outputs[:3]


def visit_orders(seed: int, epochs: int = 3, n: int = 24, batch_size: int = 6, shuffle: bool = True) -> np.ndarray:
    """The example ids `fit` trains on, in order, per epoch: the labels are the ids (one class per example) and
    the loss reports each batch's labels to the host as it runs."""
    from jaxnn import Trainer, losses
    from jaxnn.layers import Dense
    from jaxnn.models import Sequential

    seen = []

    def recording_loss(targets, preds):
        jax.debug.callback(lambda t: seen.append(np.asarray(t).copy()), targets, ordered=True)
        return losses.sparse_categorical_crossentropy(targets, preds)

    trainer = Trainer(Sequential([Dense(n, "softmax")]), loss=recording_loss, optimizer="sgd", metrics=())
    x = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    trainer.fit(trainer.init(seed, (3,)), x, np.arange(n, dtype=np.int32), epochs=epochs, batch_size=batch_size,
                shuffle=shuffle, verbose=0)
    jax.effects_barrier()
    return np.concatenate(seen).reshape(epochs, n)


def test_fit_visits_every_example_once_per_epoch_in_a_new_order_fixed_by_the_seed(check_epoch_orders):
    check_epoch_orders(lambda seed: visit_orders(seed=seed))
    np.testing.assert_array_equal(visit_orders(seed=1, shuffle=False), np.tile(np.arange(24), (3, 1)))
