"""The training examples with the largest loss-gradient norms: where mislabeled images tend to be.

A trained model fits most examples, so their gradients are small; an example
whose label disagrees with everything like it keeps a large gradient. Norms
are taken at the given parameters in inference mode (no dropout, BatchNorm's
moving statistics), so any model works and the listing is deterministic.

    rows = largest_gradients(trainer, state, x_train, y_train, k=25)
    write_largest_gradients(workdir, rows, x_train)   # largest_gradients.json (+ .png for images)
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import validation
from jaxnn.io import write_atomic
from jaxnn.training.per_example import LIST_BY, example_norms, trainable_only
from jaxnn.training.steps import example_gradients
from jaxnn.training.trainer import Trainer

FILENAME = "largest_gradients"


def gradient_norms(trainer: Trainer, state, x, y, *, batch_size: int = 256) -> np.ndarray:
    """The norm of each example's loss gradient with respect to all parameters, shape (examples,)."""
    batch_size = validation.positive_int("batch_size", batch_size)
    trainer.check_data(state, x, y)
    data, n, num_batches = trainer._padded(x, y, batch_size)

    @jax.jit
    def batch_norms(params, model_state, data, index):
        batch = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, index * batch_size, batch_size), data)
        grads, _ = example_gradients(trainer.model, trainer.loss_fn, params, model_state, batch, policy=trainer.policy)
        return example_norms(trainable_only(trainer.model, grads))

    norms = [batch_norms(state.params, state.model_state, data, jnp.int32(i)) for i in range(num_batches)]
    return np.asarray(jnp.concatenate(norms))[:n]


def example_losses(trainer: Trainer, state, x, y, *, batch_size: int = 256) -> np.ndarray:
    """Each example's loss at `state`'s parameters in inference mode, shape (examples,)."""
    preds = trainer.predict(state, x, batch_size=batch_size)
    as_array = lambda tree: jax.tree_util.tree_map(jnp.asarray, tree)
    return np.asarray(trainer.loss_fn(as_array(y), as_array(preds)), np.float64)


def largest_gradients(trainer: Trainer, state, x, y, *, k: int = 20, batch_size: int = 256,
                      by: str = "norm") -> list[dict]:
    """The `k` examples with the largest gradient norms (`by="norm"`) or losses (`by="loss"`), largest first:
    `index`, `label`, `predicted`, `norm`, `loss`.

    The norm grows with the input's scale (a first layer's gradient is the input times the error), so bright
    images rank high by norm; the loss ranks by the error alone, and found planted wrong labels better here
    (docs/per_example.md).
    """
    k = validation.positive_int("k", k)
    validation.require("by", by, by in LIST_BY, " or ".join(map(repr, LIST_BY)))
    norms = gradient_norms(trainer, state, x, y, batch_size=batch_size)
    losses = example_losses(trainer, state, x, y, batch_size=batch_size)
    top = np.argsort(-(norms if by == "norm" else losses), kind="stable")[:k]
    picked = jax.tree_util.tree_map(lambda a: np.asarray(a)[top], x)
    predicted = trainer.predict_classes(state, picked, batch_size=batch_size)
    return [{"index": int(i), "label": np.asarray(y[i]).tolist(), "predicted": np.asarray(p).tolist(),
             "norm": float(norms[i]), "loss": float(losses[i])} for i, p in zip(top, predicted)]


def write_largest_gradients(directory: str, rows: list[dict], images=None, class_names=None) -> list[str]:
    """`largest_gradients.json` in `directory`, and a `.png` grid of the examples when `images` are images
    (arrays of (H, W) or (H, W, 1 or 3) per example); returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    paths = [os.path.join(directory, f"{FILENAME}.json")]
    write_atomic(paths[0], json.dumps(rows, indent=2))
    if isinstance(images, np.ndarray) and images.ndim in (3, 4) and (images.ndim == 3 or images.shape[-1] in (1, 3)):
        paths.append(os.path.join(directory, f"{FILENAME}.png"))
        _image_grid(paths[1], rows, images, class_names)
    return paths


def _image_grid(path: str, rows: list[dict], images: np.ndarray, class_names) -> None:
    from matplotlib.figure import Figure  # without pyplot: safe off the main thread

    name = lambda c: class_names[c] if class_names is not None and isinstance(c, int) else c
    cols = min(len(rows), 8)
    fig = Figure(figsize=(1.6 * cols, 1.9 * -(-len(rows) // cols)))
    for i, row in enumerate(rows):
        ax = fig.add_subplot(-(-len(rows) // cols), cols, i + 1)
        image = images[row["index"]]
        ax.imshow(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image, cmap="gray")
        ax.set_title(f"#{row['index']}\nlabel {name(row['label'])} / {name(row['predicted'])}", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
