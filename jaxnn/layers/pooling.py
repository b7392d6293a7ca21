"""Pooling over channels-last inputs: windowed max/average (1-d, 2-d) and global max/average.

Windows slide with `jax.lax.reduce_window`; `strides` default to `pool_size`.
With padding='same', an average divides by the number of real (unpadded)
elements in each window, as Keras does, so border outputs are not shrunk.
Keras's short names (`MaxPool2D`, `AvgPool1D`, `GlobalAvgPool2D`, ...) are
aliases of the same classes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxnn.layers.base import Layer, dict_inputs, require_rank
from jaxnn.layers.shapes import ShapeError, as_shape
from jaxnn.layers.conv import check_padding, conv_output_length, normalize_tuple


def _lowest(dtype):
    """The identity of max for `dtype`: -inf for floats, the minimum for integers."""
    return -jnp.inf if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).min


def _check_rank(layer: Layer, shape: tuple, rank: int):
    require_rank(layer, shape, ("batch", *("spatial",) * rank, "channels"))


def _max_over_tiles(x, pool_size: tuple):
    """Max over non-overlapping windows as a reshape and a reduction.

    Same values as `reduce_window`, but its gradient is an elementwise mask
    instead of XLA's select-and-scatter, which is ~100x slower on CPU. (Tied
    maxima share the gradient instead of the first one taking all of it.)
    """
    spatial = [n // p * p for n, p in zip(x.shape[1:-1], pool_size)]
    x = x[(slice(None), *(slice(0, n) for n in spatial))]
    tiled = x.reshape(x.shape[0], *[d for n, p in zip(spatial, pool_size) for d in (n // p, p)], x.shape[-1])
    return jnp.max(tiled, axis=tuple(range(2, 2 * len(pool_size) + 1, 2)))


@dataclasses.dataclass(frozen=True)
class _Pooling(Layer):
    """Max or average over `pool_size` windows moved by `strides` (None: `pool_size`)."""

    rank: ClassVar[int]
    reduction: ClassVar[str]  # "max" or "average"

    pool_size: int | tuple = 2
    strides: int | tuple | None = None
    padding: str = "valid"

    def __post_init__(self):
        cls = type(self).__name__
        object.__setattr__(self, "pool_size", normalize_tuple(cls, "pool_size", self.pool_size, self.rank))
        strides = self.pool_size if self.strides is None else self.strides
        object.__setattr__(self, "strides", normalize_tuple(cls, "strides", strides, self.rank))
        check_padding(cls, self.padding, ("valid", "same"))

    def init(self, key, input_shape):
        shape = as_shape(input_shape)
        _check_rank(self, shape, self.rank)
        out_spatial = tuple(conv_output_length(n, p, self.padding, s)
                            for n, p, s in zip(shape[1:-1], self.pool_size, self.strides))
        if any(n is not None and n <= 0 for n in out_spatial):
            raise ShapeError(f"{type(self).__name__} pool_size={self.pool_size} with padding='valid' does not fit "
                             f"input shape {shape}")
        return (shape[0], *out_spatial, shape[-1]), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        _check_rank(self, tuple(x.shape), self.rank)
        window, strides, padding = (1, *self.pool_size, 1), (1, *self.strides, 1), self.padding.upper()
        if self.reduction == "max" and self.padding == "valid" and self.strides == self.pool_size:
            return _max_over_tiles(x, self.pool_size), {}
        if self.reduction == "max":
            return jax.lax.reduce_window(x, _lowest(x.dtype), jax.lax.max, window, strides, padding), {}
        sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
        if self.padding == "valid":
            return sums / math.prod(self.pool_size), {}
        ones = jnp.ones((1, *x.shape[1:-1], 1), sums.dtype)
        counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, padding)
        return sums / counts, {}


@dataclasses.dataclass(frozen=True)
class MaxPooling1D(_Pooling):
    """Max over windows of steps of (batch, steps, channels) inputs."""

    rank: ClassVar[int] = 1
    reduction: ClassVar[str] = "max"


@dataclasses.dataclass(frozen=True)
class MaxPooling2D(_Pooling):
    """Max over spatial windows of (batch, height, width, channels) inputs."""

    rank: ClassVar[int] = 2
    reduction: ClassVar[str] = "max"


@dataclasses.dataclass(frozen=True)
class AveragePooling1D(_Pooling):
    """Mean over windows of steps of (batch, steps, channels) inputs."""

    rank: ClassVar[int] = 1
    reduction: ClassVar[str] = "average"


@dataclasses.dataclass(frozen=True)
class AveragePooling2D(_Pooling):
    """Mean over spatial windows of (batch, height, width, channels) inputs."""

    rank: ClassVar[int] = 2
    reduction: ClassVar[str] = "average"


@dataclasses.dataclass(frozen=True)
class _GlobalPooling(Layer):
    """Max or mean over all spatial axes: (batch, *spatial, channels) -> (batch, channels).

    `keepdims=True` keeps the spatial axes with size 1, as in Keras.
    """

    rank: ClassVar[int]
    reduction: ClassVar[str]

    keepdims: bool = False

    def init(self, key, input_shape):
        shape = as_shape(input_shape)
        _check_rank(self, shape, self.rank)
        return (shape[0], *((1,) * self.rank if self.keepdims else ()), shape[-1]), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        _check_rank(self, tuple(x.shape), self.rank)
        reduce = jnp.max if self.reduction == "max" else jnp.mean
        return reduce(x, axis=tuple(range(1, self.rank + 1)), keepdims=self.keepdims), {}


@dataclasses.dataclass(frozen=True)
class GlobalMaxPooling1D(_GlobalPooling):
    """Max over steps: (batch, steps, channels) -> (batch, channels)."""

    rank: ClassVar[int] = 1
    reduction: ClassVar[str] = "max"


@dataclasses.dataclass(frozen=True)
class GlobalMaxPooling2D(_GlobalPooling):
    """Max over height and width: (batch, height, width, channels) -> (batch, channels)."""

    rank: ClassVar[int] = 2
    reduction: ClassVar[str] = "max"


@dataclasses.dataclass(frozen=True)
class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over steps: (batch, steps, channels) -> (batch, channels).

    With a mask (from `Embedding(mask_zero=True)` before it in a model, or
    given as `{"inputs": x, "mask": m}`, m (batch, steps) True for real
    steps) it is the mean over the real steps only, as in Keras; a sequence
    without any real step gives zeros.
    """

    rank: ClassVar[int] = 1
    reduction: ClassVar[str] = "average"
    takes_mask = True

    def init(self, key, input_shape):
        return super().init(key, dict_inputs(self, input_shape, ("inputs", "mask"))[0])

    def apply(self, params, x, *, state=None, key=None, train=False):
        x, mask = dict_inputs(self, x, ("inputs", "mask"))
        if mask is None:
            return super().apply(params, x)
        _check_rank(self, tuple(x.shape), self.rank)
        if jnp.shape(mask) != tuple(x.shape[:2]):
            raise ShapeError(f"GlobalAveragePooling1D expects a mask of shape (batch, steps) = {tuple(x.shape[:2])}, "
                             f"got {jnp.shape(mask)}")
        weights = jnp.asarray(mask, x.dtype)[:, :, None]
        total = jnp.sum(x * weights, axis=1, keepdims=self.keepdims)
        return total / jnp.maximum(jnp.sum(weights, axis=1, keepdims=self.keepdims), 1), {}


@dataclasses.dataclass(frozen=True)
class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over height and width: (batch, height, width, channels) -> (batch, channels)."""

    rank: ClassVar[int] = 2
    reduction: ClassVar[str] = "average"


MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
