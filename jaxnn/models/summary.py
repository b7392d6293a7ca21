"""The Keras-style `summary` table of any layer or model: names, output shapes, parameter counts."""
from __future__ import annotations

import jax

from jaxnn import distributed
from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import abstract_init, as_shape, format_shape


def summary(model: Layer, input_shape, *, params=None, state=None, print_fn=print, policy=None) -> str:
    """Print (and return) a Keras-style table of layers, output shapes and parameter counts.

    `input_shape` excludes the batch dimension, as in Keras: `summary(model, (28, 28))`.
    Shapes come from `jax.eval_shape`; nothing is computed. With a precision
    `policy` (jaxnn.training.precision), a last line names its dtypes. When
    `params` (arrays or ShapeDtypeStructs) live on a mesh of several devices,
    a last block gives each parameter's sharding.
    """
    full_shape = (None, *as_shape(input_shape))
    if params is None or state is None:  # what is not given comes from the shapes; what is given is kept
        _, abstract_params, abstract_state = abstract_init(model, full_shape)
        params = abstract_params if params is None else params
        state = abstract_state if state is None else state
    rows = model.summary_rows(model.name or model.default_name, full_shape, params, state)
    show_inputs = any(r["inputs"] for r in rows)
    header = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if show_inputs else [])
    table = [[f"{r['name']} ({r['type']})", format_shape(r["output_shape"]),
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
    out += _sharding_lines(params)
    text = "\n".join(out)
    if print_fn is not None:
        print_fn(text)
    return text


def _sharding_lines(params) -> list[str]:
    """"Sharding over mesh data=2 x fsdp=4:" then one line per parameter; nothing on one device."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    shardings = [getattr(leaf, "sharding", None) for _, leaf in leaves]
    if not shardings or any(getattr(s, "mesh", None) is None for s in shardings) or shardings[0].mesh.size == 1:
        return []
    mesh = " x ".join(f"{axis}={size}" for axis, size in shardings[0].mesh.shape.items())
    rows = [(jax.tree_util.keystr(path, simple=True, separator="/"), str(tuple(leaf.shape)), distributed.describe(s))
            for (path, leaf), s in zip(leaves, shardings)]
    width = [max(len(row[i]) for row in rows) + 2 for i in range(2)]
    return [f"Sharding over mesh {mesh}:"] + [f" {p.ljust(width[0])}{shape.ljust(width[1])}{text}"
                                               for p, shape, text in rows]
