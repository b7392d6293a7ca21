"""What `Sequential` and the graph `Model` do alike with their child layers: name them, init them by name."""
from __future__ import annotations

from typing import Sequence

from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import ShapeError


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
