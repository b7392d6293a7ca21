"""Normalization layers: BatchNormalization (with moving statistics in `state`) and LayerNormalization.

Statistics are computed in at least float32, so bfloat16/float16 activations
normalize without overflow; the output has the input's dtype.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn import initializers, validation
from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import ShapeError, as_shape


def _resolve_axes(layer: Layer, axis, ndim: int) -> tuple[int, ...]:
    """`axis` (an int or ints, negative allowed) as sorted non-negative axes of a rank-`ndim` input."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if not all(-ndim <= a < ndim for a in axes):
        raise ShapeError(f"{type(layer).__name__} axis={axis!r} is out of range for inputs of rank {ndim}")
    return tuple(sorted(a % ndim for a in axes))


def _check_axis_field(layer: Layer, allow_tuple: bool):
    axis = layer.axis
    ok_int = validation.is_int(axis)
    ok_tuple = allow_tuple and isinstance(axis, (tuple, list)) and len(axis) > 0 and all(map(validation.is_int, axis))
    if not (ok_int or ok_tuple):
        allowed = "an int or a non-empty tuple of ints" if allow_tuple else "an int"
        raise ValueError(f"{type(layer).__name__} axis must be {allowed}, got {axis!r}")
    if ok_tuple:
        object.__setattr__(layer, "axis", tuple(axis))


def _check_epsilon(layer: Layer):
    if not isinstance(layer.epsilon, (int, float)) or not layer.epsilon > 0:
        raise ValueError(f"{type(layer).__name__} epsilon must be > 0, got {layer.epsilon!r}")


def _scale_and_center(layer: Layer, params, normalized, shape):
    """gamma * normalized + beta, the parameters reshaped to broadcast as `shape`."""
    if layer.scale:
        normalized = normalized * params["gamma"].reshape(shape).astype(normalized.dtype)
    if layer.center:
        normalized = normalized + params["beta"].reshape(shape).astype(normalized.dtype)
    return normalized


def _compute_dtype(x):
    return jnp.promote_types(x.dtype, jnp.float32)


@dataclasses.dataclass(frozen=True)
class BatchNormalization(Layer):
    """Normalizes each feature (the `axis` dimension) over the batch (Ioffe & Szegedy 2015).

    train=True: uses the batch's mean and (biased) variance over every other
    axis, and returns the updated moving statistics in `new_state`,
    moving = moving * momentum + batch * (1 - momentum) (Keras's convention).
    train=False: uses the moving statistics; the state comes back unchanged.
    `params` hold `gamma`/`beta` (trained); `state` holds `moving_mean`/
    `moving_variance`, which `summary` counts as non-trainable.
    """

    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    beta_initializer: str | Callable = "zeros"
    gamma_initializer: str | Callable = "ones"
    moving_mean_initializer: str | Callable = "zeros"
    moving_variance_initializer: str | Callable = "ones"

    def __post_init__(self):
        _check_axis_field(self, allow_tuple=False)
        _check_epsilon(self)
        if not isinstance(self.momentum, (int, float)) or not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"BatchNormalization momentum must be in [0, 1], got {self.momentum!r}")
        for field in ("beta_initializer", "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer"):
            initializers.get(getattr(self, field))

    def init(self, key, input_shape):
        shape = as_shape(input_shape)
        (axis,) = _resolve_axes(self, self.axis, len(shape))
        if len(shape) < 2 or shape[axis] is None or axis == 0:
            raise ShapeError(f"BatchNormalization needs a known feature dimension at axis={self.axis} (not the batch), "
                             f"got input shape {shape}")
        features = (shape[axis],)
        keys = jax.random.split(key, 4)
        params = {}
        if self.scale:
            params["gamma"] = initializers.get(self.gamma_initializer)(keys[0], features, jnp.float32)
        if self.center:
            params["beta"] = initializers.get(self.beta_initializer)(keys[1], features, jnp.float32)
        state = {"moving_mean": initializers.get(self.moving_mean_initializer)(keys[2], features, jnp.float32),
                 "moving_variance": initializers.get(self.moving_variance_initializer)(keys[3], features, jnp.float32)}
        return shape, params, state

    def apply(self, params, x, *, state=None, key=None, train=False):
        if not state or set(state) != {"moving_mean", "moving_variance"}:
            raise ValueError("BatchNormalization needs state={'moving_mean': ..., 'moving_variance': ...}: pass the "
                             f"state returned by init, got {state!r}")
        (axis,) = _resolve_axes(self, self.axis, x.ndim)
        features = state["moving_mean"].shape[0]
        if x.shape[axis] != features:
            raise ShapeError(f"BatchNormalization expects {features} features at axis {self.axis}, "
                             f"got shape {tuple(x.shape)}")
        shape = tuple(features if i == axis else 1 for i in range(x.ndim))
        xf = x.astype(_compute_dtype(x))
        if train:
            reduce = tuple(i for i in range(x.ndim) if i != axis)
            mean, variance = jnp.mean(xf, axis=reduce), jnp.var(xf, axis=reduce)
            new_state = {name: (old * self.momentum + new.astype(old.dtype) * (1.0 - self.momentum)).astype(old.dtype)
                         for name, old, new in (("moving_mean", state["moving_mean"], mean),
                                                ("moving_variance", state["moving_variance"], variance))}
        else:
            mean, variance, new_state = state["moving_mean"], state["moving_variance"], state
        normalized = (xf - mean.reshape(shape).astype(xf.dtype)) * jax.lax.rsqrt(
            variance.reshape(shape).astype(xf.dtype) + self.epsilon)
        return _scale_and_center(self, params, normalized, shape).astype(x.dtype), new_state


