"""Activation layers with options or parameters: ReLU, LeakyReLU, PReLU, RReLU, ELU, Softmax.

Plain activations by name go through `Activation("relu")` (core.py); these
layers carry hyperparameters (Keras's defaults), a learned slope (PReLU) or a
random one (RReLU).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn import activations, initializers, validation
from jaxnn.layers.base import Layer, require_key
from jaxnn.layers.shapes import ShapeError, as_shape


def _check_number(layer: str, field: str, value, minimum: float | None = 0.0, allow_none: bool = False):
    """A real number >= minimum (None allowed where the option is optional)."""
    if value is None and allow_none:
        return
    bound = f" >= {minimum}" if minimum is not None else ""
    validation.require(f"{layer} {field}", value,
                       validation.is_number(value) and (minimum is None or value >= minimum),
                       f"a number{bound}{' or None' if allow_none else ''}")


@dataclasses.dataclass(frozen=True)
class _Elementwise(Layer):
    """Shape-preserving layer without parameters."""

    supports_masking = True

    def init(self, key, input_shape):
        return as_shape(input_shape), {}, {}


@dataclasses.dataclass(frozen=True)
class ReLU(_Elementwise):
    """Keras's ReLU layer: x above `threshold` (capped at `max_value`), negative_slope * (x - threshold) below."""

    max_value: float | None = None
    negative_slope: float = 0.0
    threshold: float = 0.0

    def __post_init__(self):
        _check_number("ReLU", "max_value", self.max_value, allow_none=True)
        _check_number("ReLU", "negative_slope", self.negative_slope)
        _check_number("ReLU", "threshold", self.threshold)

    def apply(self, params, x, *, state=None, key=None, train=False):
        return activations.relu(x, self.negative_slope, self.max_value, self.threshold), {}


@dataclasses.dataclass(frozen=True)
class LeakyReLU(_Elementwise):
    """x for x >= 0, negative_slope * x otherwise; Keras's layer default slope is 0.3 (its function's is 0.2)."""

    negative_slope: float = 0.3

    def __post_init__(self):
        _check_number("LeakyReLU", "negative_slope", self.negative_slope)

    def apply(self, params, x, *, state=None, key=None, train=False):
        return activations.leaky_relu(x, self.negative_slope), {}


@dataclasses.dataclass(frozen=True)
class ELU(_Elementwise):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    alpha: float = 1.0

    def __post_init__(self):
        _check_number("ELU", "alpha", self.alpha, minimum=None)

    def apply(self, params, x, *, state=None, key=None, train=False):
        return activations.elu(x, self.alpha), {}


@dataclasses.dataclass(frozen=True)
class Softmax(Layer):
    """Softmax over `axis` (default the last); the batch axis 0 is not allowed."""

    axis: int = -1

    def __post_init__(self):
        validation.require("Softmax axis", self.axis, validation.is_int(self.axis) and self.axis != 0,
                           "a non-zero int (0 is the batch axis)")

    def init(self, key, input_shape):
        input_shape = as_shape(input_shape)
        if not -len(input_shape) < self.axis < len(input_shape):
            raise ShapeError(f"Softmax axis {self.axis} is not a non-batch axis of input shape {input_shape}")
        return input_shape, {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return activations.softmax(x, axis=self.axis), {}


@dataclasses.dataclass(frozen=True)
class PReLU(Layer):
    """Parametric ReLU (He et al. 2015): x for x >= 0, alpha * x otherwise, with `alpha` learned.

    One slope per non-batch element by default, as Keras; `shared_axes` (axes
    counted with the batch as 0, e.g. (1, 2) for images (batch, h, w, c)) share
    one slope along those axes, leaving e.g. one slope per channel. `alpha`
    starts at zeros (Keras's default), i.e. as a ReLU.
    """

    supports_masking = True

    alpha_initializer: str | Callable = "zeros"
    shared_axes: tuple | int | None = None

    def __post_init__(self):
        initializers.get(self.alpha_initializer)
        axes = self.shared_axes
        if axes is not None:
            axes = (axes,) if isinstance(axes, int) else tuple(axes)
            validation.require("PReLU shared_axes", self.shared_axes, all(validation.is_int(a) and a >= 1 for a in axes),
                               "ints >= 1 (0 is the batch axis)")
            object.__setattr__(self, "shared_axes", axes)

    def _alpha_shape(self, input_shape):
        shared = self.shared_axes or ()
        if any(a >= len(input_shape) for a in shared):
            raise ShapeError(f"PReLU shared_axes {shared} do not fit input shape {input_shape}")
        shape = tuple(1 if i in shared else d for i, d in enumerate(input_shape) if i > 0)
        if any(d is None for d in shape):
            raise ShapeError(f"PReLU needs known non-batch dimensions outside shared_axes, got input shape {input_shape}")
        return shape

    def init(self, key, input_shape):
        input_shape = as_shape(input_shape)
        alpha = initializers.get(self.alpha_initializer)(key, self._alpha_shape(input_shape), jnp.float32)
        return input_shape, {"alpha": alpha}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        alpha = params["alpha"]
        if x.ndim != alpha.ndim + 1 or any(a not in (1, d) for a, d in zip(alpha.shape, x.shape[1:])):
            raise ShapeError(f"PReLU with alpha shaped {alpha.shape} cannot apply to inputs shaped {tuple(x.shape)}")
        return jnp.where(x >= 0, x, alpha.astype(x.dtype) * x), {}


@dataclasses.dataclass(frozen=True)
class RReLU(_Elementwise):
    """Randomized leaky ReLU (Xu et al. 2015, as PyTorch's RReLU).

    Negative inputs are scaled by a slope drawn per element from U(lower, upper)
    in training (needs `key`), and by the fixed mean slope (lower + upper) / 2 at
    inference; non-negative inputs pass unchanged.
    """

    lower: float = 1.0 / 8.0
    upper: float = 1.0 / 3.0

    def __post_init__(self):
        _check_number("RReLU", "lower", self.lower)
        _check_number("RReLU", "upper", self.upper)
        if self.lower > self.upper:
            raise ValueError(f"RReLU needs lower <= upper, got lower={self.lower!r} and upper={self.upper!r}")

    def apply(self, params, x, *, state=None, key=None, train=False):
        if train:
            key = require_key(self.name or self.default_name, key)
            slope = jax.random.uniform(key, x.shape, x.dtype, self.lower, self.upper)
        else:
            slope = jnp.asarray((self.lower + self.upper) / 2.0, x.dtype)
        return jnp.where(x >= 0, x, slope * x), {}
