"""Shapes with the batch dimension as None, and the error a shape that does not fit raises.

The lowest module of `layers/`: the protocol (`base`) and the symbolic
tracing (`symbolic`) both build on it, so neither needs the other's import.
"""
from __future__ import annotations

import jax

Shape = tuple


class ShapeError(ValueError):
    """A shape that does not fit a layer; `path` names the layer inside its model."""

    def __init__(self, message: str, path: tuple[str, ...] = ()):
        self.message = message
        self.path = path
        super().__init__(f"{'/'.join(path)}: {message}" if path else message)

    def within(self, name: str) -> "ShapeError":
        return ShapeError(self.message, (name, *self.path))


def as_shape(input_shape) -> Shape:
    """A shape tuple with the batch dimension first (None or an int)."""
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except TypeError:
        raise ShapeError(f"input_shape must be a tuple of ints (batch as None), got {input_shape!r}") from None
    if any(d is not None and d <= 0 for d in shape):
        raise ShapeError(f"input_shape dimensions must be positive, got {shape}")
    return shape


def is_shape(value) -> bool:
    """A shape is a tuple (or list) of ints and Nones; arrays and tuples, lists or dicts of shapes are not."""
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, int) for d in value)


def format_shape(shape) -> str:
    """`(None, 28, 28)` for a shape; a structure of shapes as Python prints it."""
    return str(tuple(shape)) if is_shape(shape) else str(shape)


def _is_structure(input_shape) -> bool:
    """A dict, or a list/tuple holding shapes (merge layers, multi-input models), rather than one shape."""
    return isinstance(input_shape, dict) or (
        isinstance(input_shape, (list, tuple)) and any(isinstance(d, (list, tuple, dict)) for d in input_shape))


def abstract_init(layer, input_shape) -> tuple:
    """`layer.init` under `jax.eval_shape`: output shape and ShapeDtypeStruct trees, no compute.

    `input_shape` is one shape or a list/tuple/dict of shapes (merge layers,
    models with several inputs).
    """
    box = {}

    def init(key):
        shape = input_shape if _is_structure(input_shape) else as_shape(input_shape)
        box["shape"], params, state = layer.init(key, shape)
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    return box["shape"], params, state
