"""Suite-wide settings: every test runs with JAX's key-reuse checker on."""
import jax
import numpy as np
import pytest

jax.config.update("jax_debug_key_reuse", True)


@pytest.fixture
def check_epoch_orders():
    """Asserts that `visit_orders(seed)` (epochs x examples ids, in training order) visits every example once per
    epoch, in an order of its own per epoch, that the seed fixes."""
    def check(visit_orders):
        orders = visit_orders(1)
        epochs, n = orders.shape
        np.testing.assert_array_equal(np.sort(orders, axis=1), np.tile(np.arange(n), (epochs, 1)))
        assert len(np.unique(orders, axis=0)) == epochs
        np.testing.assert_array_equal(orders, visit_orders(1))
        assert not np.array_equal(orders, visit_orders(2))

    return check
