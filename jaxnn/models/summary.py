"""The Keras-style `summary` table of any layer or model: names, output shapes, parameter counts."""
from __future__ import annotations

from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import abstract_init, as_shape, format_shape


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
    text = "\n".join(out)
    if print_fn is not None:
        print_fn(text)
    return text
