"""Merge layers: combine a list of inputs into one (Keras's Add, Subtract, ..., Concatenate).

Their `init` takes a list of shapes and `apply` a list of arrays, so in a graph
they are called on a list of symbolic tensors:

    merged = Add()([Dense(8)(x), Dense(8)(y)])
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, ClassVar

import jax.numpy as jnp

from jaxnn import validation
from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import ShapeError, as_shape


def _fmt(shapes) -> str:
    return ", ".join(str(tuple(s)) for s in shapes)


def _shapes_of(xs):
    """Array shapes of a list of inputs (a lone array gives its own shape, which `_shape_list` rejects).

    A symbolic dimension (an exported model's batch) reads as None, as in a layer's input shape.
    """
    shape = lambda x: tuple(d if isinstance(d, int) else None for d in x.shape)
    return [shape(x) for x in xs] if isinstance(xs, (list, tuple)) else shape(xs)


def _shape_list(layer: Layer, input_shapes, count: int | None) -> list[tuple]:
    """The list of input shapes a merge layer takes: at least two, or exactly `count`."""
    if not isinstance(input_shapes, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in input_shapes):
        raise ShapeError(f"{type(layer).__name__} takes a list of inputs, got a single input of shape {input_shapes}")
    wanted = f"exactly {count}" if count else "at least 2"
    if len(input_shapes) < 2 or (count and len(input_shapes) != count):
        raise ShapeError(f"{type(layer).__name__} takes {wanted} inputs, got {len(input_shapes)}: {_fmt(input_shapes)}")
    return [as_shape(s) for s in input_shapes]


def _all_masks(masks):
    """The steps real in every input: the AND of the inputs' masks (None when none has one)."""
    masks = [m for m in masks or () if m is not None]
    return functools.reduce(jnp.logical_and, masks) if masks else None


@dataclasses.dataclass(frozen=True)
class _Elementwise(Layer):
    """Applies `op` across inputs of one shape (batch dimensions may differ in None vs a size)."""

    op: ClassVar[Callable]
    count: ClassVar[int | None] = None
    supports_masking = True

    def init(self, key, input_shapes):
        shapes = _shape_list(self, input_shapes, self.count)
        if len({s[1:] for s in shapes}) > 1:
            raise ShapeError(f"{type(self).__name__} needs inputs of one shape, got {_fmt(shapes)}")
        return shapes[0], {}, {}

    def apply(self, params, xs, *, state=None, key=None, train=False):
        shapes = _shape_list(self, _shapes_of(xs), self.count)
        if len(set(shapes)) > 1:
            raise ShapeError(f"{type(self).__name__} needs inputs of one shape, got {_fmt(shapes)}")
        return type(self).op(list(xs)), {}

    def compute_mask(self, inputs, mask=None):
        return _all_masks(mask)


@dataclasses.dataclass(frozen=True)
class Add(_Elementwise):
    """Sum of the inputs."""

    op = staticmethod(lambda xs: functools.reduce(jnp.add, xs))


@dataclasses.dataclass(frozen=True)
class Subtract(_Elementwise):
    """First input minus the second (exactly two inputs)."""

    op = staticmethod(lambda xs: xs[0] - xs[1])
    count = 2


@dataclasses.dataclass(frozen=True)
class Multiply(_Elementwise):
    """Elementwise product of the inputs."""

    op = staticmethod(lambda xs: functools.reduce(jnp.multiply, xs))


@dataclasses.dataclass(frozen=True)
class Average(_Elementwise):
    """Elementwise mean of the inputs."""

    op = staticmethod(lambda xs: functools.reduce(jnp.add, xs) / len(xs))


@dataclasses.dataclass(frozen=True)
class Maximum(_Elementwise):
    """Elementwise maximum of the inputs."""

    op = staticmethod(lambda xs: functools.reduce(jnp.maximum, xs))


@dataclasses.dataclass(frozen=True)
class Minimum(_Elementwise):
    """Elementwise minimum of the inputs."""

    op = staticmethod(lambda xs: functools.reduce(jnp.minimum, xs))


@dataclasses.dataclass(frozen=True)
class Concatenate(Layer):
    """Joins the inputs along `axis` (default the last); the other dimensions must agree."""

    supports_masking = True

    axis: int = -1

    def __post_init__(self):
        validation.require("Concatenate axis", self.axis, validation.is_int(self.axis) and self.axis != 0,
                           "a non-batch axis (an int other than 0)")

    def _output_shape(self, shapes: list[tuple]) -> tuple:
        rank = len(shapes[0])
        if not -rank < self.axis < rank or any(len(s) != rank for s in shapes):
            raise ShapeError(f"Concatenate(axis={self.axis}) needs inputs of one rank > |axis|, got {_fmt(shapes)}")
        axis = self.axis % rank
        others = {s[:axis] + s[axis + 1:] for s in shapes}
        if len({o[1:] for o in others}) > 1:
            raise ShapeError(f"Concatenate(axis={self.axis}) needs inputs that agree off that axis, got {_fmt(shapes)}")
        sizes = [s[axis] for s in shapes]
        joined = None if None in sizes else sum(sizes)
        return shapes[0][:axis] + (joined,) + shapes[0][axis + 1:]

    def init(self, key, input_shapes):
        return self._output_shape(_shape_list(self, input_shapes, None)), {}, {}

    def apply(self, params, xs, *, state=None, key=None, train=False):
        self._output_shape(_shape_list(self, _shapes_of(xs), None))
        return jnp.concatenate(list(xs), axis=self.axis), {}

    def compute_mask(self, inputs, mask=None):
        """Along the time axis the masks are joined too (all steps of an input without one are real);
        along another axis a step is real where it is in every input."""
        if mask is None or all(m is None for m in mask):
            return None
        if self.axis % inputs[0].ndim == 1:
            return jnp.concatenate([jnp.ones(x.shape[:2], bool) if m is None else m for x, m in zip(inputs, mask)],
                                   axis=1)
        return _all_masks(mask)
