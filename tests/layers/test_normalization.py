"""BatchNormalization (batch vs moving statistics, Keras's momentum update, gradients) and LayerNormalization."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn.layers import BatchNormalization, LayerNormalization, ShapeError


def _x(shape, seed=0, scale=3.0, shift=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale + shift).astype(np.float32)


def _bn_params(channels, seed=1):
    rng = np.random.default_rng(seed)
    params = {"gamma": rng.uniform(0.5, 2.0, channels).astype(np.float32),
              "beta": rng.normal(size=channels).astype(np.float32)}
    state = {"moving_mean": rng.normal(size=channels).astype(np.float32),
             "moving_variance": rng.uniform(0.5, 2.0, channels).astype(np.float32)}
    return params, state


def test_batchnorm_init_follows_keras():
    out_shape, params, state = BatchNormalization().init(jax.random.key(0), (None, 5, 5, 4))
    assert out_shape == (None, 5, 5, 4)
    np.testing.assert_array_equal(params["gamma"], np.ones(4))
    np.testing.assert_array_equal(params["beta"], np.zeros(4))
    np.testing.assert_array_equal(state["moving_mean"], np.zeros(4))
    np.testing.assert_array_equal(state["moving_variance"], np.ones(4))
    layer = BatchNormalization()
    assert (layer.momentum, layer.epsilon, layer.axis) == (0.99, 1e-3, -1)
    _, params, _ = BatchNormalization(center=False, scale=False).init(jax.random.key(0), (None, 4))
    assert params == {}


@pytest.mark.parametrize("axis,shape", [(-1, (8, 3, 3, 4)), (-1, (16, 5)), (1, (6, 4, 3))])
def test_batchnorm_train_uses_batch_statistics_and_updates_moving_ones(axis, shape):
    layer = BatchNormalization(axis=axis, momentum=0.9)
    channels = shape[axis]
    params, state = _bn_params(channels)
    x = _x(shape)
    y, new_state = layer.apply(params, x, state=state, train=True)
    reduce = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    bshape = [channels if i == axis % len(shape) else 1 for i in range(len(shape))]
    mean, var = x.astype(np.float64).mean(reduce), x.astype(np.float64).var(reduce)
    expected = ((x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-3) * params["gamma"].reshape(bshape)
                + params["beta"].reshape(bshape))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new_state["moving_mean"], 0.9 * state["moving_mean"] + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(new_state["moving_variance"], 0.9 * state["moving_variance"] + 0.1 * var, rtol=1e-5)


def test_batchnorm_inference_uses_moving_statistics_and_keeps_state():
    layer = BatchNormalization()
    params, state = _bn_params(3)
    x = _x((4, 3))
    y, new_state = layer.apply(params, x, state=state, train=False)
    expected = (x - state["moving_mean"]) / np.sqrt(state["moving_variance"] + 1e-3) * params["gamma"] + params["beta"]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert new_state is state


def test_batchnorm_moving_statistics_converge_to_the_data_statistics():
    layer = BatchNormalization(momentum=0.5)
    _, params, state = layer.init(jax.random.key(0), (None, 2))
    x = _x((256, 2), scale=2.0, shift=3.0)
    step = jax.jit(lambda s: layer.apply(params, x, state=s, train=True)[1])
    for _ in range(30):
        state = step(state)
    np.testing.assert_allclose(state["moving_mean"], x.mean(0), rtol=1e-4)
    np.testing.assert_allclose(state["moving_variance"], x.var(0), rtol=1e-4)
    y, _ = layer.apply(params, x, state=state, train=False)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(0), np.sqrt(x.var(0) / (x.var(0) + 1e-3)), rtol=1e-4)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradients_match_finite_differences(train):
    layer = BatchNormalization()
    with jax.enable_x64():
        params, state = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), _bn_params(3))
        x = jnp.asarray(_x((5, 2, 3)), jnp.float64)
        check_grads(jax.jit(lambda p, x: layer.apply(p, x, state=state, train=train)[0]), (params, x), order=1,
                    modes=["rev"])


def test_batchnorm_in_bfloat16_keeps_the_dtype_and_float32_statistics():
    layer = BatchNormalization()
    _, params, state = layer.init(jax.random.key(0), (None, 3))
    x = jnp.asarray(_x((64, 3), scale=100.0, shift=50.0), jnp.bfloat16)
    y, new_state = layer.apply(params, x, state=state, train=True)
    assert y.dtype == jnp.bfloat16 and new_state["moving_mean"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float32).mean(0), 0.0, atol=0.05)


@pytest.mark.parametrize("axis,shape", [(-1, (3, 4, 5)), ((1, 2), (3, 4, 5)), (1, (2, 6))])
def test_layernorm_matches_formula(axis, shape):
    layer = LayerNormalization(axis=axis)
    out_shape, params, state = layer.init(jax.random.key(0), (None, *shape[1:]))
    axes = tuple(a % len(shape) for a in ((axis,) if isinstance(axis, int) else axis))
    assert out_shape == (None, *shape[1:]) and state == {}
    assert params["gamma"].shape == tuple(shape[a] for a in axes)
    rng = np.random.default_rng(2)
    params = {"gamma": rng.normal(size=params["gamma"].shape).astype(np.float32),
              "beta": rng.normal(size=params["beta"].shape).astype(np.float32)}
    x = _x(shape)
    bshape = [shape[i] if i in axes else 1 for i in range(len(shape))]
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * params["gamma"].reshape(bshape) + params["beta"].reshape(bshape)
    for train in (False, True):
        np.testing.assert_allclose(layer.apply(params, x, train=train)[0], expected, rtol=1e-4, atol=1e-4)


def test_layernorm_gradients_match_finite_differences():
    layer = LayerNormalization()
    with jax.enable_x64():
        _, params, _ = layer.init(jax.random.key(0), (None, 4))
        params = {"gamma": jnp.asarray(_x(4, 1), jnp.float64), "beta": jnp.asarray(_x(4, 2), jnp.float64)}
        check_grads(jax.jit(lambda p, x: layer.apply(p, x)[0]), (params, jnp.asarray(_x((3, 4)), jnp.float64)),
                    order=1, modes=["rev"])


def test_apply_under_jit_equals_eager():
    bn, ln = BatchNormalization(), LayerNormalization()
    x = jnp.asarray(_x((4, 3, 3)))
    _, p_bn, s_bn = bn.init(jax.random.key(0), (None, 3, 3))
    _, p_ln, _ = ln.init(jax.random.key(1), (None, 3, 3))
    for train in (True, False):
        eager, eager_state = bn.apply(p_bn, x, state=s_bn, train=train)
        jitted, jitted_state = jax.jit(bn.apply, static_argnames="train")(p_bn, x, state=s_bn, train=train)
        np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(jitted_state["moving_mean"], eager_state["moving_mean"], rtol=1e-6)
    np.testing.assert_allclose(jax.jit(ln.apply)(p_ln, x)[0], ln.apply(p_ln, x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,match", [
    (lambda: BatchNormalization(momentum=1.5), "BatchNormalization momentum must be in \\[0, 1\\], got 1.5"),
    (lambda: BatchNormalization(epsilon=0), "BatchNormalization epsilon must be > 0, got 0"),
    (lambda: BatchNormalization(axis=(1, 2)), r"BatchNormalization axis must be an int, got \(1, 2\)"),
    (lambda: LayerNormalization(axis="last"), "LayerNormalization axis must be an int or a non-empty tuple of ints, got 'last'"),
    (lambda: BatchNormalization(gamma_initializer="one"), "unknown initializer 'one'"),
])
def test_bad_hyperparameters_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_batchnorm_without_state_says_what_to_pass():
    _, params, _ = BatchNormalization().init(jax.random.key(0), (None, 3))
    with pytest.raises(ValueError, match="BatchNormalization needs state=.*pass the state returned by init"):
        BatchNormalization().apply(params, jnp.ones((2, 3)), train=True)


@pytest.mark.parametrize("layer,shape,match", [
    (BatchNormalization(), (None, 4, None), r"needs a known feature dimension at axis=-1 \(not the batch\), got input shape \(None, 4, None\)"),
    (BatchNormalization(axis=3), (None, 4, 4), r"axis=3 is out of range for inputs of rank 3"),
    (LayerNormalization(axis=0), (None, 4), r"LayerNormalization needs known dimensions at axis=0 \(not the batch\)"),
])
def test_bad_input_shapes_raise_shape_errors(layer, shape, match):
    with pytest.raises(ShapeError, match=match):
        layer.init(jax.random.key(0), shape)


def test_apply_on_the_wrong_number_of_features_names_both():
    _, params, state = BatchNormalization().init(jax.random.key(0), (None, 3))
    with pytest.raises(ShapeError, match=r"expects 3 features at axis -1, got shape \(2, 5\)"):
        BatchNormalization().apply(params, jnp.ones((2, 5)), state=state)
    _, params, _ = LayerNormalization().init(jax.random.key(0), (None, 3))
    with pytest.raises(ShapeError, match=r"expects dimensions \(3,\) at axis=-1, got shape \(2, 5\)"):
        LayerNormalization().apply(params, jnp.ones((2, 5)))
