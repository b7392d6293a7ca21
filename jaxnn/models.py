"""Composition: `Sequential` (itself a layer) and Keras-style `summary`."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax

from jaxnn.layers.base import Layer, ShapeError, abstract_init, apply_masked, as_shape


def unique_names(layers: Sequence[Layer]) -> list[str]:
    """Keras-style names: explicit names kept, others `dense`, `dense_1`, ...; duplicates rejected."""
    explicit = [layer.name for layer in layers if layer.name is not None]
    dupes = sorted({n for n in explicit if explicit.count(n) > 1})
    if dupes:
        raise ValueError(f"layer names must be unique within a model, repeated: {', '.join(dupes)}")
    taken, names, counts = set(explicit), [], {}
    for layer in layers:
        if layer.name is not None:
            names.append(layer.name)
            continue
        base = layer.default_name
        while True:
            n = counts.get(base, 0)
            counts[base] = n + 1
            candidate = base if n == 0 else f"{base}_{n}"
            if candidate not in taken:
                break
        taken.add(candidate)
        names.append(candidate)
    return names


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
        object.__setattr__(self, "layers", tuple(self.layers))
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
        shape = as_shape(input_shape)
        params, state = {}, {}
        for (name, layer), k in zip(self.named_layers(), jax.random.split(key, len(self.layers))):
            try:
                shape, p, s = layer.init(k, shape)
            except ShapeError as e:
                raise e.within(name) from None
            if p:
                params[name] = p
            if s:
                state[name] = s
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
        rows, shape = [], as_shape(input_shape)
        for child_name, layer in self.named_layers():
            rows += layer.summary_rows(child_name, shape, params.get(child_name, {}), state.get(child_name, {}))
            shape = layer.output_shape(shape)
        return rows


def _check_is_layer(layer):
    if not isinstance(layer, Layer):
        raise ValueError(f"Sequential takes jaxnn layers, got {type(layer).__name__}: {layer!r}")


def _format_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def summary(model: Layer, input_shape, *, params=None, state=None, print_fn=print, policy=None) -> str:
    """Print (and return) a Keras-style table of layers, output shapes and parameter counts.

    `input_shape` excludes the batch dimension, as in Keras: `summary(model, (28, 28))`.
    Shapes come from `jax.eval_shape`; nothing is computed. With a precision
    `policy` (jaxnn.training.precision), a last line names its dtypes.
    """
    full_shape = (None, *as_shape(input_shape))
    if params is None or state is None:
        _, params, state = abstract_init(model, full_shape)
    rows = model.summary_rows(model.name or model.default_name, full_shape, params, state)
    show_inputs = any(r["inputs"] for r in rows)
    header = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if show_inputs else [])
    table = [[f"{r['name']} ({r['type']})", _format_shape(r["output_shape"]),
              f"{r['trainable'] + r['non_trainable']:,}"] + ([", ".join(r["inputs"])] if show_inputs else [])
             for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) + 2 for i, h in enumerate(header)]
    line = lambda cells: " " + "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    total_width = sum(widths) + 1
    trainable = sum(r["trainable"] for r in rows)
    non_trainable = sum(r["non_trainable"] for r in rows)
    out = [f'Model: "{model.name or model.default_name}"', "_" * total_width, line(header), "=" * total_width]
    for i, t in enumerate(table):
        out.append(line(t))
        out.append(("_" if i < len(table) - 1 else "=") * total_width)
    out += [f"Total params: {trainable + non_trainable:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {non_trainable:,}"]
    if policy is not None:
        out.append(policy.describe())
    text = "\n".join(out)
    if print_fn is not None:
        print_fn(text)
    return text
