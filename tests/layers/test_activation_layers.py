"""Activation layers against numpy formulas; PReLU's slope is learned; RReLU's train/inference
behaviour; bad hyperparameters and shapes."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from jaxnn.layers import ELU, LeakyReLU, PReLU, ReLU, RReLU, ShapeError, Softmax, from_spec
from jaxnn.models import Sequential

X = np.array([[-7.3, -2.9, -0.37, 0.21, 2.3, 6.6], [-1.2, -0.5, 0.9, 3.4, -4.1, 8.0]], np.float32)


def _softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("layer,reference", [
    (ReLU(), lambda z: np.maximum(z, 0)),
    (ReLU(max_value=6.0), lambda z: np.clip(z, 0, 6)),
    (ReLU(negative_slope=0.1, threshold=1.0), lambda z: np.where(z > 1, z, 0.1 * (z - 1))),
    (LeakyReLU(), lambda z: np.where(z >= 0, z, 0.3 * z)),
    (LeakyReLU(negative_slope=0.05), lambda z: np.where(z >= 0, z, 0.05 * z)),
    (ELU(), lambda z: np.where(z > 0, z, np.expm1(z))),
    (ELU(alpha=0.5), lambda z: np.where(z > 0, z, 0.5 * np.expm1(z))),
    (Softmax(), lambda z: _softmax(z, -1)),
    (Softmax(axis=1), lambda z: _softmax(z, 1)),
])
def test_parameter_free_layers_match_numpy(layer, reference):
    out_shape, params, state = layer.init(jax.random.key(0), (None, 6))
    assert out_shape == (None, 6) and params == {} and state == {}
    y, new_state = layer.apply(params, jnp.asarray(X))
    assert new_state == {}
    np.testing.assert_allclose(y, reference(X.astype(np.float64)), rtol=1e-5, atol=1e-7)


def test_keras_defaults():
    assert LeakyReLU().negative_slope == 0.3
    assert (ReLU().max_value, ReLU().negative_slope, ReLU().threshold) == (None, 0.0, 0.0)
    assert (ELU().alpha, Softmax().axis, PReLU().alpha_initializer) == (1.0, -1, "zeros")
    assert (RReLU().lower, RReLU().upper) == (1 / 8, 1 / 3)


@pytest.mark.parametrize("build,match", [
    (lambda: ReLU(max_value=-1.0), "ReLU max_value must be a number >= 0.0 or None, got -1.0"),
    (lambda: ReLU(threshold=-0.5), "ReLU threshold must be a number >= 0.0, got -0.5"),
    (lambda: LeakyReLU(negative_slope=-0.1), "LeakyReLU negative_slope must be a number >= 0.0, got -0.1"),
    (lambda: ELU(alpha="big"), "ELU alpha must be a number, got 'big'"),
    (lambda: Softmax(axis=0), "Softmax axis must be a non-zero int"),
    (lambda: PReLU(shared_axes=(0, 1)), r"PReLU shared_axes must be ints >= 1 \(0 is the batch axis\), got \(0, 1\)"),
    (lambda: PReLU(alpha_initializer="zero"), "unknown initializer 'zero'; known: .*zeros"),
    (lambda: RReLU(lower=0.5, upper=0.1), "RReLU needs lower <= upper, got lower=0.5 and upper=0.1"),
    (lambda: RReLU(lower=-0.1), "RReLU lower must be a number >= 0.0, got -0.1"),
])
def test_bad_hyperparameters_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_softmax_axis_outside_input_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"Softmax axis 2 is not a non-batch axis of input shape \(None, 6\)"):
        Softmax(axis=2).init(jax.random.key(0), (None, 6))


@pytest.mark.parametrize("shared_axes,input_shape,alpha_shape", [
    (None, (None, 4, 5, 3), (4, 5, 3)),
    ((1, 2), (None, 4, 5, 3), (1, 1, 3)),
    ([1, 2], (None, 4, 5, 3), (1, 1, 3)),
    (1, (None, None, 3), (1, 3)),
])
def test_prelu_alpha_shapes(shared_axes, input_shape, alpha_shape):
    layer = PReLU(shared_axes=shared_axes)
    out_shape, params, state = layer.init(jax.random.key(0), input_shape)
    assert out_shape == input_shape and state == {}
    assert params["alpha"].shape == alpha_shape
    np.testing.assert_array_equal(params["alpha"], 0.0)
    hash(layer)


@pytest.mark.parametrize("layer,input_shape,match", [
    (PReLU(), (None, None, 3), "PReLU needs known non-batch dimensions outside shared_axes"),
    (PReLU(shared_axes=(3,)), (None, 4, 5), r"PReLU shared_axes \(3,\) do not fit input shape \(None, 4, 5\)"),
])
def test_prelu_shape_errors(layer, input_shape, match):
    with pytest.raises(ShapeError, match=match):
        layer.init(jax.random.key(0), input_shape)


def test_prelu_forward_and_gradients():
    layer = PReLU(shared_axes=(1,))
    alpha = np.array([[0.1, -0.2, 0.3, 0.05, 0.25, 0.5]], np.float32)
    x = X[:, None, :].repeat(2, axis=1)  # (2, 2, 6): slopes shared over axis 1
    y, _ = layer.apply({"alpha": jnp.asarray(alpha)}, jnp.asarray(x))
    np.testing.assert_allclose(y, np.where(x >= 0, x, alpha * x), rtol=1e-6)
    with jax.enable_x64():
        check_grads(lambda a, z: layer.apply({"alpha": a}, z)[0],
                    (jnp.asarray(alpha, jnp.float64), jnp.asarray(x, jnp.float64)), order=1, modes=("fwd", "rev"))
    with pytest.raises(ShapeError, match=r"alpha shaped \(1, 6\) cannot apply to inputs shaped \(2, 6\)"):
        layer.apply({"alpha": jnp.asarray(alpha)}, jnp.asarray(X))


def test_prelu_learns_the_slope_that_generated_the_data():
    model = Sequential([PReLU()])
    _, params, _ = model.init(jax.random.key(0), (None, 3))
    assert set(params) == {"p_re_lu"}
    x = jax.random.normal(jax.random.key(1), (256, 3))
    y = jnp.where(x >= 0, x, 0.25 * x)
    tx = optax.sgd(0.5)

    @jax.jit
    def step(carry, _):
        params, opt_state = carry
        grads = jax.grad(lambda p: jnp.mean((model.apply(p, x)[0] - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=100)
    np.testing.assert_allclose(params["p_re_lu"]["alpha"], 0.25, atol=1e-3)


def test_rrelu_train_draws_slopes_between_bounds_and_varies_with_key():
    layer = RReLU(lower=0.1, upper=0.4)
    x = -jnp.linspace(0.5, 3.0, 4000).reshape(2, 2000)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    y1, _ = layer.apply({}, x, key=k1, train=True)
    y2, _ = layer.apply({}, x, key=k2, train=True)
    slopes = np.asarray(y1 / x)
    assert slopes.min() >= 0.1 - 1e-6 and slopes.max() <= 0.4 + 1e-6
    assert abs(slopes.mean() - 0.25) < 0.01 and slopes.std() > 0.08  # U(0.1, 0.4): std 0.087
    assert not np.allclose(y1, y2)
    positive = jnp.abs(x)
    np.testing.assert_array_equal(layer.apply({}, positive, key=k3, train=True)[0], positive)


def test_rrelu_inference_uses_the_mean_slope_exactly():
    layer = RReLU()
    x = jnp.asarray(X)
    y, _ = layer.apply({}, x)
    slope = np.float32((1 / 8 + 1 / 3) / 2)
    np.testing.assert_array_equal(y, np.where(X >= 0, X, slope * X))


def test_rrelu_train_without_key_raises():
    with pytest.raises(ValueError, match="r_re_lu draws random numbers when train=True: pass key="):
        RReLU().apply({}, jnp.asarray(X), train=True)


def test_layers_from_config_specs():
    layer = from_spec({"type": "LeakyReLU", "negative_slope": 0.1})
    assert layer == LeakyReLU(negative_slope=0.1)
    assert from_spec({"type": "PReLU", "shared_axes": [1, 2]}).shared_axes == (1, 2)
