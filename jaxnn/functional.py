"""Graph models (Keras's Functional API): layers called on symbolic tensors, then bound into a `Model`.

    x = jaxnn.Input(shape=(28, 28), name="image")
    h = Dense(32, "relu")(Flatten()(x))
    out = Dense(10, "softmax")(h)
    model = jaxnn.Model(inputs=x, outputs=out, name="mlp")
    _, params, state = model.init(jax.random.key(0), (None, 28, 28))
    probs, _ = model.apply(params, images)

Calling a layer on symbolic tensors records a `Node` and works out the output
shape with `jax.eval_shape`, so layers that do not fit together fail where the
graph is written, naming both. A layer object called twice is one shared layer
with one entry in `params`. A `Model` is a layer: it nests in models and in
`Sequential`.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from jaxnn.layers.base import Layer, ShapeError, apply_masked, as_shape, count_params
from jaxnn.models import summary as summary_table
from jaxnn.models import unique_names

_creation = itertools.count()  # nodes sorted by creation are in topological order


def is_shape(x) -> bool:
    """A shape is a tuple of ints and Nones; tuples, lists and dicts of shapes are structures of several."""
    return isinstance(x, tuple) and all(d is None or isinstance(d, int) for d in x)


def _tree_map_shapes(fn, shapes):
    return jax.tree_util.tree_map(fn, shapes, is_leaf=is_shape)


def _fmt(shape) -> str:
    return str(tuple(shape)) if is_shape(shape) else str(shape)


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """One call of `layer` on symbolic `inputs` (flat; `treedef` rebuilds the list/dict the layer takes)."""

    layer: Layer
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
        return f"SymbolicTensor(shape={_fmt(self.shape)}, from {_label(self.node.layer)})"


def _label(layer: Layer) -> str:
    return f"'{layer.name or layer.default_name}' ({type(layer).__name__})"


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


def abstract_init(layer: Layer, input_shape) -> tuple:
    """`layer.init` under `jax.eval_shape` for any structure of input shapes (merge layers take a list).

    `jaxnn.layers.abstract_init` takes one shape; this one passes lists and dicts through.
    """
    box = {}

    def init(key):
        box["shape"], params, state = layer.init(key, input_shape)
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    return box["shape"], params, state


def call_layer(layer: Layer, inputs):
    """Connect `layer` to symbolic `inputs` (one tensor, a list or a dict); returns its symbolic output(s)."""
    leaves, treedef = jax.tree_util.tree_flatten(inputs)
    if not leaves or not all(isinstance(t, SymbolicTensor) for t in leaves):
        got = type(inputs).__name__ if not leaves else ", ".join(sorted({type(t).__name__ for t in leaves}))
        raise ValueError(
            f"layer {_label(layer)} was called on {got}: calling a layer builds a graph from jaxnn.Input tensors; "
            f"to compute on arrays use layer.apply(params, x)"
        )
    input_shape = treedef.unflatten([t.shape for t in leaves])
    try:
        output_shape, params_spec, _ = abstract_init(layer, input_shape)
    except ShapeError as e:
        sources = ", ".join(f"{_label(t.node.layer)} {_fmt(t.shape)}" for t in leaves)
        raise ShapeError(f"layer {_label(layer)} cannot take the output of {sources}: {e}") from None
    return node_outputs(Node(layer, tuple(leaves), treedef, output_shape, params_spec))


def node_outputs(node: Node):
    """The symbolic output(s) of `node`, structured like its layer's output (one tensor, a tuple, a dict)."""
    shapes, treedef = jax.tree_util.tree_flatten(node.output_shape, is_leaf=is_shape)
    return treedef.unflatten([SymbolicTensor(tuple(s), node, i) for i, s in enumerate(shapes)])


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
                shape_of = lambda n: ", ".join(_fmt(t.shape) for t in n.inputs)
                raise ShapeError(
                    f"shared layer '{graph.names[id(layer)]}' needs the same parameters at every call: on inputs "
                    f"{shape_of(calls[0])} its params are {_param_shapes(calls[0])}, on {shape_of(node)} {_param_shapes(node)}"
                )


def _param_shapes(node: Node) -> str:
    flat = jax.tree_util.tree_flatten_with_path(node.params_spec)[0]
    return "{" + ", ".join(f"{jax.tree_util.keystr(p, simple=True, separator='/')}: {_fmt(s.shape)}"
                           for p, s in flat) + "}"


