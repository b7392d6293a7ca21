"""Metrics as pure pairs: `update` gives summable statistics for a batch, `result` reads them.

Statistics are sums (never means), so adding them over batches of any size,
a padded last batch included (padding has weight 0), gives the exact value
over the whole set.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxnn.registry import Registry

METRICS: Registry = Registry("metric")


def _weights(weights, n):
    return jnp.ones((n,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Mean:
    """Weighted mean of a per-example value (the loss, say)."""

    name: str = "loss"

    def update(self, values, weights=None):
        w = _weights(weights, values.shape[0])
        values = values.reshape(values.shape[0], -1).mean(axis=-1)
        return {"total": jnp.sum(values * w), "count": jnp.sum(w)}

    def result(self, stats):
        return stats["total"] / jnp.maximum(stats["count"], 1e-12)


def _is_binary(preds) -> bool:
    return preds.ndim == 1 or preds.shape[-1] == 1


def _predicted_classes(preds):
    """Class ids from preds: argmax over several classes, p > 0.5 for a single probability."""
    if _is_binary(preds):
        return (preds.reshape(preds.shape[0]) > 0.5).astype(jnp.int32)
    return jnp.argmax(preds, axis=-1)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """Fraction of examples whose predicted class equals the target.

    Works out Keras's three cases from the shapes: integer labels against class
    scores, one-hot targets against class scores, and binary 0/1 targets against
    one probability.
    """

    name: str = "accuracy"

    def update(self, targets, preds, weights=None):
        targets = jnp.asarray(targets)
        if _is_binary(preds):
            true = (targets.reshape(targets.shape[0]) > 0.5).astype(jnp.int32)
        elif targets.shape == preds.shape:
            true = jnp.argmax(targets, axis=-1)
        else:
            true = targets.reshape(preds.shape[:-1]).astype(jnp.int32)
        correct = (_predicted_classes(preds) == true).astype(jnp.float32)
        w = _weights(weights, correct.shape[0])
        return {"total": jnp.sum(correct * w), "count": jnp.sum(w)}

    def result(self, stats):
        return stats["total"] / jnp.maximum(stats["count"], 1e-12)


METRICS.register("accuracy", Accuracy(), aliases=("acc",))


def get(spec):
    """A metric object from a name or an object with `update`/`result`."""
    if hasattr(spec, "update") and hasattr(spec, "result"):
        return spec
    return METRICS.get(spec)


def names() -> list[str]:
    return METRICS.names()
