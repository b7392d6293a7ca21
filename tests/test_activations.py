"""Every registered activation against an independent numpy formula, its gradient
against finite differences, stability at huge inputs, and the name errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn import activations
from jaxnn.layers import Dense

_erf = np.vectorize(math.erf)
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softplus(z):
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)


REFERENCES = {
    "linear": lambda z: z,
    "threshold": lambda z: (z > 0).astype(float),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "hard_sigmoid": lambda z: np.clip(z / 6 + 0.5, 0, 1),
    "relu": lambda z: np.maximum(z, 0),
    "relu6": lambda z: np.clip(z, 0, 6),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.2 * z),
    "tanh": np.tanh,
    "softmax": _softmax,
    "log_softmax": lambda z: np.log(_softmax(z)),
    "elu": lambda z: np.where(z > 0, z, np.expm1(z)),
    "selu": lambda z: _SELU_SCALE * np.where(z > 0, z, _SELU_ALPHA * np.expm1(z)),
    "gelu": lambda z: 0.5 * z * (1 + _erf(z / np.sqrt(2))),
    "gelu_tanh": lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "softplus": _softplus,
    "mish": lambda z: z * np.tanh(_softplus(z)),
}
# Away from every kink (0, +-3 for hard_sigmoid, 6 for relu6).
X = np.array([[-7.3, -4.1, -2.9, -1.2, -0.37], [0.21, 0.9, 2.3, 3.4, 6.6]])
SMOOTH = sorted(set(REFERENCES) - {"threshold"})


def test_every_registered_activation_has_a_reference():
    assert {activations.get(n).__name__ for n in activations.names()} == set(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_matches_formula(name):
    with jax.enable_x64():
        y = activations.get(name)(jnp.asarray(X, jnp.float64))
    np.testing.assert_allclose(y, REFERENCES[name](X), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", SMOOTH)
def test_gradient_matches_finite_differences(name):
    with jax.enable_x64():
        check_grads(activations.get(name), (jnp.asarray(X, jnp.float64),), order=1, modes=("fwd", "rev"))


def test_threshold_gradient_is_zero():
    g = jax.grad(lambda z: jnp.sum(activations.threshold(z)))(jnp.asarray(X, jnp.float32))
    np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_finite_values_and_gradients_at_huge_inputs(name):
    fn = activations.get(name)
    x = jnp.array([[-1e4, -30.0, 30.0, 1e4]], jnp.float32)
    y, vjp = jax.vjp(fn, x)
    (g,) = vjp(jnp.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(g))


@pytest.mark.parametrize("fn,axis", [(activations.softmax, 0), (activations.log_softmax, 0), (activations.softmax, 1)])
def test_softmax_over_a_chosen_axis(fn, axis):
    reference = _softmax(X, axis=axis)
    with jax.enable_x64():
        y = fn(jnp.asarray(X), axis=axis)
    np.testing.assert_allclose(y, reference if fn is activations.softmax else np.log(reference), rtol=1e-12)


def test_gelu_follows_keras3_exact_default_and_tanh_form_is_registered_apart():
    x = jnp.array([-1.5, 0.7])
    np.testing.assert_allclose(activations.get("gelu")(x), jax.nn.gelu(x, approximate=False), rtol=1e-6)
    np.testing.assert_allclose(activations.get("gelu_tanh")(x), jax.nn.gelu(x, approximate=True), rtol=1e-6)
    assert not np.allclose(activations.get("gelu")(x), activations.get("gelu_tanh")(x), rtol=1e-6, atol=0)


@pytest.mark.parametrize("options", [
    dict(negative_slope=0.1), dict(max_value=5.0), dict(threshold=1.0),
    dict(negative_slope=0.1, max_value=5.0, threshold=1.0),
])
def test_relu_keras_options(options):
    slope, top, theta = options.get("negative_slope", 0.0), options.get("max_value", np.inf), options.get("threshold", 0.0)
    reference = np.where(X >= top, top, np.where(X > theta, X, slope * (X - theta)))
    np.testing.assert_allclose(activations.relu(jnp.asarray(X, jnp.float32), **options), reference, rtol=1e-6)


@pytest.mark.parametrize("name", ["gelu_tanh", "leaky_relu", "mish"])
def test_usable_by_name_in_dense(name):
    layer = Dense(3, activation=name)
    _, params, _ = layer.init(jax.random.key(0), (None, 5))
    x = jnp.asarray(X, jnp.float32)
    y, _ = layer.apply(params, x)
    z = np.asarray(x) @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    np.testing.assert_allclose(y, REFERENCES[activations.get(name).__name__](z), rtol=1e-5, atol=1e-6)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'relu7'; known: .*gelu_tanh.*relu6"):
        activations.get("relu7")
    with pytest.raises(ValueError, match="unknown activation 'swoosh'"):
        Dense(3, activation="swoosh")
