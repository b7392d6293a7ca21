"""SpatialDropout1D/2D drop whole channels (Keras semantics); Reshape's target_shape checks and unknown dims."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.layers import LAYERS, Reshape, ShapeError, SpatialDropout1D, SpatialDropout2D


@pytest.mark.parametrize("layer,shape", [(SpatialDropout1D(0.4), (50, 6, 40)), (SpatialDropout2D(0.4), (50, 3, 4, 40))])
def test_spatial_dropout_drops_whole_channels_with_probability_rate(layer, shape):
    x = jnp.ones(shape)
    y, state = layer.apply({}, x, key=jax.random.key(0), train=True)
    assert state == {} and layer.init(jax.random.key(1), (None, *shape[1:]))[0] == (None, *shape[1:])
    per_channel = np.asarray(y).reshape(shape[0], -1, shape[-1])
    assert np.all(per_channel == per_channel[:, :1])  # one draw per example and channel
    kept = per_channel[:, 0] != 0
    np.testing.assert_allclose(per_channel[:, 0][kept], 1 / 0.6, rtol=1e-6)  # survivors scaled by 1 / (1 - rate)
    assert abs(1 - kept.mean() - 0.4) < 0.05


def test_spatial_dropout_is_identity_in_inference_and_needs_a_key_in_training():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(SpatialDropout1D(0.5).apply({}, x)[0], x)
    with pytest.raises(ValueError, match="draws random numbers when train=True: pass key="):
        SpatialDropout1D(0.5).apply({}, x, train=True)
    with pytest.raises(ValueError, match="Dropout rate must be in \\[0, 1\\), got 1.0"):
        SpatialDropout2D(1.0)


@pytest.mark.parametrize("layer,shape", [(SpatialDropout1D(0.2), (None, 8, 8, 3)), (SpatialDropout2D(0.2), (None, 8, 3))])
def test_spatial_dropout_rejects_inputs_of_the_wrong_rank(layer, shape):
    with pytest.raises(ShapeError, match=rf"{type(layer).__name__} expects inputs \(batch, .*channels\), got shape"):
        layer.init(jax.random.key(0), shape)
    with pytest.raises(ShapeError, match="expects inputs"):
        layer.apply({}, jnp.ones((2, *shape[1:])), key=jax.random.key(1), train=True)


def test_spatial_dropout_registered_and_jittable():
    assert LAYERS.get("SpatialDropout2D") is SpatialDropout2D
    layer = LAYERS.get("SpatialDropout1D")(rate=0.5)
    x = jnp.ones((2, 5, 3))
    y, _ = jax.jit(layer.apply, static_argnames="train")({}, x, key=jax.random.key(0), train=True)
    assert y.shape == x.shape


def test_reshape_follows_keras():
    layer = Reshape([7, -1])  # a list (as from a JSON config) becomes a hashable tuple
    assert layer.target_shape == (7, -1) and hash(layer) == hash(Reshape((7, -1)))
    assert layer.output_shape((None, 28, 28)) == (None, 7, 112)
    assert Reshape((-1,)).output_shape((None, 3, 4)) == (None, 12)
    assert Reshape((-1, 4)).output_shape((None, None, 4)) == (None, None, 4)  # unknown sizes stay unknown
    y, _ = jax.jit(layer.apply)({}, jnp.arange(2 * 784.0).reshape(2, 28, 28))
    np.testing.assert_array_equal(y, np.arange(2 * 784.0).reshape(2, 7, 112))


@pytest.mark.parametrize("target", [(-1, -1), (0, 5), (-2, 4), 12, (2.0, 6)])
def test_reshape_rejects_bad_target_shapes(target):
    with pytest.raises(ValueError, match="Reshape target_shape must be a tuple of positive ints with at most one -1"):
        Reshape(target)
