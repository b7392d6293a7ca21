"""Losses and metrics for models with several outputs (a dict or tuple of predictions).

    model = Model(inputs=x, outputs={"digit": digit_probs, "size": size})
    loss = MultiOutputLoss({"digit": "sparse_categorical_crossentropy", "size": "mse"},
                           loss_weights={"digit": 1.0, "size": 0.5})
    trainer = Trainer(model, loss=loss, optimizer="adam",
                      metrics=[OutputMetric("digit", "accuracy")])

Targets come structured like the predictions (a dict with the same keys, or a
tuple in the same order), as Keras takes them. The Trainer logs each trained
output's own (unweighted) loss beside the weighted total, as `digit_loss`,
`size_loss` (Keras's names; `0_loss`, `1_loss` for a list).
"""
from __future__ import annotations

import functools
from typing import Mapping, Sequence

import jax.numpy as jnp

from jaxnn import losses as losses_lib
from jaxnn import metrics


def _keys(tree) -> list:
    return list(tree) if isinstance(tree, Mapping) else list(range(len(tree)))


class MultiOutputLoss:
    """Per-example `sum_i w_i * loss_i(targets[i], preds[i])`, a loss for the Trainer's `loss=`.

    `losses` maps each output (dict keys, or positions as a list) to a loss name
    or callable, or None for an output that is not trained. `loss_weights`
    (same keys, default 1) weight them. Each loss is reduced to one value per
    example (a mean over any axes after the batch) before weighting.
    """

    def __init__(self, losses: Mapping | Sequence, loss_weights: Mapping | Sequence | None = None):
        if not isinstance(losses, (Mapping, list, tuple)) or not losses:
            raise ValueError(f"MultiOutputLoss takes a dict or list with one loss per output, got {losses!r}")
        keys = _keys(losses)
        self.keyed = isinstance(losses, Mapping)
        self.losses = {k: None if losses[k] is None else losses_lib.get(losses[k]) for k in keys}
        weights = loss_weights if loss_weights is not None else {}
        if isinstance(weights, (list, tuple)):
            if len(weights) != len(keys):
                raise ValueError(f"loss_weights has {len(weights)} entries for {len(keys)} outputs")
            weights = dict(zip(keys, weights))
        unknown = [k for k in weights if k not in self.losses]
        if unknown:
            raise ValueError(f"loss_weights names {', '.join(map(repr, unknown))}, which are not outputs; "
                             f"outputs: {', '.join(map(repr, keys))}")
        self.weights = {k: float(weights.get(k, 1.0)) for k in keys}
        if all(fn is None for fn in self.losses.values()):
            raise ValueError("MultiOutputLoss needs a loss for at least one output, got None for all")

    def __call__(self, targets, preds):
        """One weighted total per example, shape (batch,)."""
        self._check(preds, "the model's predictions are")
        self._check(targets, "the targets are")
        total = 0.0
        for k, loss_fn in self.losses.items():
            if loss_fn is not None:
                total = total + self.weights[k] * self._per_example(k, targets, preds)
        return jnp.asarray(total)

    def _per_example(self, k, targets, preds):
        """Output `k`'s loss, one value per example (shape (batch,))."""
        per_example = self.losses[k](targets[k], preds[k])
        return per_example.reshape(per_example.shape[0], -1).mean(axis=-1)

    def output_metrics(self) -> tuple:
        """A metric per trained output: its unweighted loss, named `<output>_loss` (what the Trainer logs)."""
        return tuple(metrics.MeanOf(f"{k}_loss", functools.partial(self._per_example, k))
                     for k, loss_fn in self.losses.items() if loss_fn is not None)

    def _check(self, tree, what: str):
        fits = isinstance(tree, Mapping) if self.keyed else isinstance(tree, (list, tuple))
        if not fits or set(_keys(tree)) != set(self.losses):
            raise ValueError(f"MultiOutputLoss has losses for outputs {list(self.losses)}, but {what} "
                             f"{_describe(tree)}: give one loss per output, structured like the model's outputs")


def _describe(tree) -> str:
    if isinstance(tree, Mapping):
        return f"a dict with keys {list(tree)}"
    if isinstance(tree, (list, tuple)):
        return f"a {type(tree).__name__} of {len(tree)}"
    return f"one {type(tree).__name__}"


class OutputMetric:
    """A metric (name or object) on one output of a multi-output model, named `<output>_<metric>` as in Keras."""

    def __init__(self, output: str | int, metric: str | object):
        self.output = output
        self.metric = metrics.get(metric)
        self.name = f"{output}_{self.metric.name}"

    def update(self, targets, preds, weights=None):
        """Summable statistics of the metric on output `output`."""
        return self.metric.update(targets[self.output], preds[self.output], weights)

    def result(self, stats):
        """The metric's value from accumulated statistics."""
        return self.metric.result(stats)
