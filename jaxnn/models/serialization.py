"""Architectures as JSON: every layer as `{"type": class name, its fields...}`, Sequential and graph Models alike.

    record = serialize(model)                   # plain JSON data: json.dumps(record)
    model = deserialize(record, custom_objects={"scale_init": scale_init, "scale_apply": scale_apply})

A layer is a frozen dataclass of hyperparameters, so its fields are its
config; a nested layer or model is a nested config. A graph `Model` lists its
distinct layers under their names in call order (a shared layer once) and
its calls in topological order, each naming its input tensors as
`[layer name, call index, output index]`; structures of tensors are
`{"tuple": [...]}`, `{"list": [...]}` or `{"dict": {...}}`.

Callables and outside objects (a custom activation, a FunctionLayer's
functions, a Flax module or nnx factory) and layer classes from outside
jaxnn are written by name and must be given again when loading, in
`custom_objects`, as in Keras. Their names are their `__name__` (a Flax
linen module: its class name, with its fields when they are plain, so the
class alone rebuilds it), or the name given for the object in the
`custom_objects` passed to `serialize`. jaxnn's own activations are written
by their registry name and need nothing. `record["custom_objects"]` maps each
name to where it is used, so a missing one is reported before anything is built.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxnn import activations
from jaxnn.layers import LAYERS, FlaxModule, FlaxNNX, FunctionLayer, Layer
from jaxnn.layers.input import Input, InputLayer
from jaxnn.layers.symbolic import SymbolicTensor, label
from jaxnn.models.graph import Model
from jaxnn.models.sequential import Sequential

_OWN_CLASSES = {cls.__name__: cls for cls in (Sequential, Model, InputLayer, FunctionLayer, FlaxModule, FlaxNNX)}


def _own_class(name: str):
    """The jaxnn layer class called `name`, or None."""
    return _OWN_CLASSES.get(name) or (LAYERS.get(name) if name in LAYERS else None)


class _Writer:
    """Turns layers into JSON data, collecting the names of the custom objects it meets."""

    def __init__(self, custom_objects: dict | None):
        self.given = {id(obj): name for name, obj in (custom_objects or {}).items()}
        self.needed: dict[str, str] = {}   # name -> where it is used
        self.owners: dict[str, int] = {}   # name -> id of the object (or class) it stands for

    def name(self, obj, where: str, default: str | None, stands_for=None) -> str:
        """The name `obj` is written under; two different objects (or classes: `stands_for`) under one are refused."""
        name = self.given.get(id(obj), default)
        if name is None or name == "<lambda>":
            raise ValueError(f"{where} is {obj!r}, which has no name to be saved under: define it with def, or "
                             f"name it with save_model(..., custom_objects={{'name': obj}})")
        key = id(stands_for) if stands_for is not None and id(obj) not in self.given else id(obj)
        if self.owners.setdefault(name, key) != key:
            raise ValueError(f"two different objects are both named {name!r} ({self.needed[name]} and {where}): "
                             f"name them apart with save_model(..., custom_objects={{'name': obj, ...}})")
        self.needed.setdefault(name, where)
        return name

    def layer(self, layer: Layer) -> dict:
        type_name = type(layer).__name__
        if _own_class(type_name) is not type(layer):
            self.name(type(layer), f"the class of layer {label(layer)}", type_name)
        if isinstance(layer, Model):
            return self.graph(layer)
        fields = {f.name: self.value(getattr(layer, f.name), f"layer {label(layer)} {f.name}")
                  for f in dataclasses.fields(layer) if f.init}
        return {"type": type_name, **fields}

    def value(self, value, where: str):
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (tuple, list)):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Layer):
            return self.layer(value)
        registered = [n for n in activations.names() if activations.ACTIVATIONS.get(n) is value]
        if registered:
            return registered[0]
        if hasattr(value, "init_with_output") and dataclasses.is_dataclass(value):  # a flax.linen Module
            config = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                      if f.init and f.name not in ("parent", "name")}
            if not all(_is_plain(v) for v in config.values()):
                return {"object": self.name(value, where, type(value).__name__)}
            return {"object": self.name(value, where, type(value).__name__, stands_for=type(value)),
                    "config": {k: self.value(v, f"{where}.{k}") for k, v in config.items()}}
        return {"object": self.name(value, where, getattr(value, "__name__", None))}

    def graph(self, model: Model) -> dict:
        graph = model._graph
        names = graph.names

        def ref(t: SymbolicTensor) -> list:
            return [names[id(t.node.layer)], graph.calls[id(t.node.layer)].index(t.node), t.index]

        return {
            "type": "Model",
            "name": model.name,
            "layers": {names[id(layer)]: self.layer(layer) for layer in graph.layers},
            "nodes": [{"layer": names[id(node.layer)],
                       "inputs": _structure(node.treedef.unflatten(node.inputs), ref) if node.inputs else None}
                      for node in graph.nodes],
            "inputs": _structure(model.inputs, ref),
            "outputs": _structure(model.outputs, ref),
        }


def _is_plain(value) -> bool:
    """JSON-ready as it is: None, bool, int, float, str, or a tuple/list of such."""
    if isinstance(value, (tuple, list)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _structure(value, ref):
    """Tensors (by `ref`) inside tuples, lists and dicts, each container tagged with its kind."""
    if isinstance(value, SymbolicTensor):
        return ref(value)
    if isinstance(value, dict):
        return {"dict": {k: _structure(v, ref) for k, v in value.items()}}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [_structure(v, ref) for v in value]}
    return value


def serialize(model: Layer, custom_objects: dict | None = None) -> dict:
    """`{"model": config, "custom_objects": {name: where it is used}}` for `model` (any layer), as plain JSON data.

    `custom_objects` ({name: object}) names objects that have no usable `__name__` (a lambda) or share one.
    """
    if not isinstance(model, Layer):
        raise ValueError(f"model must be a jaxnn layer or model, got {type(model).__name__}")
    writer = _Writer(custom_objects)
    config = writer.layer(model)
    return {"model": config, "custom_objects": writer.needed}


class _Reader:
    def __init__(self, custom_objects: dict):
        self.objects = custom_objects

    def layer_class(self, name: str):
        """A layer class given in custom_objects under `name`, else jaxnn's own. A custom object that is no
        layer class (a Flax `nn.Dense` saved as "Dense") leaves jaxnn's layer of that name as it is."""
        given = self.objects.get(name)
        if isinstance(given, type) and issubclass(given, Layer):
            return given
        cls = _own_class(name)
        if cls is None:
            raise ValueError(f"layer type {name!r} is not a jaxnn layer class: give the class in custom_objects")
        return cls

    def layer(self, config: dict) -> Layer:
        if config.get("type") == "Model":
            return self.graph(config)
        options = {k: self.value(v) for k, v in config.items() if k != "type"}
        cls = self.layer_class(config["type"])
        try:
            return cls(**options)
        except TypeError as e:
            raise ValueError(f"layer {options.get('name') or cls.__name__} ({cls.__name__}) cannot be rebuilt "
                             f"from its saved fields: {e}") from None

    def value(self, value):
        if isinstance(value, list):
            return tuple(self.value(v) for v in value)
        if isinstance(value, dict) and "type" in value:
            return self.layer(value)
        if isinstance(value, dict) and "object" in value:
            obj = self.objects[value["object"]]
            if "config" in value and isinstance(obj, type):
                return obj(**{k: self.value(v) for k, v in value["config"].items()})
            return obj
        return value

    def graph(self, config: dict) -> Model:
        tensors, calls, built = {}, {}, {}
        for node in config["nodes"]:
            name, layer_config = node["layer"], config["layers"][node["layer"]]
            if layer_config["type"] == "InputLayer":
                out = Input(tuple(layer_config["shape"]), name=layer_config.get("name"))
            else:
                if name not in built:
                    built[name] = self.layer(layer_config)
                out = built[name](_tensors(node["inputs"], tensors))
            call = calls[name] = calls.get(name, -1) + 1
            tensors[name, call] = jax.tree_util.tree_leaves(out)
        model = Model(_tensors(config["inputs"], tensors), _tensors(config["outputs"], tensors), name=config["name"])
        rebuilt = [name for name, _ in model.named_layers()]
        if rebuilt != list(config["layers"]):
            raise ValueError(f"graph model {config['name'] or 'functional'} rebuilt with layers {rebuilt}, "
                             f"saved with {list(config['layers'])}")
        return model


def _tensors(value, tensors: dict):
    """The structure `_structure` wrote, with each `[layer, call, index]` replaced by its tensor."""
    if isinstance(value, list):
        layer, call, index = value
        return tensors[layer, call][index]
    if isinstance(value, dict):
        (kind, items), = value.items()
        if kind == "dict":
            return {k: _tensors(v, tensors) for k, v in items.items()}
        return {"tuple": tuple, "list": list}[kind](_tensors(v, tensors) for v in items)
    return value


def deserialize(record: dict, custom_objects: dict | None = None) -> Layer:
    """The model `serialize` wrote; every name in `record["custom_objects"]` must be a key of `custom_objects`."""
    custom_objects = dict(custom_objects or {})
    missing = {name: where for name, where in record.get("custom_objects", {}).items() if name not in custom_objects}
    if missing:
        listed = ", ".join(f"{name!r} ({where})" for name, where in missing.items())
        example = ", ".join(f"{name!r}: ..." for name in missing)
        raise ValueError(f"the model needs custom objects that were not given: {listed}; pass "
                         f"custom_objects={{{example}}}")
    return _Reader(custom_objects).layer(record["model"])
