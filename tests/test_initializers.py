"""Initializers against Keras's formulas: uniform limits, variances (statistically),
truncation, orthogonality, constants; options and errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import initializers
from jaxnn.layers import Dense

SHAPE = (400, 300)          # fan_in 400, fan_out 300
CONV = (3, 3, 64, 32)       # receptive field 9: fan_in 576, fan_out 288


def _draw(name, shape=SHAPE, seed=0, **options):
    return np.asarray(initializers.get(name, **options)(jax.random.key(seed), shape, jnp.float32), np.float64)


@pytest.mark.parametrize("name,shape,limit", [
    ("glorot_uniform", SHAPE, np.sqrt(6 / (400 + 300))),
    ("glorot_uniform", CONV, np.sqrt(6 / (576 + 288))),
    ("he_uniform", SHAPE, np.sqrt(6 / 400)),
    ("lecun_uniform", CONV, np.sqrt(3 / 576)),
    ("random_uniform", SHAPE, 0.05),
])
def test_uniform_limits_and_variance(name, shape, limit):
    w = _draw(name, shape)
    assert np.abs(w).max() <= limit * (1 + 1e-6) and np.abs(w).max() > 0.99 * limit
    np.testing.assert_allclose(w.var(), limit ** 2 / 3, rtol=0.03)
    assert abs(w.mean()) < 0.02 * limit


@pytest.mark.parametrize("name,shape,variance", [
    ("glorot_normal", SHAPE, 2 / (400 + 300)),
    ("he_normal", SHAPE, 2 / 400),
    ("he_normal", CONV, 2 / 576),
    ("lecun_normal", CONV, 1 / 576),
])
def test_truncated_normal_variance_and_truncation(name, shape, variance):
    """Keras's *_normal: truncated at 2 std of the untruncated normal, rescaled to keep the variance."""
    w = _draw(name, shape)
    np.testing.assert_allclose(w.var(), variance, rtol=0.03)
    untruncated_std = np.sqrt(variance) / 0.87962566103423978
    assert np.abs(w).max() <= 2 * untruncated_std * (1 + 1e-6)
    assert np.abs(w).max() > 1.95 * untruncated_std


@pytest.mark.parametrize("name,options,std,bound", [
    ("random_normal", {}, 0.05, None),
    ("random_normal", {"mean": 1.0, "stddev": 0.2}, 0.2, None),
    ("truncated_normal", {}, 0.05 * 0.87962566103423978, 0.1),
])
def test_keras_random_defaults(name, options, std, bound):
    w = _draw(name, **options)
    np.testing.assert_allclose(w.std(), std, rtol=0.03)
    assert abs(w.mean() - options.get("mean", 0.0)) < 0.01 * std + 3 * std / np.sqrt(w.size)
    if bound is not None:
        assert np.abs(w).max() <= bound


@pytest.mark.parametrize("options,limit", [
    ({"scale": 2.0, "mode": "fan_out", "distribution": "uniform"}, np.sqrt(3 * 2 / 300)),
    ({"mode": "fan_avg", "distribution": "uniform"}, np.sqrt(3 / 350)),
])
def test_variance_scaling_uniform_limit(options, limit):
    w = _draw("variance_scaling", **options)
    assert np.abs(w).max() <= limit * (1 + 1e-6) and np.abs(w).max() > 0.99 * limit


def test_variance_scaling_untruncated_normal():
    w = _draw("variance_scaling", scale=3.0, distribution="untruncated_normal")
    np.testing.assert_allclose(w.var(), 3 / 400, rtol=0.03)
    assert np.abs(w).max() > 3 * np.sqrt(3 / 400)  # 120k normal draws pass 3 std; a truncated one could not


@pytest.mark.parametrize("shape,gain", [((64, 32), 1.0), ((32, 64), 1.0), ((64, 32), 2.0), ((3, 3, 8, 16), 1.0)])
def test_orthogonal(shape, gain):
    w = _draw("orthogonal", shape, gain=gain).reshape(-1, shape[-1])
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(len(gram)), atol=1e-5)


@pytest.mark.parametrize("name,options,value", [
    ("zeros", {}, 0.0), ("ones", {}, 1.0), ("constant", {}, 0.0), ("constant", {"value": 0.3}, 0.3),
])
def test_constant_fills(name, options, value):
    w = initializers.get(name, **options)(jax.random.key(0), (3, 4), jnp.float32)
    assert w.shape == (3, 4) and w.dtype == jnp.float32
    np.testing.assert_array_equal(w, np.float32(value))


def test_constant_function_callables_and_dense_names():
    np.testing.assert_array_equal(initializers.constant(0.5)(jax.random.key(0), (2,)), 0.5)
    fn = initializers.get("he_normal")
    assert initializers.get(fn) is fn
    _, params, _ = Dense(4, kernel_initializer="orthogonal", bias_initializer="ones").init(jax.random.key(1), (None, 8))
    np.testing.assert_allclose(params["kernel"].T @ params["kernel"], np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(params["bias"], 1.0)


@pytest.mark.parametrize("call,match", [
    (lambda: initializers.get("glorot"), r"unknown initializer 'glorot'; known: .*glorot_normal, glorot_uniform"),
    (lambda: initializers.get("orthogonal", scale=2.0), "unknown option 'scale' for initializer 'orthogonal'; allowed: gain"),
    (lambda: initializers.get("zeros", value=1.0), "unknown option 'value' for initializer 'zeros'; allowed: none"),
    (lambda: initializers.get("random_uniform", minval=1.0, maxval=0.0),
     "random_uniform needs minval < maxval, got 1.0 and 0.0"),
    (lambda: initializers.get("variance_scaling", mode="fan_max"),
     "variance_scaling mode must be one of fan_in, fan_out, fan_avg, got 'fan_max'"),
    (lambda: initializers.get("variance_scaling", distribution="normal"),
     "variance_scaling distribution must be one of truncated_normal, untruncated_normal, uniform, got 'normal'"),
    (lambda: initializers.get("variance_scaling", scale=0.0), "variance_scaling scale must be > 0, got 0.0"),
    (lambda: Dense(4, kernel_initializer="he"), "unknown initializer 'he'"),
])
def test_bad_names_and_options_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