def _build_graph(inputs, outputs) -> _Graph:
    if isinstance(inputs, dict):
        input_keys = sorted(inputs)
        input_tensors = [inputs[k] for k in input_keys]
    else:
        input_tensors = jax.tree_util.tree_leaves(inputs)
    for t in input_tensors:
        if not isinstance(t.node.layer, InputLayer):
            raise ValueError(f"Model inputs must come from jaxnn.Input(...), got the output of {_label(t.node.layer)}")
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
            raise ValueError(f"graph disconnected: input '{key}' {_fmt(t.shape)} does not reach any output; "
                             f"use it or leave it out of the model's inputs")
    for node in graph.nodes:
        if isinstance(node.layer, InputLayer) and id(node) not in given:
            missing = graph.names[id(node.layer)]
            out = next(t for t in graph.output_tensors if node in _reachable([t]))
            user = next((n for n in graph.nodes if any(t.node is node for t in n.inputs)), None)
            needs = f"layer '{graph.names[id(user.layer)]}' needs" if user else "it is"
            raise ValueError(
                f"graph disconnected: cannot compute output '{graph.names[id(out.node.layer)]}' {_fmt(out.shape)}: "
                f"{needs} input '{missing}' {_fmt(node.output_shape)}, "
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
        shapes = self._flat_inputs(input_shape, "input shapes")
        for k, t, shape in zip(graph.input_keys, graph.input_tensors, shapes):
            shape = as_shape(shape)
            if len(shape) != len(t.shape) or any(a is not None and a != b for a, b in zip(t.shape[1:], shape[1:])):
                raise ShapeError(f"input '{k}' expects shape {_fmt(t.shape)}, got {_fmt(shape)}")
        batch = as_shape(shapes[0])[0]
        params, state = {}, {}
        for layer, k in zip(graph.layers, jax.random.split(key, len(graph.layers))):
            name, first = graph.names[id(layer)], graph.calls[id(layer)][0]
            if isinstance(layer, InputLayer):
                continue
            try:
                _, p, s = layer.init(k, first.treedef.unflatten([t.shape for t in first.inputs]))
            except ShapeError as e:
                raise e.within(name) from None
            if p:
                params[name] = p
            if s:
                state[name] = s
        out = graph.output_treedef.unflatten([t.shape for t in graph.output_tensors])
        return _tree_map_shapes(lambda s: (batch, *s[1:]), out), params, state

    def apply(self, params, x, *, state=None, key=None, train=False):
        graph, state = self._graph, state or {}
        values = {}
        for k, t, a in zip(graph.input_keys, graph.input_tensors, self._flat_inputs(x, "inputs")):
            a = jnp.asarray(a)
            if a.ndim != len(t.shape) or any(d is not None and d != n for d, n in zip(t.shape[1:], a.shape[1:])):
                raise ShapeError(f"input '{k}' expects arrays of shape {_fmt(t.shape)}, got {_fmt(a.shape)}")
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
            rows.append({
                "name": layer_name,
                "type": type(layer).__name__,
                "output_shape": calls[0].output_shape,
                "trainable": count_params(params.get(layer_name, {})),
                "non_trainable": count_params(state.get(layer_name, {})),
                "inputs": tuple(self._tensor_label(t) for node in calls for t in node.inputs),
            })
        return rows

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


def graph_from_spec(inputs: dict, layers: Sequence[dict], outputs, *, name: str | None = None) -> Model:
    """A Model from named layer specs (for configs): each is a `from_spec` dict plus `name` and `inputs`.

        graph_from_spec(inputs={"image": (28, 28)},
                        layers=[{"type": "Flatten", "name": "flat", "inputs": "image"},
                                {"type": "Dense", "units": 10, "name": "logits", "inputs": "flat"}],
                        outputs="logits")

    A spec's `inputs` names one input or layer, or lists several (merge layers).
    Specs may come in any order; an unknown name or a cycle is a ValueError.
    """
    from jaxnn.layers import from_spec

    tensors = {key: Input(tuple(shape), name=key) for key, shape in inputs.items()}
    specs = {}
    for spec in layers:
        spec = dict(spec)
        if not spec.get("name") or "inputs" not in spec:
            raise ValueError(f"a graph layer spec needs 'name' and 'inputs' fields, got {spec!r}")
        if spec["name"] in specs or spec["name"] in tensors:
            raise ValueError(f"graph layer name {spec['name']!r} is used twice")
        specs[spec["name"]] = spec
    for layer_name in _topological(specs, set(tensors)):
        spec = dict(specs[layer_name])
        sources = spec.pop("inputs")
        args = tensors[sources] if isinstance(sources, str) else [tensors[s] for s in sources]
        tensors[layer_name] = from_spec(spec)(args)

    def pick(key):
        if key not in tensors:
            raise ValueError(f"graph output {key!r} names no input or layer; known: {', '.join(tensors)}")
        return tensors[key]

    if isinstance(outputs, str):
        outs = pick(outputs)
    elif isinstance(outputs, dict):
        outs = {k: pick(v) for k, v in outputs.items()}
    else:
        outs = [pick(k) for k in outputs]
    ins = [tensors[k] for k in inputs]
    return Model(inputs=ins[0] if len(ins) == 1 else ins, outputs=outs, name=name)


def _sources(spec: dict) -> list[str]:
    return [spec["inputs"]] if isinstance(spec["inputs"], str) else list(spec["inputs"])


def _topological(specs: dict, known: set) -> list[str]:
    """Spec names ordered so that each comes after the layers it takes; a cycle raises naming it."""
    order, done, visiting = [], set(), []

    def visit(layer_name, user):
        if layer_name in known or layer_name in done:
            return
        if layer_name in visiting:
            cycle = visiting[visiting.index(layer_name):] + [layer_name]
            raise ValueError(f"graph layers form a cycle: {' -> '.join(reversed(cycle))}")
        if layer_name not in specs:
            raise ValueError(f"graph layer {user!r} takes {layer_name!r}, which names no input or layer; "
                             f"known: {', '.join([*sorted(known), *specs])}")
        visiting.append(layer_name)
        for source in _sources(specs[layer_name]):
            visit(source, layer_name)
        visiting.pop()
        done.add(layer_name)
        order.append(layer_name)

    for layer_name in specs:
        visit(layer_name, None)
    return order
