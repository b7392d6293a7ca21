"""`Sequential`: a stack of layers applied in order, itself a layer."""
from __future__ import annotations

import dataclasses

import jax

from jaxnn.layers.base import Layer, apply_masked
from jaxnn.layers.input import InputLayer
from jaxnn.layers.shapes import ShapeError, as_shape
from jaxnn.layers.symbolic import SymbolicTensor
from jaxnn.models.children import batch_first, frozen_rows, init_child, summary_row, unique_names
from jaxnn.models.summary import summary as summary_table


@dataclasses.dataclass(frozen=True, eq=False)
class Sequential(Layer):
    """A stack of layers applied in order; a layer itself, so it nests.

    Parameters and state are dicts keyed by layer name (`params["dense"]["kernel"]`).
    Build it from a list, or grow it like Keras with `model.add(layer)`:
    `add` is the one mutation jaxnn allows, meant for building before `init`.
    Equality and hashing are by identity for that reason.
    A mask made by a layer (`Embedding(mask_zero=True)`) reaches the layers
    after it as in Keras (see `jaxnn.layers.base`); it stays inside the model.
    """

    layers: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(_from_input(layer, i) for i, layer in enumerate(self.layers)))
        for layer in self.layers:
            _check_is_layer(layer)
        unique_names(self.layers)

    def add(self, layer: Layer) -> "Sequential":
        """Append `layer` (Keras's `model.add`); returns the model for chaining."""
        _check_is_layer(layer)
        unique_names((*self.layers, layer))
        object.__setattr__(self, "layers", (*self.layers, layer))
        return self

    def named_layers(self) -> list[tuple[str, Layer]]:
        return list(zip(unique_names(self.layers), self.layers))

    def init(self, key, input_shape):
        if not self.layers:
            raise ValueError(f"{self.name or 'sequential'} has no layers: add some before init")
        shape = batch_first(self, input_shape)
        params, state = {}, {}
        for (name, layer), k in zip(self.named_layers(), jax.random.split(key, len(self.layers))):
            shape = init_child(name, layer, k, shape, params, state)
        return shape, params, state

    def apply(self, params, x, *, state=None, key=None, train=False):
        state = state or {}
        named = self.named_layers()
        keys = jax.random.split(key, len(named)) if key is not None else [None] * len(named)
        new_state, mask = {}, None
        for (name, layer), k in zip(named, keys):
            try:
                x, s, mask = apply_masked(layer, name, params.get(name, {}), x, mask, state=state.get(name, {}),
                                          key=k, train=train)
            except ShapeError as e:
                raise e.within(name) from None
            if s:
                new_state[name] = s
        return x, new_state

    def summary_rows(self, name, input_shape, params, state):
        """One row per layer; a nested model (Sequential or functional) is one row, as in Keras."""
        rows, shape = [], as_shape(input_shape)
        for child_name, layer in self.named_layers():
            child = (params.get(child_name, {}), state.get(child_name, {}))
            if hasattr(layer, "named_layers"):
                rows.append(summary_row(child_name, layer, layer.output_shape(shape), *child))
            else:
                rows += layer.summary_rows(child_name, shape, *child)
            shape = layer.output_shape(shape)
        return rows if self.trainable else frozen_rows(rows)

    def summary(self, input_shape=None, *, print_fn=print) -> str:
        """Print (and return) the Keras-style table for inputs of `input_shape` (no batch dimension);
        without it, the shape of an `Input` the model starts with: `Sequential([jaxnn.Input((28, 28)), ...])`."""
        if input_shape is None:
            first = self.layers[0] if self.layers else None
            if not isinstance(first, InputLayer):
                raise ValueError(f"{self.name or 'sequential'}.summary needs the input shape without the batch "
                                 f"dimension, e.g. summary((28, 28)), since its first layer is no Input")
            input_shape = first.shape
        return summary_table(self, input_shape, print_fn=print_fn)


def _from_input(layer, index: int):
    """`jaxnn.Input(shape)` as a first layer (Keras's habit) stands for its InputLayer."""
    if isinstance(layer, SymbolicTensor) and isinstance(layer.node.layer, InputLayer) and index == 0:
        return layer.node.layer
    return layer


def _check_is_layer(layer):
    if not isinstance(layer, Layer):
        raise ValueError(f"Sequential takes jaxnn layers, got {type(layer).__name__}: {layer!r}")
