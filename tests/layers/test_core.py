"""Core layers against numpy formulas; Dropout's Keras semantics; bad hyperparameters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.layers import Activation, Dense, Dropout, Flatten, Reshape, ShapeError


def _init(layer, shape, seed=0):
    return layer.init(jax.random.key(seed), shape)


@pytest.mark.parametrize("activation,reference", [
    (None, lambda z: z),
    ("relu", lambda z: np.maximum(z, 0)),
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
    ("tanh", np.tanh),
])
def test_dense_matches_numpy(activation, reference):
    out_shape, params, state = _init(Dense(5, activation), (None, 3))
    assert out_shape == (None, 5) and state == {}
    assert params["kernel"].shape == (3, 5) and params["bias"].shape == (5,)
    params = {"kernel": jnp.arange(15.0).reshape(3, 5) / 10, "bias": jnp.linspace(-1, 1, 5)}
    x = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]], np.float32)
    y, _ = Dense(5, activation).apply(params, x)
    np.testing.assert_allclose(y, reference(x @ np.asarray(params["kernel"]) + np.asarray(params["bias"])), rtol=1e-6)


def test_dense_glorot_uniform_limit_and_zero_bias():
    _, params, _ = _init(Dense(300), (None, 500))
    limit = np.sqrt(6 / (500 + 300))
    assert np.abs(params["kernel"]).max() <= limit
    assert np.abs(params["kernel"]).max() > 0.95 * limit
    np.testing.assert_array_equal(params["bias"], 0)


def test_dense_without_bias_and_on_higher_rank_inputs():
    out_shape, params, _ = _init(Dense(4, use_bias=False), (None, 7, 3))
    assert out_shape == (None, 7, 4) and set(params) == {"kernel"}
    y, _ = Dense(4, use_bias=False).apply(params, jnp.ones((2, 7, 3)))
    np.testing.assert_allclose(y[0, 0], params["kernel"].sum(0), rtol=1e-6)


def test_dense_shape_mismatch_names_both_shapes():
    _, params, _ = _init(Dense(4), (None, 3))
    with pytest.raises(ShapeError, match=r"expects inputs \(batch, \.\.\., 3\), got shape \(2, 5\)"):
        Dense(4).apply(params, jnp.ones((2, 5)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(units=0), "units must be a positive int"),
    (dict(units=3, activation="relux"), "unknown activation 'relux'; known: .*relu"),
    (dict(units=3, kernel_initializer="glorot"), "unknown initializer 'glorot'"),
])
def test_dense_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Dense(**kwargs)


def test_flatten_and_reshape_shapes_and_values():
    x = jnp.arange(2 * 28 * 28.0).reshape(2, 28, 28)
    assert _init(Flatten(), (None, 28, 28))[0] == (None, 784)
    np.testing.assert_array_equal(Flatten().apply({}, x)[0], np.asarray(x).reshape(2, 784))
    assert _init(Reshape((28, -1)), (None, 784))[0] == (None, 28, 28)
    np.testing.assert_array_equal(Reshape((28, 28)).apply({}, x.reshape(2, 784))[0], x)
    with pytest.raises(ShapeError, match="Reshape cannot turn"):
        _init(Reshape((5, 5)), (None, 784))


def test_activation_layer_by_name_and_function():
    x = jnp.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(Activation("relu").apply({}, x)[0], [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(Activation(jnp.abs).apply({}, x)[0], [1.0, 0.0, 2.0])


def test_dropout_rate_is_the_drop_probability_and_keeps_the_expectation():
    x = jnp.ones((200, 500))
    y, _ = Dropout(0.3).apply({}, x, key=jax.random.key(1), train=True)
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.3) < 0.01  # Keras's meaning; stax would drop 70%
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.7], rtol=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.02


def test_dropout_mode_is_an_apply_argument():
    x = jnp.arange(10.0)
    np.testing.assert_array_equal(Dropout(0.5).apply({}, x, train=False)[0], x)
    k1, k2 = jax.random.split(jax.random.key(0))
    a = Dropout(0.5).apply({}, x[None], key=k1, train=True)[0]
    b = Dropout(0.5).apply({}, x[None], key=k2, train=True)[0]
    assert not np.array_equal(a, b)


def test_dropout_needs_a_key_in_training_and_a_valid_rate():
    with pytest.raises(ValueError, match="pass key="):
        Dropout(0.5).apply({}, jnp.ones((2, 2)), train=True)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\), got 1.0"):
        Dropout(1.0)
