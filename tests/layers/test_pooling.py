"""Pooling against numpy window loops (incl. the 'same' average divisor), global pooling, aliases, errors."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn.layers import (LAYERS, AveragePooling1D, AveragePooling2D, AvgPool2D, GlobalAveragePooling1D,
                          GlobalAveragePooling2D, GlobalAvgPool1D, GlobalMaxPool2D, GlobalMaxPooling1D,
                          GlobalMaxPooling2D, MaxPool1D, MaxPooling1D, MaxPooling2D, ShapeError)


def pool_reference(x, reduce, pool, strides, padding):
    """Reduce each window over its real elements only; 'same' pads like TF (extra pad on the right)."""
    size = x.shape[1:-1]
    if padding == "valid":
        out, left = [(n - p) // s + 1 for n, p, s in zip(size, pool, strides)], [0] * len(size)
    else:
        out = [-(-n // s) for n, s in zip(size, strides)]
        left = [max((o - 1) * s + p - n, 0) // 2 for o, s, p, n in zip(out, strides, pool, size)]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for pos in itertools.product(*map(range, out)):
        starts = [o * s - lft for o, s, lft in zip(pos, strides, left)]
        window = x[(slice(None), *(slice(max(a, 0), min(a + p, n)) for a, p, n in zip(starts, pool, size)))]
        y[(slice(None), *pos)] = reduce(window.reshape(x.shape[0], -1, x.shape[-1]), axis=1)
    return y


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("layer,x_shape", [
    (MaxPooling2D(), (2, 6, 7, 3)),
    (MaxPooling2D((3, 2), strides=(2, 1), padding="same"), (2, 7, 6, 2)),
    (AveragePooling2D(), (2, 6, 7, 3)),
    (AveragePooling2D(3, strides=2, padding="same"), (2, 8, 7, 2)),
    (AveragePooling2D((2, 3), padding="same"), (1, 5, 7, 2)),
    (MaxPooling1D(3, strides=1), (2, 7, 3)),
    (MaxPooling1D(2, padding="same"), (2, 7, 3)),
    (AveragePooling1D(4, strides=3, padding="same"), (2, 10, 2)),
    (AveragePooling1D(), (2, 9, 2)),
])
def test_pooling_matches_numpy_window_loops(layer, x_shape):
    x = _x(x_shape)
    out_shape, params, state = layer.init(jax.random.key(0), (None, *x_shape[1:]))
    y, _ = layer.apply(params, x)
    assert params == {} and state == {} and out_shape == (None, *y.shape[1:])
    reduce = np.max if isinstance(layer, (MaxPooling1D, MaxPooling2D)) else np.mean
    np.testing.assert_allclose(y, pool_reference(x, reduce, layer.pool_size, layer.strides, layer.padding),
                               rtol=1e-6, atol=1e-6)


def test_same_average_divides_by_the_real_elements_only():
    y, _ = AveragePooling1D(2, padding="same").apply({}, jnp.array([[[1.0], [2.0], [3.0]]]))
    np.testing.assert_allclose(y[0, :, 0], [1.5, 3.0])  # the last window holds only 3, not (3 + 0) / 2
    y, _ = AveragePooling2D(3, strides=1, padding="same").apply({}, jnp.ones((1, 4, 4, 1)))
    np.testing.assert_allclose(y, 1.0)


def test_strides_default_to_pool_size_and_shapes_follow_keras():
    assert MaxPooling2D((3, 2)).strides == (3, 2)
    assert MaxPooling2D().output_shape((None, 28, 28, 32)) == (None, 14, 14, 32)
    assert MaxPooling2D(padding="same").output_shape((None, 7, 7, 1)) == (None, 4, 4, 1)
    assert MaxPooling2D().output_shape((None, 7, 7, 1)) == (None, 3, 3, 1)
    assert AveragePooling1D(3, strides=2).output_shape((None, None, 4)) == (None, None, 4)


@pytest.mark.parametrize("layer,reduce,rank", [
    (GlobalAveragePooling1D(), np.mean, 1), (GlobalMaxPooling1D(), np.max, 1),
    (GlobalAveragePooling2D(), np.mean, 2), (GlobalMaxPooling2D(), np.max, 2),
])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_reduces_every_spatial_axis(layer, reduce, rank, keepdims):
    layer = type(layer)(keepdims=keepdims)
    x = _x((2, *(5,) * rank, 3))
    out_shape, _, _ = layer.init(jax.random.key(0), (None, *x.shape[1:]))
    assert out_shape == ((None, *(1,) * rank, 3) if keepdims else (None, 3))
    y, _ = layer.apply({}, x)
    np.testing.assert_allclose(y, reduce(x, axis=tuple(range(1, rank + 1)), keepdims=keepdims), rtol=1e-6)


def test_keras_short_names_are_the_same_classes():
    assert MaxPool1D is MaxPooling1D and AvgPool2D is AveragePooling2D
    assert GlobalAvgPool1D is GlobalAveragePooling1D and GlobalMaxPool2D is GlobalMaxPooling2D
    assert LAYERS.get("MaxPool2D") is MaxPooling2D and LAYERS.get("GlobalAvgPool2D") is GlobalAveragePooling2D
    assert LAYERS.get("AveragePooling1D") is AveragePooling1D


def test_pooling_gradients_match_finite_differences():
    with jax.enable_x64():
        x = jnp.asarray(np.random.default_rng(1).permutation(36).reshape(1, 6, 6, 1) / 7.0)  # no ties for max
        for layer in (MaxPooling2D(2, padding="same", strides=1), AveragePooling2D(3, strides=2, padding="same")):
            check_grads(jax.jit(lambda x: layer.apply({}, x)[0]), (x,), order=1, modes=["rev"])


@pytest.mark.parametrize("layer", [MaxPooling2D(), AveragePooling1D(3, padding="same"), GlobalMaxPooling2D()])
def test_apply_under_jit_equals_eager(layer):
    x = jnp.asarray(_x((2, 6, 6, 2) if "2D" in type(layer).__name__ else (2, 7, 2)))
    np.testing.assert_allclose(jax.jit(layer.apply)({}, x)[0], layer.apply({}, x)[0], rtol=1e-6)


@pytest.mark.parametrize("make,match", [
    (lambda: MaxPooling2D(0), r"MaxPooling2D pool_size must be an int or a tuple of 2 ints, each >= 1, got 0"),
    (lambda: AveragePooling1D(2, strides=(1, 1)), "AveragePooling1D strides must be"),
    (lambda: MaxPooling2D(padding="causal"), r"MaxPooling2D padding must be one of 'valid', 'same', got 'causal'"),
])
def test_bad_hyperparameters_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,shape,match", [
    (MaxPooling2D(3), (None, 2, 8, 1), r"pool_size=\(3, 3\) with padding='valid' does not fit input shape \(None, 2, 8, 1\)"),
    (MaxPooling2D(), (None, 8, 1), r"MaxPooling2D expects inputs \(batch, spatial, spatial, channels\), got shape \(None, 8, 1\)"),
    (GlobalAveragePooling1D(), (None, 4, 4, 1), r"expects inputs \(batch, spatial, channels\)"),
])
def test_wrong_input_shapes_raise_shape_errors(layer, shape, match):
    with pytest.raises(ShapeError, match=match):
        layer.init(jax.random.key(0), shape)
