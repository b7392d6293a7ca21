"""What `Sequential` and the graph `Model` do alike with their child layers: name them, init them by name."""
from __future__ import annotations

import math
from typing import Sequence

import jax

from jaxnn.layers.base import Layer, count_params
from jaxnn.layers.shapes import ShapeError, as_shape, format_shape


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


def batch_first(model: Layer, input_shape) -> tuple:
    """`input_shape` as a shape whose batch dimension is None; a first dimension given as a number is refused,
    since `(28, 28, 1)` could mean examples of that shape (as `Trainer.init` and `summary` read it)."""
    shape = as_shape(input_shape)
    if shape and shape[0] is not None:
        raise ShapeError(f"{model.name or model.default_name}.init takes the input shape with the batch dimension "
                         f"first, as None: got {format_shape(shape)}; for examples of that shape pass "
                         f"{format_shape((None, *shape))}")
    return shape


def init_child(name: str, layer: Layer, key, input_shape, params: dict, state: dict):
    """`layer.init` as the child `name`: its params and state, if any, go into `params`/`state` under `name`,
    and a ShapeError names it; returns the output shape."""
    try:
        output_shape, p, s = layer.init(key, input_shape)
    except ShapeError as e:
        raise e.within(name) from None
    if p:
        params[name] = p
    if s:
        state[name] = s
    return output_shape


def trainable_mask(layer: Layer, params):
    """`params` with True at each leaf that training updates: False under a layer or model with `trainable=False`."""
    if not layer.trainable:
        return jax.tree_util.tree_map(lambda _: False, params)
    named = getattr(layer, "named_layers", None)
    if named is None:
        return jax.tree_util.tree_map(lambda _: True, params)
    children = dict(named())
    return {name: trainable_mask(children[name], sub) if name in children else jax.tree_util.tree_map(lambda _: True, sub)
            for name, sub in params.items()}


def has_frozen(layer: Layer) -> bool:
    """Whether `layer`, or any layer inside it, has `trainable=False`."""
    return not layer.trainable or any(has_frozen(child) for _, child in getattr(layer, "named_layers", list)())


def trainable_count(layer: Layer, params) -> int:
    """How many of `params`' scalars training updates (see `trainable_mask`)."""
    mask = jax.tree_util.tree_leaves(trainable_mask(layer, params))
    return sum(math.prod(leaf.shape) for leaf, keep in zip(jax.tree_util.tree_leaves(params), mask) if keep)


def summary_row(name: str, layer: Layer, output_shape, params, state, inputs: tuple = ()) -> dict:
    """One summary row of a model's child, as Keras shows it: name and type, output shape, counts (a nested
    model's layers counted as its own, frozen ones as non-trainable) and the tensors it takes."""
    trainable = trainable_count(layer, params)
    return {"name": name, "type": type(layer).__name__, "output_shape": output_shape, "trainable": trainable,
            "non_trainable": count_params(params) - trainable + count_params(state), "inputs": inputs}


def frozen_rows(rows: list[dict]) -> list[dict]:
    """Summary rows of a model with `trainable=False`: every parameter counted as non-trainable."""
    return [{**r, "trainable": 0, "non_trainable": r["trainable"] + r["non_trainable"]} for r in rows]
