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
