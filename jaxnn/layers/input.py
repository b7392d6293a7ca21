"""The entry of a graph model: `Input(shape=...)` is a symbolic tensor made by an `InputLayer`."""
from __future__ import annotations

import dataclasses

from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import as_shape
from jaxnn.layers.symbolic import Node, SymbolicTensor


@dataclasses.dataclass(frozen=True, eq=False)
class InputLayer(Layer):
    """The entry of a graph: the per-example `shape` (no batch dimension); the identity when applied."""

    shape: tuple

    def __post_init__(self):
        shape = tuple(self.shape) if isinstance(self.shape, (list, tuple)) else self.shape
        if not isinstance(shape, tuple) or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
            raise ValueError(f"Input shape must be a tuple of positive ints or None (no batch dimension), got {self.shape!r}")
        object.__setattr__(self, "shape", shape)

    def init(self, key, input_shape):
        return as_shape(input_shape), {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        return x, {}


def Input(shape, *, name: str | None = None) -> SymbolicTensor:  # noqa: N802 (Keras's spelling)
    """A symbolic input of per-example `shape` (Keras's `Input`): `Input(shape=(28, 28), name="image")`."""
    layer = InputLayer(shape, name=name)
    full = (None, *layer.shape)
    return SymbolicTensor(full, Node(layer, (), None, full, {}))
