"""The layer protocol: an immutable description with pure `init` and `apply`.

    output_shape, params, state = layer.init(key, (None, 28, 28))
    y, new_state = layer.apply(params, x, state=state, key=key, train=True)

Shapes carry the batch dimension as None. `params` (trained) and `state`
(non-trained, e.g. BatchNorm statistics) are nested dicts of arrays; a layer
without any returns `{}`.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax

Shape = tuple
Params = dict
State = dict


class ShapeError(ValueError):
    """A shape that does not fit a layer; `path` names the layer inside its model."""

    def __init__(self, message: str, path: tuple[str, ...] = ()):
        self.message = message
        self.path = path
        super().__init__(f"{'/'.join(path)}: {message}" if path else message)

    def within(self, name: str) -> "ShapeError":
        return ShapeError(self.message, (name, *self.path))


def snake_case(name: str) -> str:
    """Keras-style default layer name: `Conv2D` -> `conv2d`, `BatchNormalization` -> `batch_normalization`."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def count_params(tree) -> int:
    """Number of scalars in a pytree of arrays (or ShapeDtypeStructs)."""
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))


def as_shape(input_shape) -> Shape:
    """A shape tuple with the batch dimension first (None or an int)."""
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except TypeError:
        raise ShapeError(f"input_shape must be a tuple of ints (batch as None), got {input_shape!r}") from None
    if any(d is not None and d <= 0 for d in shape):
        raise ShapeError(f"input_shape dimensions must be positive, got {shape}")
    return shape


@dataclasses.dataclass(frozen=True)
class Layer:
    """Base of all layers: a frozen, hashable description of hyperparameters.

    Subclasses are frozen dataclasses that implement `init` and `apply`;
    `name` names the layer's parameters inside a model (default: the snake-case
    class name, numbered by the model when repeated, as in Keras).
    """

    name: str | None = dataclasses.field(default=None, kw_only=True)

    def init(self, key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        """Parameters and state for inputs of `input_shape`; returns the output shape too."""
        raise NotImplementedError(f"{type(self).__name__} must define init")

    def apply(self, params: Params, x, *, state: State | None = None, key=None, train: bool = False):
        """Forward pass `(params, x) -> (y, new_state)`; pure, jittable."""
        raise NotImplementedError(f"{type(self).__name__} must define apply")

    def __call__(self, inputs):
        """Call on symbolic tensors (from `jaxnn.Input`) to build a graph model; returns symbolic outputs."""
        from jaxnn.functional import call_layer  # the graph builder sits above the layers

        return call_layer(self, inputs)

    @property
    def default_name(self) -> str:
        return snake_case(type(self).__name__)

    def output_shape(self, input_shape: Shape) -> Shape:
        """Output shape without computing anything (parameters are only traced)."""
        return abstract_init(self, input_shape)[0]

    def summary_rows(self, name: str, input_shape: Shape, params, state) -> list[dict[str, Any]]:
        """Rows for `summary`: one per layer; containers give one per child."""
        return [{
            "name": name,
            "type": type(self).__name__,
            "output_shape": self.output_shape(input_shape),
            "trainable": count_params(params),
            "non_trainable": count_params(state),
            "inputs": (),
        }]


def abstract_init(layer: Layer, input_shape: Shape) -> tuple[Shape, Params, State]:
    """`layer.init` under `jax.eval_shape`: output shape and ShapeDtypeStruct trees, no compute."""
    box = {}

    def init(key):
        out_shape, params, state = layer.init(key, as_shape(input_shape))
        box["shape"] = out_shape
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    return box["shape"], params, state


def require_rank(layer: Layer, shape: tuple, axes: tuple[str, ...], what: str = "inputs") -> None:
    """A ShapeError naming the layer, the axes it expects and the shape it got, unless `shape` has len(axes) axes."""
    if len(shape) != len(axes):
        raise ShapeError(f"{type(layer).__name__} expects {what} ({', '.join(axes)}), got shape {tuple(shape)}")


def require_key(layer_name: str, key):
    """A layer that draws random numbers in training says so if `key` is missing."""
    if key is None:
        raise ValueError(
            f"{layer_name} draws random numbers when train=True: pass key=jax.random.key(...) to apply"
        )
    return key
