"""Embedding: table lookup, Keras's default init, out-of-range ids (error outside jit, NaN inside), gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.layers import LAYERS, Embedding

TABLE = np.arange(20, dtype=np.float32).reshape(5, 4) / 10


def test_lookup_returns_the_rows_of_the_ids():
    layer = Embedding(5, 4)
    ids = np.array([[0, 3, 3], [4, 1, 0]])
    out_shape, _, state = layer.init(jax.random.key(0), (None, 3))
    assert out_shape == (None, 3, 4) and state == {}
    y, _ = layer.apply({"embeddings": TABLE}, ids)
    np.testing.assert_array_equal(y, TABLE[ids])
    y, _ = layer.apply({"embeddings": TABLE}, ids.astype(np.float32))  # float ids are cast, as in Keras
    np.testing.assert_array_equal(y, TABLE[ids])


def test_default_init_is_kerass_uniform_between_minus_and_plus_0_05():
    _, params, _ = Embedding(1000, 8).init(jax.random.key(0), (None, 7))
    table = params["embeddings"]
    assert table.shape == (1000, 8)
    assert float(jnp.abs(table).max()) <= 0.05 and float(jnp.abs(table).max()) > 0.049
    assert abs(float(table.mean())) < 0.005


@pytest.mark.parametrize("bad", [5, -1, 17])
def test_out_of_range_ids_outside_jit_raise_naming_the_id(bad):
    with pytest.raises(ValueError, match=rf"Embedding got id {bad} outside \[0, input_dim=5\)"):
        Embedding(5, 4).apply({"embeddings": TABLE}, np.array([[0, 1], [bad, 2]]))


def test_out_of_range_ids_inside_jit_give_nan_rows():
    layer = Embedding(5, 4)
    y, _ = jax.jit(layer.apply)({"embeddings": TABLE}, jnp.array([2, 5, -1, 4]))
    np.testing.assert_array_equal(y[0], TABLE[2])
    np.testing.assert_array_equal(y[3], TABLE[4])
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()


def test_gradient_counts_each_row_once_per_occurrence():
    layer = Embedding(5, 4)
    ids = jnp.array([[0, 3, 3], [4, 3, 0]])
    grads = jax.grad(lambda p: layer.apply(p, ids)[0].sum())({"embeddings": jnp.asarray(TABLE)})
    counts = np.bincount(np.asarray(ids).ravel(), minlength=5)
    np.testing.assert_array_equal(grads["embeddings"], np.repeat(counts[:, None], 4, axis=1))


def test_mask_zero_marks_padding_for_recurrent_layers():
    ids = np.array([[3, 1, 0, 0], [2, 0, 0, 0]])
    np.testing.assert_array_equal(Embedding(5, 4, mask_zero=True).compute_mask(ids), ids != 0)
    assert Embedding(5, 4).compute_mask(ids) is None


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_dim=0, output_dim=4), "Embedding input_dim must be a positive integer, got 0"),
    (dict(input_dim=5, output_dim=2.5), "Embedding output_dim must be a positive integer, got 2.5"),
    (dict(input_dim=5, output_dim=4, embeddings_initializer="uniformly"), "unknown initializer 'uniformly'"),
])
def test_bad_hyperparameters_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Embedding(**kwargs)


def test_registered_by_keras_name():
    assert LAYERS.get("Embedding") is Embedding
