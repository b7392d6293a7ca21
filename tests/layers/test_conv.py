"""Convolutions against explicit numpy sliding-window sums and scatters; shapes, gradients, jit, errors."""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn.layers import Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, ShapeError, abstract_init


def conv_reference(x, kernel, strides, padding, dilation, groups):
    """Explicit sliding-window sum; 'same' pads like TF (extra pad on the right), 'causal' pads on the left."""
    rank = x.ndim - 2
    size, k = x.shape[1:-1], kernel.shape[:rank]
    k_eff = [(kk - 1) * d + 1 for kk, d in zip(k, dilation)]
    if padding == "valid":
        out, left = [(n - ke) // s + 1 for n, ke, s in zip(size, k_eff, strides)], [0] * rank
    else:
        out = [-(-n // s) for n, s in zip(size, strides)]
        left = [ke - 1 if padding == "causal" else max((o - 1) * s + ke - n, 0) // 2
                for o, s, ke, n in zip(out, strides, k_eff, size)]
    in_per_group, filters = kernel.shape[-2], kernel.shape[-1]
    per_group = filters // groups
    y = np.zeros((x.shape[0], *out, filters))
    for pos in itertools.product(*map(range, out)):
        for offset in itertools.product(*map(range, k)):
            idx = [p * s + o * d - lft for p, s, o, d, lft in zip(pos, strides, offset, dilation, left)]
            if any(i < 0 or i >= n for i, n in zip(idx, size)):
                continue  # a zero of the padding
            pixel = x[(slice(None), *idx)]
            for g in range(groups):
                w = kernel[offset][:, g * per_group:(g + 1) * per_group]
                y[(slice(None), *pos, slice(g * per_group, (g + 1) * per_group))] += (
                    pixel[:, g * in_per_group:(g + 1) * in_per_group] @ w)
    return y


def conv_transpose_reference(x, kernel, strides, dilation, out_size, padding):
    """The scatter definition y[i*s + a*d - offset] += x[i] @ kernel[a].T, offset as TF's (the gradient of a conv)."""
    rank = x.ndim - 2
    size, k = x.shape[1:-1], kernel.shape[:rank]
    k_eff = [(kk - 1) * d + 1 for kk, d in zip(k, dilation)]
    offsets = [max((n - 1) * s + ke - o, 0) // 2 if padding == "same" else 0
               for n, s, ke, o in zip(size, strides, k_eff, out_size)]
    full = [max((n - 1) * s + ke, off + o) for n, s, ke, off, o in zip(size, strides, k_eff, offsets, out_size)]
    y = np.zeros((x.shape[0], *full, kernel.shape[-2]))
    for pos in itertools.product(*map(range, size)):
        for offset in itertools.product(*map(range, k)):
            idx = tuple(p * s + o * d for p, s, o, d in zip(pos, strides, offset, dilation))
            y[(slice(None), *idx)] += x[(slice(None), *pos)] @ kernel[offset].T
    return y[(slice(None), *(slice(off, off + o) for off, o in zip(offsets, out_size)))]


def _random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _params(layer, x_shape, seed=0, dtype=np.float32):
    """Output shape, state and random normal params (random init costs an XLA compile per shape; not needed here)."""
    out_shape, params, state = abstract_init(layer, (None, *x_shape[1:]))
    return out_shape, jax.tree_util.tree_map(lambda p: _random(p.shape, seed).astype(dtype), params), state


def _run(layer, x_shape, seed=0):
    out_shape, params, state = _params(layer, x_shape, seed + 1)
    x = _random(x_shape, seed + 2)
    y, new_state = layer.apply(params, x)
    assert state == {} and new_state == {}
    assert out_shape == (None, *y.shape[1:])
    return x, jax.tree_util.tree_map(np.asarray, params), np.asarray(y)


@pytest.mark.parametrize("layer,x_shape", [
    (Conv2D(4, 3), (2, 6, 5, 3)),
    (Conv2D(4, (3, 2), strides=2, padding="same"), (2, 7, 6, 3)),
    (Conv2D(3, 3, strides=(2, 3), padding="same"), (1, 8, 7, 2)),
    (Conv2D(2, 3, dilation_rate=2, padding="same"), (2, 7, 7, 2)),
    (Conv2D(2, 2, dilation_rate=(1, 2)), (1, 5, 6, 3)),
    (Conv2D(6, 3, groups=3, padding="same"), (2, 5, 5, 6)),
    (Conv2D(4, 3, strides=2, dilation_rate=2), (1, 9, 9, 2)),  # Keras forbids this combination; lax supports it
    (Conv1D(3, 3), (2, 9, 2)),
    (Conv1D(3, 4, strides=2, padding="same"), (2, 9, 2)),
    (Conv1D(3, 3, dilation_rate=2, padding="causal"), (2, 9, 2)),
    (Conv1D(4, 2, strides=3, padding="causal", groups=2), (2, 10, 4)),
])
def test_conv_matches_explicit_sliding_window_sum(layer, x_shape):
    x, params, y = _run(layer, x_shape)
    expected = conv_reference(x.astype(np.float64), params["kernel"], layer.strides, layer.padding,
                              layer.dilation_rate, layer.groups) + params["bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_causal_conv_output_at_t_ignores_later_steps():
    layer = Conv1D(2, 3, dilation_rate=2, padding="causal")
    _, params, _ = _params(layer, (1, 8, 1))
    x = jnp.asarray(_random((1, 8, 1), 1))
    y, _ = layer.apply(params, x)
    y_changed, _ = layer.apply(params, x.at[:, 5:].set(100.0))
    np.testing.assert_array_equal(y[:, :5], y_changed[:, :5])
    assert not np.allclose(y[:, 5:], y_changed[:, 5:])


@pytest.mark.parametrize("layer,size,out", [
    (Conv2DTranspose(3, 3, strides=2, padding="same"), 5, 10),
    (Conv2DTranspose(3, 4, strides=2, padding="same"), 5, 10),
    (Conv2DTranspose(3, 5, strides=2, padding="same"), 4, 8),
    (Conv2DTranspose(3, 3, padding="same"), 5, 5),
    (Conv2DTranspose(3, 3, strides=2), 5, 11),
    (Conv2DTranspose(3, 2, strides=3), 4, 12),           # stride > kernel: n * s + max(k - s, 0)
    (Conv2DTranspose(3, 3, strides=2, output_padding=1), 5, 12),
    (Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=0), 5, 9),
    (Conv2DTranspose(3, 3, strides=2, dilation_rate=2), 4, 11),
    (Conv1DTranspose(2, 3, strides=2, padding="same"), 6, 12),
    (Conv1DTranspose(2, 4, strides=3, padding="same", output_padding=2), 5, 14),
])
def test_conv_transpose_matches_scatter_definition_and_keras_sizes(layer, size, out):
    x_shape = (2, *(size,) * layer.rank, 2)
    x, params, y = _run(layer, x_shape)
    assert y.shape == (2, *(out,) * layer.rank, layer.filters)
    expected = conv_transpose_reference(x.astype(np.float64), params["kernel"], layer.strides, layer.dilation_rate,
                                        y.shape[1:-1], layer.padding) + params["bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_conv_transpose_undoes_a_strided_conv_shape_for_a_generator():
    """(None, 7, 7, 64) -> (None, 14, 14, 32) -> (None, 28, 28, 1), the DCGAN generator's upsampling."""
    shape = (None, 7, 7, 64)
    for layer in (Conv2DTranspose(32, 4, strides=2, padding="same"), Conv2DTranspose(1, 4, strides=2, padding="same")):
        shape = layer.output_shape(shape)
    assert shape == (None, 28, 28, 1)


def test_kernel_layout_and_initializers_follow_keras():
    _, params, _ = Conv2D(8, 3, groups=2).init(jax.random.key(0), (None, 10, 10, 4))
    assert params["kernel"].shape == (3, 3, 2, 8) and params["bias"].shape == (8,)
    limit = np.sqrt(6 / (3 * 3 * 2 + 3 * 3 * 8))  # glorot fans count the receptive field
    assert limit * 0.9 < np.abs(params["kernel"]).max() <= limit
    np.testing.assert_array_equal(params["bias"], 0)
    _, params, _ = abstract_init(Conv2DTranspose(5, 3, use_bias=False), (None, 4, 4, 7))
    assert set(params) == {"kernel"} and params["kernel"].shape == (3, 3, 5, 7)
    assert Conv2D(4, 3, strides=(2, 1), dilation_rate=[1, 2]).dilation_rate == (1, 2)


def test_conv_activation_and_unknown_spatial_size():
    layer = Conv2D(4, 3, padding="same", activation="relu")
    out_shape, params, _ = _params(layer, (None, None, None, 2))
    assert out_shape == (None, None, None, 4)
    y, _ = layer.apply(params, jnp.asarray(_random((1, 5, 3, 2), 1)))
    assert y.shape == (1, 5, 3, 4) and float(y.min()) == 0.0


def test_conv_gradients_match_finite_differences():
    layer = Conv2D(2, 2, strides=(2, 1), padding="same", groups=2, activation="tanh")
    with jax.enable_x64():
        _, params, _ = _params(layer, (1, 3, 4, 2), 1, np.float64)
        x = jnp.asarray(_random((1, 3, 4, 2), 2), jnp.float64)
        check_grads(jax.jit(lambda p, x: layer.apply(p, x)[0]), (params, x), order=1, modes=["rev"])
        layer_t = Conv2DTranspose(2, 3, strides=2, padding="same")
        _, params_t, _ = _params(layer_t, (1, 2, 2, 2), 3, np.float64)
        check_grads(jax.jit(lambda p, x: layer_t.apply(p, x)[0]), (params_t, x[:, :2, :2]), order=1, modes=["rev"])


@pytest.mark.parametrize("layer,x_shape", [
    (Conv1D(3, 2, padding="causal"), (2, 5, 2)),
    (Conv2D(3, 2, strides=2, groups=1), (2, 5, 5, 2)),
    (Conv1DTranspose(2, 3, strides=2), (2, 4, 3)),
    (Conv2DTranspose(2, 3, strides=2, padding="same"), (2, 3, 3, 2)),
])
def test_apply_under_jit_equals_eager(layer, x_shape):
    _, params, _ = _params(layer, x_shape)
    x = jnp.asarray(_random(x_shape, 1))
    eager, _ = layer.apply(params, x)
    jitted, _ = jax.jit(layer.apply)(params, x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
    assert hash(layer) == hash(dataclasses.replace(layer))  # equal configs share one compiled function


@pytest.mark.parametrize("make,match", [
    (lambda: Conv2D(0, 3), "Conv2D filters must be a positive integer, got 0"),
    (lambda: Conv2D(4, (3, 3, 3)), r"Conv2D kernel_size must be an int or a tuple of 2 ints, each >= 1, got \(3, 3, 3\)"),
    (lambda: Conv2D(4, 3, strides=0), "Conv2D strides must be .* got 0"),
    (lambda: Conv2D(4, 3, padding="causal"), r"Conv2D padding must be one of 'valid', 'same', got 'causal'"),
    (lambda: Conv1D(4, 3, padding="full"), r"Conv1D padding must be one of 'valid', 'same', 'causal', got 'full'"),
    (lambda: Conv2D(6, 3, groups=4), "Conv2D filters must be divisible by groups, got filters=6, groups=4"),
    (lambda: Conv2D(4, 3, activation="relux"), "unknown activation 'relux'"),
    (lambda: Conv2D(4, 3, kernel_initializer="glorot"), "unknown initializer 'glorot'"),
    (lambda: Conv2DTranspose(4, 3, strides=2, output_padding=2),
     r"Conv2DTranspose output_padding must be smaller than strides, got output_padding=\(2, 2\), strides=\(2, 2\)"),
])
def test_bad_hyperparameters_raise_one_line_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,shape,match", [
    (Conv2D(4, 3, groups=2), (None, 8, 8, 3), r"groups=2 needs input channels divisible by 2, got input shape \(None, 8, 8, 3\)"),
    (Conv2D(4, 3), (None, 8, 3), r"Conv2D expects inputs \(batch, spatial, spatial, channels\) .* got input shape \(None, 8, 3\)"),
    (Conv2D(4, 5), (None, 4, 8, 1), r"leaves no output for input shape \(None, 4, 8, 1\)"),
    (Conv1D(4, 3, dilation_rate=3), (None, 6, 1), "leaves no output"),
    (Conv2DTranspose(4, 3), (None, 8, 8, None), "with known channels"),
])
def test_shapes_that_do_not_fit_raise_shape_errors_at_init(layer, shape, match):
    with pytest.raises(ShapeError, match=match):
        layer.init(jax.random.key(0), shape)


@pytest.mark.parametrize("layer", [Conv2D(4, 3), Conv2DTranspose(4, 3)])
def test_apply_on_wrong_channels_names_both_shapes(layer):
    _, params, _ = _params(layer, (1, 6, 6, 3))
    with pytest.raises(ShapeError, match=r"expects inputs \(batch, spatial, spatial, 3\), got shape \(1, 6, 6, 5\)"):
        layer.apply(params, jnp.ones((1, 6, 6, 5)))