@dataclasses.dataclass(frozen=True)
class LayerNormalization(Layer):
    """Normalizes each example over `axis` (default the last; an int or ints) (Ba et al. 2016).

    y = (x - mean) / sqrt(var + epsilon) * gamma + beta, mean and (biased)
    variance over `axis`; gamma and beta have the shape of those dimensions.
    Same in training and inference.
    """

    supports_masking = True

    axis: int | tuple = -1
    epsilon: float = 1e-3
    center: bool = True
    scale: bool = True
    _: dataclasses.KW_ONLY  # Keras's fifth positional argument is rms_scaling
    beta_initializer: str | Callable = "zeros"
    gamma_initializer: str | Callable = "ones"

    def __post_init__(self):
        _check_axis_field(self, allow_tuple=True)
        _check_epsilon(self)
        initializers.get(self.beta_initializer)
        initializers.get(self.gamma_initializer)

    def init(self, key, input_shape):
        shape = as_shape(input_shape)
        axes = _resolve_axes(self, self.axis, len(shape))
        if 0 in axes or any(shape[a] is None for a in axes):
            raise ShapeError(f"LayerNormalization needs known dimensions at axis={self.axis} (not the batch), "
                             f"got input shape {shape}")
        k_gamma, k_beta = jax.random.split(key)
        features = tuple(shape[a] for a in axes)
        params = {}
        if self.scale:
            params["gamma"] = initializers.get(self.gamma_initializer)(k_gamma, features, jnp.float32)
        if self.center:
            params["beta"] = initializers.get(self.beta_initializer)(k_beta, features, jnp.float32)
        return shape, params, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        axes = _resolve_axes(self, self.axis, x.ndim)
        expected = next(iter(params.values())).shape if params else None
        if expected is not None and tuple(x.shape[a] for a in axes) != expected:
            raise ShapeError(f"LayerNormalization expects dimensions {expected} at axis={self.axis}, "
                             f"got shape {tuple(x.shape)}")
        shape = tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))
        xf = x.astype(_compute_dtype(x))
        mean, variance = jnp.mean(xf, axis=axes, keepdims=True), jnp.var(xf, axis=axes, keepdims=True)
        normalized = (xf - mean) * jax.lax.rsqrt(variance + self.epsilon)
        return _scale_and_center(self, params, normalized, shape).astype(x.dtype), {}
