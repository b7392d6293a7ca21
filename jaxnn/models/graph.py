"""The functional `Model` (Keras's Functional API): a graph of layers called on symbolic tensors.

    x = jaxnn.Input(shape=(28, 28), name="image")
    h = Dense(32, "relu")(Flatten()(x))
    out = Dense(10, "softmax")(h)
    model = jaxnn.Model(inputs=x, outputs=out, name="mlp")
    _, params, state = model.init(jax.random.key(0), (None, 28, 28))
    probs, _ = model.apply(params, images)

The graph is checked once, where the model is written (connected, shared
layers consistent). A layer object called twice is one shared layer with one
entry in `params`. A `Model` is a layer: it nests in models and in `Sequential`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.layers.base import Layer, apply_masked
from jaxnn.layers.input import InputLayer
from jaxnn.layers.shapes import ShapeError, abstract_init, format_shape, is_shape
from jaxnn.layers.symbolic import Node, SymbolicTensor, label, node_outputs
from jaxnn.models.children import batch_first, frozen_rows, init_child, summary_row, unique_names
from jaxnn.models.summary import summary as summary_table


@dataclasses.dataclass(frozen=True)
class _Graph:
    """What a Model computes, worked out once: nodes in order, layer names, inputs and outputs."""

    nodes: list            # every node the outputs need, topologically sorted (inputs included)
    names: dict            # id(layer) -> unique name
    calls: dict            # id(layer) -> its nodes, in order
    layers: list           # distinct layers in order of first call
    input_keys: list       # names the inputs go by in apply (dict keys or Input names)
    input_tensors: list
    output_tensors: list
    output_treedef: Any


def _normalize(tensors, what: str):
    """One tensor, a tuple (from a list or tuple) or a dict of tensors; anything else is an error."""
    if isinstance(tensors, list):
        tensors = tuple(tensors)
    items = list(tensors.values() if isinstance(tensors, dict) else tensors if isinstance(tensors, tuple) else [tensors])
    bad = [t for t in items if not isinstance(t, SymbolicTensor)]
    if not items or bad:
        raise ValueError(f"Model {what} must be a symbolic tensor (jaxnn.Input or a layer called on one) or a "
                         f"list/tuple or dict of them, got {_describe(bad[0]) if bad else 'none'}")
    return tensors


def _reachable(tensors) -> list[Node]:
    """Every node `tensors` depend on, in creation (= topological) order."""
    seen, stack = {}, [t.node for t in tensors]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            stack.extend(t.node for t in node.inputs)
    return sorted(seen.values(), key=lambda n: n.order)


def _check_shared(graph: _Graph):
    """A shared layer must need the same parameters at every call (Dense on 3 and on 5 features cannot share)."""
    for layer in graph.layers:
        calls = graph.calls[id(layer)]
        specs = [jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), n.params_spec) for n in calls]
        for node, spec in zip(calls[1:], specs[1:]):
            if spec != specs[0]:
                shape_of = lambda n: ", ".join(format_shape(t.shape) for t in n.inputs)
                raise ShapeError(
                    f"shared layer '{graph.names[id(layer)]}' needs the same parameters at every call: on inputs "
                    f"{shape_of(calls[0])} its params are {_param_shapes(calls[0])}, on {shape_of(node)} {_param_shapes(node)}"
                )


def _param_shapes(node: Node) -> str:
    flat = jax.tree_util.tree_flatten_with_path(node.params_spec)[0]
    return "{" + ", ".join(f"{jax.tree_util.keystr(p, simple=True, separator='/')}: {format_shape(s.shape)}"
                           for p, s in flat) + "}"


def _build_graph(inputs, outputs) -> _Graph:
    if isinstance(inputs, dict):
        input_keys = sorted(inputs)
        input_tensors = [inputs[k] for k in input_keys]
    else:
        input_tensors = jax.tree_util.tree_leaves(inputs)
    for t in input_tensors:
        if not isinstance(t.node.layer, InputLayer):
            raise ValueError(f"Model inputs must come from jaxnn.Input(...), got the output of {label(t.node.layer)}")
    if len({id(t) for t in input_tensors}) < len(input_tensors):
        raise ValueError("Model inputs list the same Input twice")
    output_tensors, output_treedef = jax.tree_util.tree_flatten(outputs)
    nodes = _reachable(output_tensors)
    layers = list({id(n.layer): n.layer for n in nodes}.values())
    names = dict(zip(map(id, layers), unique_names(layers)))
    calls = {id(layer): [n for n in nodes if n.layer is layer] for layer in layers}
    if not isinstance(inputs, dict):
        input_keys = [names.get(id(t.node.layer)) or t.node.layer.name or "input_layer" for t in input_tensors]
    graph = _Graph(nodes, names, calls, layers, input_keys, input_tensors, output_tensors, output_treedef)
    _check_connected(graph)
    _check_shared(graph)
    return graph


def _check_connected(graph: _Graph):
    """Every input reaches an output and every output is computable from the inputs alone."""
    given = {id(t.node) for t in graph.input_tensors}
    needed = {id(n) for n in graph.nodes}
    for key, t in zip(graph.input_keys, graph.input_tensors):
        if id(t.node) not in needed:
            raise ValueError(f"graph disconnected: input '{key}' {format_shape(t.shape)} does not reach any output; "
                             f"use it or leave it out of the model's inputs")
    for node in graph.nodes:
        if isinstance(node.layer, InputLayer) and id(node) not in given:
            missing = graph.names[id(node.layer)]
            out = next(t for t in graph.output_tensors if node in _reachable([t]))
            user = next((n for n in graph.nodes if any(t.node is node for t in n.inputs)), None)
            needs = f"layer '{graph.names[id(user.layer)]}' needs" if user else "it is"
            raise ValueError(
                f"graph disconnected: cannot compute output '{graph.names[id(out.node.layer)]}' "
                f"{format_shape(out.shape)}: "
                f"{needs} input '{missing}' {format_shape(node.output_shape)}, "
                f"which is not among the model's inputs ({', '.join(graph.input_keys)})"
            )


@dataclasses.dataclass(frozen=True, eq=False)
class Model(Layer):
    """A graph of layers from `inputs` to `outputs` (Keras's functional `Model`); a layer itself.

    `inputs`/`outputs` are one symbolic tensor, a list/tuple, or a dict of them.
    `apply` takes one array for one input, else a tuple/list (in order) or a dict
    (keyed like the `inputs` dict, or by Input names); it returns one array, a
    tuple or a dict, like `outputs`. `params` and `state` are keyed by layer name.
    Equality and hashing are by identity. A mask made by a layer
    (`Embedding(mask_zero=True)`) follows the graph's edges as in Keras.
    """

    inputs: Any
    outputs: Any

    def __post_init__(self):
        object.__setattr__(self, "inputs", _normalize(self.inputs, "inputs"))
        object.__setattr__(self, "outputs", _normalize(self.outputs, "outputs"))
        self._graph  # validate the graph now, where the model is written

    @functools.cached_property
    def _graph(self) -> _Graph:
        return _build_graph(self.inputs, self.outputs)

    @property
    def default_name(self) -> str:
        return "functional"

    def named_layers(self) -> list[tuple[str, Layer]]:
        """(name, layer) for each distinct layer, Inputs included, in call order."""
        return [(self._graph.names[id(layer)], layer) for layer in self._graph.layers]

    @property
    def layers(self) -> list[Layer]:
        """The distinct layers, Inputs included, in call order (Keras's `model.layers`)."""
        return [layer for _, layer in self.named_layers()]

    def get_layer(self, name: str) -> Layer:
        """The layer called `name` (Keras's `get_layer`)."""
        layers = dict(self.named_layers())
        if name not in layers:
            raise ValueError(f"no layer {name!r} in model {self.name or self.default_name}; layers: {', '.join(layers)}")
        return layers[name]

    def output_of(self, name: str, call: int = 0) -> SymbolicTensor:
        """The symbolic output of layer `name` (its `call`-th use): `Model(base.inputs, base.output_of("flatten"))`."""
        nodes = self._graph.calls[id(self.get_layer(name))]
        if not 0 <= call < len(nodes):
            raise ValueError(f"layer {name!r} is called {len(nodes)} time(s), got call={call}")
        return node_outputs(nodes[call])

    @property
    def input_shape(self):
        """The declared input shape(s) with batch None, structured like `inputs`."""
        return self._structure(self.inputs, lambda t: t.shape)

    def _structure(self, tensors, fn):
        if isinstance(tensors, dict):
            return {k: fn(t) for k, t in tensors.items()}
        return fn(tensors) if isinstance(tensors, SymbolicTensor) else tuple(fn(t) for t in tensors)

    def _flat_inputs(self, value, what: str) -> list:
        """`value` (one per input: an array or a shape) as a flat list in the graph's input order."""
        keys = self._graph.input_keys
        if isinstance(self.inputs, SymbolicTensor):
            return [value]
        if isinstance(value, dict) and set(value) == set(keys):
            return [value[k] for k in keys]
        as_list = not isinstance(self.inputs, dict) and isinstance(value, (list, tuple)) and not is_shape(value)
        if as_list and len(value) == len(keys):
            return list(value)
        allowed = "a dict with those keys" if isinstance(self.inputs, dict) else "a list/tuple in that order or a dict with those keys"
        raise ValueError(f"model {self.name or self.default_name} has {len(keys)} inputs ({', '.join(keys)}): give "
                         f"{what} as {allowed}, got {_describe(value)}")

    def init(self, key, input_shape):
        graph = self._graph
        shapes = [batch_first(self, s) for s in self._flat_inputs(input_shape, "input shapes")]
        for k, t, shape in zip(graph.input_keys, graph.input_tensors, shapes):
            if len(shape) != len(t.shape) or any(a is not None and a != b for a, b in zip(t.shape[1:], shape[1:])):
                raise ShapeError(f"input '{k}' expects shape {format_shape(t.shape)}, got {format_shape(shape)}")
        params, state = {}, {}
        for layer, k in zip(graph.layers, jax.random.split(key, len(graph.layers))):
            name, first = graph.names[id(layer)], graph.calls[id(layer)][0]
            if isinstance(layer, InputLayer):
                continue
            init_child(name, layer, k, first.treedef.unflatten([t.shape for t in first.inputs]), params, state)
        out = graph.output_treedef.unflatten([t.shape for t in graph.output_tensors])
        return out, params, state

    def apply(self, params, x, *, state=None, key=None, train=False):
        graph, state = self._graph, state or {}
        values = {}
        for k, t, a in zip(graph.input_keys, graph.input_tensors, self._flat_inputs(x, "inputs")):
            a = jnp.asarray(a)
            if a.ndim != len(t.shape) or any(d is not None and d != n for d, n in zip(t.shape[1:], a.shape[1:])):
                raise ShapeError(f"input '{k}' expects arrays of shape {format_shape(t.shape)}, "
                                 f"got {format_shape(a.shape)}")
            values[t.node, 0] = a
        keys = jax.random.split(key, len(graph.nodes)) if key is not None else [None] * len(graph.nodes)
        new_state, masks = {}, {}
        for node, k in zip(graph.nodes, keys):
            if not node.inputs:
                continue
            name = graph.names[id(node.layer)]
            args = node.treedef.unflatten([values[t.node, t.index] for t in node.inputs])
            in_masks = [masks.get((t.node, t.index)) for t in node.inputs]
            mask = in_masks if isinstance(args, (list, tuple)) else in_masks[0]  # a dict input has its own
            try:
                y, s, out_mask = apply_masked(node.layer, name, params.get(name, {}), args, mask,
                                              state=new_state.get(name, state.get(name, {})), key=k, train=train)
            except ShapeError as e:
                raise e.within(name) from None
            if s:
                new_state[name] = s
            for i, leaf in enumerate(jax.tree_util.tree_leaves(y)):
                values[node, i] = leaf
            if out_mask is not None and not isinstance(y, (list, tuple, dict)):
                masks[node, 0] = out_mask
        return graph.output_treedef.unflatten([values[t.node, t.index] for t in graph.output_tensors]), new_state

    def summary_rows(self, name, input_shape, params, state):
        """One row per distinct layer (a shared layer once); `inputs` names the tensors each call takes."""
        graph, rows = self._graph, []
        for layer in graph.layers:
            layer_name, calls = graph.names[id(layer)], graph.calls[id(layer)]
            rows.append(summary_row(layer_name, layer, calls[0].output_shape, params.get(layer_name, {}),
                                    state.get(layer_name, {}),
                                    tuple(self._tensor_label(t) for node in calls for t in node.inputs)))
        return rows if self.trainable else frozen_rows(rows)

    def _tensor_label(self, t: SymbolicTensor) -> str:
        """Keras's `name[call][output]`: which call of which layer made tensor `t`."""
        calls = self._graph.calls[id(t.node.layer)]
        return f"{self._graph.names[id(t.node.layer)]}[{calls.index(t.node)}][{t.index}]"

    def summary(self, *, print_fn=print) -> str:
        """Print (and return) the Keras-style table, with a "Connected to" column; shapes come from the graph."""
        _, params, state = abstract_init(self, self.input_shape)
        first = self._graph.input_tensors[0].shape[1:]  # rows read shapes from the graph, not from this
        return summary_table(self, first, params=params, state=state, print_fn=print_fn)


def _describe(value) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
