"""Symbolic tracing: what calling a layer on `jaxnn.Input` tensors records (Keras's functional API).

    x = jaxnn.Input(shape=(28, 28))
    h = Dense(32, "relu")(Flatten()(x))   # Layer.__call__ -> call_layer

Each call records a `Node` and works out its output shape with
`jax.eval_shape`, so layers that do not fit together fail where the graph is
written, naming both. `jaxnn.models.graph.Model` turns the nodes into a layer.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax

from jaxnn.layers.shapes import ShapeError, abstract_init, format_shape, is_shape

_creation = itertools.count()  # nodes sorted by creation are in topological order


def label(layer) -> str:
    """`'name' (Type)`: how messages name a layer in a graph."""
    return f"'{layer.name or layer.default_name}' ({type(layer).__name__})"


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """One call of `layer` on symbolic `inputs` (flat; `treedef` rebuilds the list/dict the layer takes)."""

    layer: Any
    inputs: tuple
    treedef: Any
    output_shape: Any
    params_spec: Any
    order: int = dataclasses.field(default_factory=lambda: next(_creation))


@dataclasses.dataclass(frozen=True, eq=False)
class SymbolicTensor:
    """A placeholder for an array in a graph: its `shape` (batch None) and the `node` that makes it.

    `index` picks one output of a node whose layer returns several (a nested model).
    """

    shape: tuple
    node: Node
    index: int = 0

    def __repr__(self):
        return f"SymbolicTensor(shape={format_shape(self.shape)}, from {label(self.node.layer)})"


def call_layer(layer, inputs):
    """Connect `layer` to symbolic `inputs` (one tensor, a list or a dict); returns its symbolic output(s)."""
    leaves, treedef = jax.tree_util.tree_flatten(inputs)
    if not leaves or not all(isinstance(t, SymbolicTensor) for t in leaves):
        got = type(inputs).__name__ if not leaves else ", ".join(sorted({type(t).__name__ for t in leaves}))
        raise ValueError(
            f"layer {label(layer)} was called on {got}: calling a layer builds a graph from jaxnn.Input tensors; "
            f"to compute on arrays use layer.apply(params, x)"
        )
    input_shape = treedef.unflatten([t.shape for t in leaves])
    try:
        output_shape, params_spec, _ = abstract_init(layer, input_shape)
    except ShapeError as e:
        sources = ", ".join(f"{label(t.node.layer)} {format_shape(t.shape)}" for t in leaves)
        raise ShapeError(f"layer {label(layer)} cannot take the output of {sources}: {e}") from None
    return node_outputs(Node(layer, tuple(leaves), treedef, output_shape, params_spec))


def node_outputs(node: Node):
    """The symbolic output(s) of `node`, structured like its layer's output (one tensor, a tuple, a dict)."""
    shapes, treedef = jax.tree_util.tree_flatten(node.output_shape, is_leaf=is_shape)
    return treedef.unflatten([SymbolicTensor(tuple(s), node, i) for i, s in enumerate(shapes)])
