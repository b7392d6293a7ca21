"""Merge layers against numpy, their shape rules and errors, gradients, and config names."""
import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from jaxnn.layers import (Add, Average, Concatenate, Maximum, Minimum, Multiply, ShapeError, Subtract,
                          from_spec)

A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]], np.float32)
B = np.array([[2.0, 2.0, -3.0], [1.5, -4.0, 0.0]], np.float32)
C = np.array([[-1.0, 0.0, 1.0], [2.0, 3.0, 5.0]], np.float32)


@pytest.mark.parametrize("layer,inputs,want", [
    (Add(), [A, B, C], A + B + C),
    (Subtract(), [A, B], A - B),
    (Multiply(), [A, B, C], A * B * C),
    (Average(), [A, B, C], (A + B + C) / 3),
    (Maximum(), [A, B, C], np.maximum(np.maximum(A, B), C)),
    (Minimum(), [A, B], np.minimum(A, B)),
    (Concatenate(), [A, B], np.concatenate([A, B], axis=-1)),
])
def test_merge_layers_match_numpy(layer, inputs, want):
    out_shape, params, state = layer.init(jax.random.key(0), [(None, 3)] * len(inputs))
    assert out_shape == (None, want.shape[1]) and params == {} and state == {}
    y, _ = layer.apply({}, [jnp.asarray(x) for x in inputs])
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("axis", [1, 2, -1, -2])
def test_concatenate_along_any_non_batch_axis(axis):
    x = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    y = -np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)
    out_shape, _, _ = Concatenate(axis).init(jax.random.key(0), [(None, 3, 4), (None, 3, 4)])
    want = np.concatenate([x, y], axis=axis)
    assert out_shape == (None, *want.shape[1:])
    np.testing.assert_array_equal(Concatenate(axis).apply({}, [x, y])[0], want)


def test_concatenate_sizes_add_up_and_unknown_stays_unknown():
    layer = Concatenate()
    assert layer.init(jax.random.key(0), [(None, 5, 2), (None, 5, 7)])[0] == (None, 5, 9)
    assert layer.init(jax.random.key(0), [(None, 5, None), (None, 5, 7)])[0] == (None, 5, None)


@pytest.mark.parametrize("layer", [Multiply(), Average(), Maximum(), Subtract()])
def test_merge_gradients_match_finite_differences(layer):
    with jax.enable_x64():
        a = jnp.asarray(A, jnp.float64)
        b = jnp.asarray(B + 0.25, jnp.float64)   # no ties for Maximum
        jax.test_util.check_grads(lambda a, b: layer.apply({}, [a, b])[0], (a, b), order=2)


@pytest.mark.parametrize("layer,shapes,match", [
    (Add(), (None, 3), r"Add takes a list of inputs, got a single input of shape \(None, 3\)"),
    (Add(), [(None, 3)], r"Add takes at least 2 inputs, got 1: \(None, 3\)"),
    (Subtract(), [(None, 3)] * 3, r"Subtract takes exactly 2 inputs, got 3"),
    (Multiply(), [(None, 3), (None, 4)], r"Multiply needs inputs of one shape, got \(None, 3\), \(None, 4\)"),
    (Concatenate(), [(None, 3, 2), (None, 4, 2)], r"needs inputs that agree off that axis, got \(None, 3, 2\), \(None, 4, 2\)"),
    (Concatenate(axis=3), [(None, 3, 2), (None, 3, 2)], r"Concatenate\(axis=3\) needs inputs of one rank > \|axis\|"),
])
def test_merge_shape_errors_name_every_shape(layer, shapes, match):
    with pytest.raises(ShapeError, match=match):
        layer.init(jax.random.key(0), shapes)


def test_merge_apply_checks_shapes_too():
    with pytest.raises(ShapeError, match=r"Add needs inputs of one shape, got \(2, 3\), \(2, 4\)"):
        Add().apply({}, [jnp.ones((2, 3)), jnp.ones((2, 4))])
    with pytest.raises(ShapeError, match=r"Add takes a list of inputs, got a single input of shape \(2, 3\)"):
        Add().apply({}, jnp.ones((2, 3)))


@pytest.mark.parametrize("axis", [0, 1.5, True])
def test_concatenate_rejects_bad_axes(axis):
    with pytest.raises(ValueError, match="Concatenate axis must be a non-batch axis"):
        Concatenate(axis=axis)


def test_merge_layers_come_from_config_names():
    assert from_spec({"type": "Concatenate", "axis": 1}) == Concatenate(axis=1)
    assert isinstance(from_spec({"type": "add"}), Add)
