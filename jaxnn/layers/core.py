"""Core layers: Dense, Flatten, Dropout (and SpatialDropout1D/2D), Activation, Reshape, Masking."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn import activations, initializers, validation
from jaxnn.layers.base import Layer, require_key, require_rank
from jaxnn.layers.shapes import ShapeError, as_shape


def _check_activation(spec):
    activations.get(spec)


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
    """Fully connected layer `activation(x @ kernel + bias)` over the last axis.

    >>> out_shape, params, _ = Dense(100, "sigmoid").init(jax.random.key(0), (None, 784))
    >>> out_shape, params["kernel"].shape        # ((None, 100), (784, 100))
    """

    supports_masking = True

    units: int
    activation: str | Callable | None = None
    use_bias: bool = True
    kernel_initializer: str | Callable = "glorot_uniform"
    bias_initializer: str | Callable = "zeros"

    def __post_init__(self):
        validation.positive_int("Dense units", self.units)
        _check_activation(self.activation)
        initializers.get(self.kernel_initializer)
        initializers.get(self.bias_initializer)

    def init(self, key, input_shape):
        input_shape = as_shape(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ShapeError(f"Dense needs a known last input dimension, got input shape {input_shape}")
        k_kernel, k_bias = jax.random.split(key)
        params = {"kernel": initializers.get(self.kernel_initializer)(k_kernel, (input_shape[-1], self.units), jnp.float32)}
        if self.use_bias:
            params["bias"] = initializers.get(self.bias_initializer)(k_bias, (self.units,), jnp.float32)
        return (*input_shape[:-1], self.units), params, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        kernel = params["kernel"]
        if x.ndim < 2 or x.shape[-1] != kernel.shape[0]:
            raise ShapeError(f"Dense expects inputs (batch, ..., {kernel.shape[0]}), got shape {tuple(x.shape)}")
        y = jnp.dot(x, kernel.astype(x.dtype))
        if self.use_bias:
            y = y + params["bias"].astype(y.dtype)
        return activations.get(self.activation)(y), {}


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
    """Flattens all but the batch dimension: (None, 28, 28) -> (None, 784)."""

    def init(self, key, input_shape):
        input_shape = as_shape(input_shape)
        if any(d is None for d in input_shape[1:]):
            raise ShapeError(f"Flatten needs known non-batch dimensions, got input shape {input_shape}")
        return (input_shape[0], math.prod(input_shape[1:])), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return x.reshape(x.shape[0], -1), {}


@dataclasses.dataclass(frozen=True)
class Reshape(Layer):
    """Reshapes the non-batch dimensions to `target_shape` (one entry may be -1).

    As in Keras, with unknown input dimensions the -1 entry is unknown (None) too.
    """

    target_shape: tuple

    def __post_init__(self):
        target = tuple(self.target_shape) if isinstance(self.target_shape, (tuple, list)) else None
        if target is None or not all(isinstance(d, int) and (d > 0 or d == -1) for d in target) or target.count(-1) > 1:
            raise ValueError(f"Reshape target_shape must be a tuple of positive ints with at most one -1, "
                             f"got {self.target_shape!r}")
        object.__setattr__(self, "target_shape", target)

    def init(self, key, input_shape):
        input_shape = as_shape(input_shape)
        target = self.target_shape
        if any(d is None for d in input_shape[1:]):
            return (input_shape[0], *(None if d == -1 else d for d in target)), {}, {}
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in target if d != -1)
        if (target.count(-1) == 0 and known != size) or size % known:
            raise ShapeError(f"Reshape cannot turn {input_shape[1:]} into {target}")
        target = tuple(size // known if d == -1 else d for d in target)
        return (input_shape[0], *target), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return x.reshape(x.shape[0], *self.target_shape), {}


@dataclasses.dataclass(frozen=True)
class Activation(Layer):
    """Applies an activation function (by name or as a function)."""

    supports_masking = True

    activation: str | Callable

    def __post_init__(self):
        _check_activation(self.activation)

    def init(self, key, input_shape):
        return as_shape(input_shape), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return activations.get(self.activation)(x), {}


@dataclasses.dataclass(frozen=True)
class Dropout(Layer):
    """Zeroes each input with probability `rate` in training, scaling the rest by 1/(1-rate).

    `rate` is the *drop* probability, as in Keras (stax's Dropout takes the keep
    probability). At inference (train=False) it is the identity. `noise_shape`
    shares one draw along dimensions given as 1 (e.g. spatial dropout).
    """

    supports_masking = True

    rate: float
    noise_shape: tuple | None = None

    def __post_init__(self):
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {self.rate!r}")

    def init(self, key, input_shape):
        return as_shape(input_shape), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        if not train or self.rate == 0.0:
            return x, {}
        key = require_key(self.name or self.default_name, key)
        shape = x.shape if self.noise_shape is None else tuple(
            x.shape[i] if d is None else d for i, d in enumerate(self.noise_shape)
        )
        keep = jax.random.bernoulli(key, 1.0 - self.rate, shape)
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros((), x.dtype)), {}


@dataclasses.dataclass(frozen=True)
class _SpatialDropout(Dropout):
    """Dropout of whole channels: one draw per example and channel, shared over the steps/pixels.

    Adjacent steps or pixels are strongly correlated, so dropping single
    values barely regularizes a conv net; dropping feature maps does
    (Tompson et al. 2015). `rate` is the drop probability, as in Dropout.
    """

    def init(self, key, input_shape):
        shape = as_shape(input_shape)
        self._check_rank(shape)
        return shape, {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        self._check_rank(tuple(x.shape))
        return super().apply(params, x, state=state, key=key, train=train)

    def _check_rank(self, shape):
        spatial = ("steps",) if len(self.noise_shape) == 3 else ("height", "width")
        require_rank(self, shape, ("batch", *spatial, "channels"))


@dataclasses.dataclass(frozen=True)
class SpatialDropout1D(_SpatialDropout):
    """Drops whole channels of (batch, steps, channels) inputs (Keras's SpatialDropout1D)."""

    noise_shape: tuple = dataclasses.field(default=(None, 1, None), init=False)


@dataclasses.dataclass(frozen=True)
class SpatialDropout2D(_SpatialDropout):
    """Drops whole feature maps of (batch, height, width, channels) inputs (Keras's SpatialDropout2D)."""

    noise_shape: tuple = dataclasses.field(default=(None, 1, 1, None), init=False)


@dataclasses.dataclass(frozen=True)
class Masking(Layer):
    """Marks the steps whose features all equal `mask_value` as padding (Keras's Masking).

    Inputs are (batch, time, features). The output is the input with those
    steps zeroed; its mask (True for real steps) reaches the layers after it
    in a model, so recurrent layers skip the padding.
    """

    mask_value: float = 0.0

    def init(self, key, input_shape):
        require_rank(self, as_shape(input_shape), ("batch", "time", "features"))
        return as_shape(input_shape), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        require_rank(self, tuple(x.shape), ("batch", "time", "features"))
        return jnp.where(self.compute_mask(x)[..., None], x, jnp.zeros((), x.dtype)), {}

    def compute_mask(self, inputs, mask=None):
        return jnp.any(jnp.asarray(inputs) != self.mask_value, axis=-1)
