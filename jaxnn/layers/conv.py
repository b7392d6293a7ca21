"""Convolutions over channels-last inputs: Conv1D, Conv2D, Conv1DTranspose, Conv2DTranspose.

Kernels are laid out as in Keras, so weights transfer by name: a convolution's
kernel is (*kernel_size, in_channels // groups, filters), a transposed one's
(*kernel_size, filters, in_channels). Output sizes follow Keras's rules.

>>> out_shape, params, _ = Conv2D(32, 3).init(jax.random.key(0), (None, 28, 28, 1))
>>> out_shape, params["kernel"].shape          # ((None, 26, 26, 32), (3, 3, 1, 32))
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp

from jaxnn import activations, initializers, validation
from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import ShapeError, as_shape

_SPATIAL = "DHW"  # lax dimension letters for up to three spatial axes


def normalize_tuple(layer: str, field: str, value, rank: int, minimum: int = 1) -> tuple:
    """`value` (one int or `rank` ints) as a tuple of `rank` ints >= `minimum`; ValueError naming the field otherwise."""
    items = (value,) * rank if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    validation.require(f"{layer} {field}", value,
                       len(items) == rank and all(validation.is_int(v) and v >= minimum for v in items),
                       f"an int or a tuple of {rank} ints, each >= {minimum}")
    return items


def check_padding(layer: str, padding, allowed: tuple[str, ...]):
    """ValueError unless `padding` is one of `allowed`."""
    if padding not in allowed:
        raise ValueError(f"{layer} padding must be one of {', '.join(map(repr, allowed))}, got {padding!r}")


def conv_output_length(length, window: int, padding: str, stride: int, dilation: int = 1):
    """Keras's output length of a sliding window: ceil(n / s) for 'same'/'causal', floor((n - k) / s) + 1 for 'valid'.

    `k` is the dilated window (window - 1) * dilation + 1; an unknown length (None) stays unknown.
    """
    if length is None:
        return None
    if padding in ("same", "causal"):
        return -(-length // stride)
    return (length - ((window - 1) * dilation + 1)) // stride + 1


def conv_transpose_output_length(length, kernel: int, padding: str, stride: int, dilation: int, output_padding):
    """Keras's output length of a transposed convolution (n * s for 'same', n * s + max(k - s, 0) for 'valid')."""
    if length is None:
        return None
    k = (kernel - 1) * dilation + 1
    if output_padding is None:
        return length * stride if padding == "same" else length * stride + max(k - stride, 0)
    return (length - 1) * stride + k - 2 * (k // 2 if padding == "same" else 0) + output_padding


def _conv_transpose_pads(kernel: int, padding: str, stride: int, dilation: int, output_padding) -> tuple[int, int]:
    """(left, right) padding of the stride-dilated input for `lax.conv_transpose` giving Keras's output size and offset."""
    k = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(k, stride) - k if output_padding is None else output_padding
        return k - 1, k - 1 + extra
    total = stride + k - 2 if output_padding is None else k + k % 2 - 2 + output_padding
    left = min(total // 2 + total % 2, k - 1)
    return left, total - left


@dataclasses.dataclass(frozen=True)
class _ConvBase(Layer):
    """Hyperparameters and checks shared by convolutions and transposed convolutions."""

    rank: ClassVar[int]
    paddings: ClassVar[tuple[str, ...]] = ("valid", "same")

    filters: int
    kernel_size: int | tuple
    strides: int | tuple = 1
    padding: str = "valid"
    _: dataclasses.KW_ONLY  # Keras's fifth positional argument is data_format: take the rest by name
    dilation_rate: int | tuple = 1
    activation: str | Callable | None = None
    use_bias: bool = True
    kernel_initializer: str | Callable = "glorot_uniform"
    bias_initializer: str | Callable = "zeros"

    def __post_init__(self):
        cls = type(self).__name__
        validation.positive_int(f"{cls} filters", self.filters)
        for field in ("kernel_size", "strides", "dilation_rate"):
            object.__setattr__(self, field, normalize_tuple(cls, field, getattr(self, field), self.rank))
        check_padding(cls, self.padding, self.paddings)
        activations.get(self.activation)
        initializers.get(self.kernel_initializer)
        initializers.get(self.bias_initializer)

    def _input_shape(self, input_shape) -> tuple:
        """The input shape, checked to be (batch, *spatial, channels) with known channels."""
        shape = as_shape(input_shape)
        if len(shape) != self.rank + 2 or shape[-1] is None:
            raise ShapeError(f"{type(self).__name__} expects inputs (batch, {'spatial, ' * self.rank}channels) with "
                             f"known channels, got input shape {shape}")
        return shape

    def _check_array(self, x, channels: int):
        if x.ndim != self.rank + 2 or x.shape[-1] != channels:
            raise ShapeError(f"{type(self).__name__} expects inputs (batch, {'spatial, ' * self.rank}{channels}), "
                             f"got shape {tuple(x.shape)}")

    def _dimension_numbers(self) -> tuple[str, str, str]:
        spatial = _SPATIAL[-self.rank:]
        return f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"

    def _params(self, key, kernel_shape) -> dict:
        k_kernel, k_bias = jax.random.split(key)
        params = {"kernel": initializers.get(self.kernel_initializer)(k_kernel, kernel_shape, jnp.float32)}
        if self.use_bias:
            params["bias"] = initializers.get(self.bias_initializer)(k_bias, (self.filters,), jnp.float32)
        return params

    def _finish(self, params, y):
        """Adds the bias and applies the activation."""
        if self.use_bias:
            y = y + params["bias"].astype(y.dtype)
        return activations.get(self.activation)(y)

    def _check_output(self, input_shape, out_spatial):
        if any(n is not None and n <= 0 for n in out_spatial):
            raise ShapeError(f"{type(self).__name__} with kernel_size={self.kernel_size}, strides={self.strides}, "
                             f"dilation_rate={self.dilation_rate}, padding={self.padding!r} leaves no output for "
                             f"input shape {input_shape}")


@dataclasses.dataclass(frozen=True)
class _Conv(_ConvBase):
    """N-d convolution `activation(conv(x, kernel) + bias)` with `jax.lax.conv_general_dilated`.

    `groups` splits the channels into groups convolved separately (depthwise
    when groups == in_channels); filters and in_channels must divide by it.
    Unlike Keras, strides > 1 and dilation_rate > 1 may be combined.
    """

    _: dataclasses.KW_ONLY
    groups: int = 1

    def __post_init__(self):
        super().__post_init__()
        cls = type(self).__name__
        validation.positive_int(f"{cls} groups", self.groups)
        if self.filters % self.groups:
            raise ValueError(f"{cls} filters must be divisible by groups, got filters={self.filters}, groups={self.groups}")

    def init(self, key, input_shape):
        shape = self._input_shape(input_shape)
        if shape[-1] % self.groups:
            raise ShapeError(f"{type(self).__name__} with groups={self.groups} needs input channels divisible by "
                             f"{self.groups}, got input shape {shape}")
        out_spatial = tuple(conv_output_length(n, k, self.padding, s, d) for n, k, s, d in
                            zip(shape[1:-1], self.kernel_size, self.strides, self.dilation_rate))
        self._check_output(shape, out_spatial)
        params = self._params(key, (*self.kernel_size, shape[-1] // self.groups, self.filters))
        return (shape[0], *out_spatial, self.filters), params, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        kernel = params["kernel"]
        self._check_array(x, kernel.shape[-2] * self.groups)
        if self.padding == "causal":  # left-pad so step t sees only steps <= t
            padding = [((self.kernel_size[0] - 1) * self.dilation_rate[0], 0)]
        else:
            padding = self.padding.upper()
        y = jax.lax.conv_general_dilated(
            x, kernel.astype(x.dtype), window_strides=self.strides, padding=padding,
            rhs_dilation=self.dilation_rate, dimension_numbers=self._dimension_numbers(),
            feature_group_count=self.groups)
        return self._finish(params, y), {}


@dataclasses.dataclass(frozen=True)
class Conv1D(_Conv):
    """1-d convolution over (batch, steps, channels); padding 'valid', 'same' or 'causal' (output t sees inputs <= t)."""

    rank: ClassVar[int] = 1
    paddings: ClassVar[tuple[str, ...]] = ("valid", "same", "causal")


@dataclasses.dataclass(frozen=True)
class Conv2D(_Conv):
    """2-d convolution over (batch, height, width, channels)."""

    rank: ClassVar[int] = 2


@dataclasses.dataclass(frozen=True)
class _ConvTranspose(_ConvBase):
    """N-d transposed convolution (the gradient of a convolution), upsampling by `strides`.

    Each input position scatters `kernel`-weighted copies into the output at
    stride steps: y[i*s + a*d - offset] += x[i] @ kernel[a].T. Output sizes
    follow Keras: n * s for 'same', n * s + max(k - s, 0) for 'valid', or
    (n - 1) * s + k - 2 * pad + output_padding when `output_padding` is given.
    """

    _: dataclasses.KW_ONLY
    output_padding: int | tuple | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.output_padding is not None:
            cls = type(self).__name__
            padding = normalize_tuple(cls, "output_padding", self.output_padding, self.rank, minimum=0)
            if any(p >= s for p, s in zip(padding, self.strides)):
                raise ValueError(f"{cls} output_padding must be smaller than strides, got "
                                 f"output_padding={padding}, strides={self.strides}")
            object.__setattr__(self, "output_padding", padding)

    def _output_paddings(self) -> tuple:
        return self.output_padding or (None,) * self.rank

    def init(self, key, input_shape):
        shape = self._input_shape(input_shape)
        out_spatial = tuple(conv_transpose_output_length(n, k, self.padding, s, d, p) for n, k, s, d, p in
                            zip(shape[1:-1], self.kernel_size, self.strides, self.dilation_rate, self._output_paddings()))
        self._check_output(shape, out_spatial)
        params = self._params(key, (*self.kernel_size, self.filters, shape[-1]))
        return (shape[0], *out_spatial, self.filters), params, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        kernel = params["kernel"]
        self._check_array(x, kernel.shape[-1])
        padding = [_conv_transpose_pads(k, self.padding, s, d, p) for k, s, d, p in
                   zip(self.kernel_size, self.strides, self.dilation_rate, self._output_paddings())]
        y = jax.lax.conv_transpose(
            x, kernel.astype(x.dtype), self.strides, padding, rhs_dilation=self.dilation_rate,
            dimension_numbers=self._dimension_numbers(), transpose_kernel=True)
        return self._finish(params, y), {}


@dataclasses.dataclass(frozen=True)
class Conv1DTranspose(_ConvTranspose):
    """1-d transposed convolution over (batch, steps, channels)."""

    rank: ClassVar[int] = 1


@dataclasses.dataclass(frozen=True)
class Conv2DTranspose(_ConvTranspose):
    """2-d transposed convolution over (batch, height, width, channels), e.g. a GAN generator's upsampling."""

    rank: ClassVar[int] = 2
