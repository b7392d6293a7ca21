"""Loss functions `(targets, preds) -> per-example loss`, as in `keras.losses`.

Each returns one value per example (reduced over the class/feature axis only);
`reduce` turns those into a scalar with optional sample weights. Losses on
probabilities clip them to [eps, 1 - eps] (Keras's eps = 1e-7) and losses with
`from_logits=True` use log-sum-exp forms, so neither gives NaN or inf for
saturated inputs.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxnn.registry import Registry

EPSILON = 1e-7
LOSSES: Registry = Registry("loss")


def _match(targets, preds):
    """Targets shaped (batch,) against preds (batch, 1) get the trailing axis back."""
    targets = jnp.asarray(targets)
    if targets.ndim == preds.ndim - 1 and preds.shape[-1] == 1:
        targets = targets[..., None]
    return targets.astype(preds.dtype)


@LOSSES.register("mean_squared_error", aliases=("mse",))
def mean_squared_error(targets, preds):
    """mean((targets - preds)^2) over the last axis."""
    return jnp.mean(jnp.square(_match(targets, preds) - preds), axis=-1)


@LOSSES.register("binary_crossentropy", aliases=("bce",))
def binary_crossentropy(targets, preds, *, from_logits: bool = False):
    """-(t log p + (1 - t) log(1 - p)), averaged over the last axis."""
    targets = _match(targets, preds)
    if from_logits:
        return jnp.mean(optax.sigmoid_binary_cross_entropy(preds, targets), axis=-1)
    p = jnp.clip(preds, EPSILON, 1.0 - EPSILON)
    return -jnp.mean(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p), axis=-1)


@LOSSES.register("categorical_crossentropy", aliases=("cce",))
def categorical_crossentropy(targets, preds, *, from_logits: bool = False):
    """-sum(t log p) over the last axis; targets are one-hot (or soft) labels."""
    targets = jnp.asarray(targets, preds.dtype)
    if targets.shape != preds.shape:
        raise ValueError(
            f"categorical_crossentropy needs one-hot targets shaped like preds {preds.shape}, "
            f"got {targets.shape}; use sparse_categorical_crossentropy for integer labels"
        )
    if from_logits:
        return optax.softmax_cross_entropy(preds, targets)
    p = preds / jnp.sum(preds, axis=-1, keepdims=True)
    return -jnp.sum(targets * jnp.log(jnp.clip(p, EPSILON, 1.0 - EPSILON)), axis=-1)


@LOSSES.register("sparse_categorical_crossentropy", aliases=("scce",))
def sparse_categorical_crossentropy(labels, preds, *, from_logits: bool = False):
    """-log p[label]; `labels` are integer class ids shaped like preds without its last axis."""
    labels = jnp.asarray(labels)
    if labels.ndim == preds.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != preds.shape[:-1]:
        raise ValueError(
            f"sparse_categorical_crossentropy needs integer labels shaped {preds.shape[:-1]}, got {labels.shape}"
        )
    labels = labels.astype(jnp.int32)
    if from_logits:
        return optax.softmax_cross_entropy_with_integer_labels(preds, labels)
    p = jnp.take_along_axis(preds, labels[..., None], axis=-1)[..., 0]
    return -jnp.log(jnp.clip(p, EPSILON, 1.0 - EPSILON))


def reduce(per_example, weights=None):
    """Weighted mean of per-example losses (plain mean without weights)."""
    if weights is None:
        return jnp.mean(per_example)
    weights = jnp.broadcast_to(jnp.asarray(weights, per_example.dtype), per_example.shape)
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def to_categorical(labels, num_classes: int | None = None, dtype=jnp.float32):
    """One-hot encode integer labels (Keras's `to_categorical`)."""
    labels = jnp.asarray(labels)
    if num_classes is None:
        num_classes = int(jnp.max(labels)) + 1
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def get(spec, **options):
    """A per-example loss from a name (with options such as `from_logits=True`) or a callable."""
    fn = spec if callable(spec) else LOSSES.get(spec)
    return functools.partial(fn, **options) if options else fn


def names() -> list[str]:
    return LOSSES.names()
